"""How a job ends: ready, failed (with a dead letter) or cancelled, and its files."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.client import Pipeline

from common import context, metrics
from common.errors import JobError
from common.jobs import State
from common.settings import get_settings

log = logging.getLogger(__name__)

DEAD_MAX = 1000


def workdir(job_id: str) -> Path:
    return get_settings().temp_dir / job_id


def outdir(job_id: str) -> Path:
    return get_settings().storage_dir / job_id


def source_file(workdir: Path) -> Path | None:
    """What yt-dlp downloaded, whatever its name says (a "cover.jpg" of audio is audio; the thumbnail is apart)."""
    files = [p for p in workdir.glob("source.*") if not p.name.endswith(".part")]
    return max(files, key=lambda p: p.stat().st_size) if files else None


def thumbnail_file(workdir: Path) -> Path | None:
    return next(iter(sorted(workdir.glob("thumbnail.*"))), None)


def remove_files(job_id: str, output: bool = True) -> None:
    shutil.rmtree(workdir(job_id), ignore_errors=True)
    if output:
        shutil.rmtree(outdir(job_id), ignore_errors=True)


def ready(job_id: str) -> None:
    """The MP3s are in storage: temp files go, the job waits for its chat."""
    remove_files(job_id, output=False)
    _finish(job_id, State.READY, percent=100.0, message="")


def fail(job_id: str, error: JobError, task: str, retries: int = 0) -> None:
    """Mark failed with the user's sentence, remove every file, keep a dead letter."""
    log.warning("job %s failed in %s: %s", job_id, task, error)
    remove_files(job_id)
    text = error.text
    if error.transient and retries:
        text = f"{text} It failed after {retries + 1} tries."
    letter = {"job_id": job_id, "task": task, "code": error.code, "error": str(error), "time": time.time()}

    def dead_letter(pipe: Pipeline) -> None:
        pipe.lpush(context.keys().dead, json.dumps(letter))
        pipe.ltrim(context.keys().dead, 0, DEAD_MAX - 1)

    _finish(job_id, State.FAILED, dead_letter, error_code=error.code, error_text=text,
            retryable=error.retryable)


def cancelled(job_id: str) -> bool:
    """Mark cancelled; a running stage notices within a progress interval and stops."""
    if not _finish(job_id, State.CANCELLED, message=""):
        return False
    remove_files(job_id)
    return True


def _finish(job_id: str, state: State, also: Callable[[Pipeline], None] | None = None, **changes: Any) -> bool:
    """Move a job to a final state with its stats bookkeeping, unless it already is in one."""
    store = context.store()
    keys = store.keys
    job = store.get(job_id)
    if job is None:
        return False
    now = time.time()

    def bookkeeping(pipe: Pipeline) -> None:
        pipe.zadd(keys.finished, {f"{job_id} {state} {now - job.created:.2f}": now})
        pipe.zrem(keys.running, job_id)
        metrics.count_in(pipe, keys, "ytmp3_jobs_total", outcome=state, error=changes.get("error_code") or "")
        metrics.observe_in(pipe, keys, "ytmp3_job_seconds", now - job.created, outcome=state)
        if also is not None:
            also(pipe)

    if not store.update_unless_finished(job_id, bookkeeping, state=state, speed=None, eta=None, finished=now,
                                        **changes):
        return False
    if job.fingerprint:  # the job no longer takes new requesters
        store.redis.eval(_DELETE_IF_EQUAL, 1, keys.inflight(job.fingerprint), job_id)
    return True


# Another job may hold the fingerprint by now: delete it only if it is still ours.
_DELETE_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
