"""The terminal side: a worker launcher and `convert` with a live progress bar."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from celery.concurrency import get_implementation
from celery.utils.nodenames import default_nodename, host_format
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from common import context, stats
from common.clip import RangeError, parse_range
from common.delivery import mark_delivered
from common.jobs import Job, State
from common.settings import get_settings, loudness_target
from tasks import pipeline
from tasks.celery_app import QUEUES, app

# Every queue's tasks wait, on the network, the disk or an ffmpeg child, so the threads of one process
# serve them: yt-dlp and the rest are loaded once, and a running task costs a thread, not a process.
# Time limits, the pace check and cancel hold there too (tasks.interrupt); a worker killed whole is
# taken up by the heartbeat lease (tasks.watchdog). Prefork remains for those who want a process each.
POOL = "threads"


def worker(queues: str, concurrency: int | None, hostname: str | None, loglevel: str, pool: str | None = None) -> int:
    """A Celery worker; the threads pool unless asked otherwise (see POOL)."""
    settings = get_settings()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(names) - set(QUEUES)
    if unknown:
        print(f"unknown queue(s): {', '.join(sorted(unknown))}; choose from {', '.join(QUEUES)}", file=sys.stderr)
        return 2
    per_queue = {
        "download": settings.download_concurrency,
        "conversion": settings.conversion_concurrency,
        "cleanup": settings.cleanup_concurrency,
    }
    # Celery's Worker itself, as `celery worker` makes it, without loading Celery's whole command line (click
    # and every subcommand: MBs in each worker).
    started = app.Worker(hostname=host_format(default_nodename(hostname)), pool_cls=get_implementation(pool or POOL),
                         loglevel=loglevel, queues=names, concurrency=concurrency or max(per_queue[q] for q in names))
    started.start()
    return int(started.exitcode or 0)


def convert(url: str, out: str, bitrate: int | None, limit: int | None, clip: str | None = None,
            loudness: str | None = None) -> int:
    """Submit a link, draw its progress from the job's events, copy the MP3s to `out`."""
    store = context.store()
    try:
        wanted = parse_range(clip).key if clip else ""
        level = get_settings().loudness if loudness is None else loudness_target(loudness)
    except ValueError as error:  # a RangeError, or a loudness that isn't one
        print(f"--loudness {error}" if not isinstance(error, RangeError) else error, file=sys.stderr)
        return 2
    origin = {"id": f"cli:{uuid.uuid4().hex[:8]}", "platform": "cli"}
    job_id, _ = pipeline.submit(url, bitrate=bitrate, limit_bytes=limit, origin=origin, clip=wanted,
                                loudness=level)
    try:
        job = _follow(job_id)
    except KeyboardInterrupt:
        pipeline.cancel(job_id)
        print("cancelled", file=sys.stderr)
        return 130
    if job.state != State.READY:
        print(job.error_text or f"job {job.state}", file=sys.stderr)
        return 1
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    for file in job.files:
        print(shutil.copy(file, target / Path(file).name))
    mark_delivered(store, job, origin["id"])
    return 0


def _follow(job_id: str) -> Job:
    store = context.store()
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, redirect_stdout=False) as bar:
        task = bar.add_task("queued", total=100)
        cursor = "0-0"
        while True:
            job = store.get(job_id)
            if job is None:
                raise SystemExit(f"job {job_id} vanished")
            label = f"{job.state}: {job.title}" if job.title else str(job.state)
            if job.state == State.QUEUED and not stats.workers_for("download"):
                label = "queued: no worker is online; start one with `python -m tasks worker`"
            bar.update(task, completed=job.percent, description=label)
            if job.state.finished:
                return job
            _, cursor = store.job_events(job_id, cursor, block_ms=1000)
