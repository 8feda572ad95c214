"""Admin commands, the same on both platforms: plain-text answers from the shared stats module."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

from common import context, cookies, stats
from common.errors import human_bytes
from common.settings import get_settings
from tasks import monitor, pipeline
from tasks.celery_app import QUEUES

ROOT = Path(__file__).resolve().parent.parent
DOCTOR_SECONDS = 60.0  # the doctor's own checks take a few seconds; past this it is stuck
_doctor = threading.Lock()  # one doctor at a time, however many admins ask


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


def health_text() -> str:
    """The doctor's report (`python -m tasks doctor`), run beside this process: a bot never loads yt-dlp."""
    with _doctor:
        try:
            result = subprocess.run([sys.executable, "-m", "tasks", "doctor"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=DOCTOR_SECONDS, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"The doctor did not finish within {DOCTOR_SECONDS:.0f} s; run python -m tasks doctor on the server."
    if not result.stdout.strip():  # it could not even start (settings, imports): its last line says why
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"The doctor failed: {last}"
    return result.stdout.strip()


def purge_question() -> str:
    waiting = sum(stats.queue_depth(q) for q in QUEUES)
    return f"Purge the queues? {waiting} waiting task(s) will be dropped."


def purge() -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        monitor.purge(yes=True)
    return output.getvalue().strip()


NO_COOKIES_FILE = ("No COOKIES_FILE is set. Set it to a path the bots and the workers share (e.g. "
                   "COOKIES_FILE=/data/cookies.txt), restart, and send the file again.")


def cookies_text(how: str) -> str:
    """/cookies without a file: each cookie file's summary and problems, and how to replace the first."""
    paths = get_settings().cookies_file
    if not paths:
        return NO_COOKIES_FILE
    lines = []
    for report in map(cookies.inspect, paths):
        lines += [report.summary(), *(f"  warning: {w}" for w in report.warnings)]
    return "\n".join([*lines, f"To replace {paths[0]}: {how}"])


def install_cookies(data: bytes) -> str:
    """/cookies with a file: check it, write it over the first COOKIES_FILE; the answer never shows a value."""
    paths = get_settings().cookies_file
    if not paths:
        return NO_COOKIES_FILE
    if len(data) > cookies.MAX_BYTES:
        return cookies_too_large()
    try:
        report = cookies.install(paths[0], data)
    except OSError as error:
        return f"Could not write {paths[0]} ({error.strerror or type(error).__name__}); nothing was changed."
    if not report.ok:
        return f"Not installed: the file {report.error}. The cookies in use are unchanged."
    lines = [f"Installed. {report.summary()}."]
    if cookies.backup_of(report.path).exists():
        lines.append(f"The previous file is kept as {cookies.backup_of(report.path)}.")
    return "\n".join([*lines, *(f"Warning: {w}" for w in report.warnings)])


def cookies_too_large() -> str:
    return f"Not installed: a cookies.txt is well under {human_bytes(cookies.MAX_BYTES)}; that file is not one."


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
