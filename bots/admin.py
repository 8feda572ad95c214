"""Admin commands, the same on both platforms: plain-text answers from the shared stats module."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json

from common import context, stats
from tasks import monitor, pipeline
from tasks.celery_app import QUEUES


def is_admin(user_id: int | None, admin_ids: list[int]) -> bool:
    """Checked on every admin call, against the IDs in settings."""
    return user_id is not None and user_id in admin_ids


def stats_text() -> str:
    return stats.render_stats(stats.collect(monitor.inspect_workers))


def job_text(job_id: str) -> str:
    job = context.store().get(job_id.strip()) if job_id.strip() else None
    if job is None:
        return "No such job. Usage: /job <id>"
    lines = [f"Job {job.id}: {job.state}", f"Link: {job.url}", f"Title: {job.title or '-'}",
             f"Progress: {job.percent:.0f}%", f"Bitrate: {job.bitrate}k"]
    if job.duration:
        lines.append(f"Duration: {job.duration:.0f}s")
    if job.error_code:
        lines.append(f"Error: {job.error_code}: {job.error_text}")
    lines.append(f"Created: {_when(job.created)}")
    if job.finished:
        lines.append(f"Finished: {_when(job.finished)} ({job.finished - job.created:.1f}s)")
    lines.append(f"Requested by: {len(context.store().origins(job.id))}")
    return "\n".join(lines)


def dead_text(count: int = 10) -> str:
    client, keys = context.redis_client(), context.keys()
    letters = [json.loads(raw) for raw in client.lrange(keys.dead, 0, max(1, min(count, 50)) - 1)]
    if not letters:
        return "No dead letters."
    return "\n".join(f"{_when(d['time'])} {d['job_id']} {d['task']} {d['code']}" for d in letters)


def retry(job_id: str) -> str:
    if not job_id.strip():
        return "Usage: /retry <job id>"
    new_id = pipeline.retry(job_id.strip())
    return f"Retrying as job {new_id}." if new_id else "Only a failed or cancelled job can be retried."


def cancel(job_id: str) -> str:
    if not job_id.strip():
        return "Usage: /cancel <job id>"
    return "Cancelled." if pipeline.cancel(job_id.strip()) else "That job has already ended (or does not exist)."


def purge_question() -> str:
    waiting = sum(stats.queue_depth(q) for q in QUEUES)
    return f"Purge the queues? {waiting} waiting task(s) will be dropped."


def purge() -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        monitor.purge(yes=True)
    return output.getvalue().strip()


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
