"""How a job ends: ready, failed (with a dead letter) or cancelled, and its files.

A job's files live in folders of the run that made them: <TEMP_DIR>/<job>/<run> while a stage
works, <STORAGE_DIR>/<job>/<run> for the MP3s (tasks/progress.py: a stale run can't trample the
files of the run that took over).  A job's end is written fenced by the lease of the run that ends
it; its files go just before, once the run has checked that it still holds the job (so that
whoever sees the end finds no file left).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.client import Pipeline

from common import albums, context, metrics
from common.errors import JobError
from common.i18n import Msg
from common.jobs import LEASE_FREE, Job, State, Written, saying
from common.settings import get_settings
from tasks.celery_app import app
from tasks.progress import StageReporter

log = logging.getLogger(__name__)

DEAD_MAX = 1000
ALBUM_STEP = "tasks.album_gain"  # by name: the bots (which import this module) never load the stages


def workdir(job_id: str, run: str) -> Path:
    """A run's scratch folder."""
    return get_settings().temp_dir / job_id / run


def outdir(job_id: str, run: str) -> Path:
    """Where a conversion run puts the MP3s."""
    return get_settings().storage_dir / job_id / run


def source_file(workdir: Path) -> Path | None:
    """What yt-dlp downloaded, whatever its name says (a "cover.jpg" of audio is audio; the thumbnail is apart)."""
    files = [p for p in workdir.glob("source.*") if not p.name.endswith(".part")]
    return max(files, key=lambda p: p.stat().st_size) if files else None


def thumbnail_file(workdir: Path) -> Path | None:
    return next(iter(sorted(workdir.glob("thumbnail.*"))), None)


def remove_files(job_id: str, output: bool = True) -> None:
    """Every file of the job, of every run."""
    settings = get_settings()
    shutil.rmtree(settings.temp_dir / job_id, ignore_errors=True)
    if output:
        shutil.rmtree(settings.storage_dir / job_id, ignore_errors=True)


def remove_run_files(job_id: str, run: str) -> None:
    """The files of one run (that ended without handing them on)."""
    shutil.rmtree(workdir(job_id, run), ignore_errors=True)
    shutil.rmtree(outdir(job_id, run), ignore_errors=True)


def ready(job_id: str, run: StageReporter) -> Written:
    """The MP3s are in storage: the job waits for its chat, and the temp files go."""
    if run.holds_lease():
        remove_files(job_id, output=False)
    return _finish(job_id, State.READY, run=run, percent=100.0, **saying("message", []))


def wait_for_album(job: Job, run: StageReporter) -> Written:
    """An album's track whose MP3 is in storage: it waits for the album's other tracks (tasks/albumgain.py),
    its run ends, and the temp files go. The last of the album's tracks to settle sends the album's step."""
    keys = context.keys()

    def waiting(pipe: Pipeline) -> None:  # out of the running set, its album in the set the watchdog looks at
        pipe.zrem(keys.running, job.id)
        pipe.zadd(keys.albums_waiting, {job.parent: time.time()})

    if run.holds_lease():
        remove_files(job.id, output=False)
    written = run.finish(waiting, step=albums.WAITING, percent=100.0, **saying("message", []))
    if written is Written.DONE:
        settle_album(job.parent)
    return written


def album_ready(job_id: str) -> Written:
    """A track that waited for its album, tagged with the album's ReplayGain: its chats may have it now."""
    return _finish(job_id, State.READY, lease=LEASE_FREE, percent=100.0, step="", **saying("message", []))


def settle_album(album_id: str) -> bool:
    """Send the album's step (its ReplayGain, then its tracks ready) once none of its tracks is at work and one
    waits for it; True if sent. Sent by the track that settles last, and by the watchdog should that send be
    lost (a worker killed, Redis away for a moment): the step may run twice, and does the same each time."""
    store = context.store()
    album = store.get(album_id)
    tracks = store.snapshot(album.entries)[0] if album is not None else []
    if album is None or album.state in (State.CANCELLED, State.FAILED) or not any(albums.waiting(t) for t in tracks):
        store.redis.zrem(store.keys.albums_waiting, album_id)  # nothing waits for the album's step (any more)
        return False
    if not all(albums.settled(t) for t in tracks):
        return False
    app.signature(ALBUM_STEP, (album_id,), immutable=True).apply_async()
    return True


def fail(job_id: str, error: JobError, task: str, retries: int = 0, run: StageReporter | None = None,
         lease: str | None = LEASE_FREE) -> Written:
    """Mark failed with the user's sentences (each requester reads them in their own language), keep a dead
    letter, remove every file.

    Fenced by `run`'s lease when a run fails the job; without one (the watchdog), under `lease`:
    by default only while no run holds the job, None for whoever holds it (its holder is known dead).
    """
    said = error.said
    if error.transient and retries:
        said.append(Msg.ngettext("It failed after %(n)s try.", "It failed after %(n)s tries.", retries + 1))
    letter = {"job_id": job_id, "task": task, "code": error.code, "error": str(error), "time": time.time()}

    def dead_letter(pipe: Pipeline) -> None:
        pipe.lpush(context.keys().dead, json.dumps(letter))
        pipe.ltrim(context.keys().dead, 0, DEAD_MAX - 1)

    if _may_write(job_id, run, lease):
        remove_files(job_id)
    written = _finish(job_id, State.FAILED, dead_letter, run=run, lease=lease, error_code=error.code,
                      retryable=error.retryable, **saying("error_text", said))
    if written is Written.DONE:
        log.warning("job %s failed in %s: %s", job_id, task, error)
    elif written is Written.LEASE_LOST:
        log.info("job %s: %s failed in a run that no longer holds the job, which goes on: %s", job_id, task, error)
    return written


def _may_write(job_id: str, run: StageReporter | None, lease: str | None) -> bool:
    """Whether a fenced write would land now (checked before the files go: not atomic with the write)."""
    if run is not None:
        return run.holds_lease()
    return lease != LEASE_FREE or not context.redis_client().exists(context.keys().job_lease(job_id))


def cancelled(job_id: str) -> bool:
    """Mark cancelled (whoever runs it); a running stage notices within a progress interval and stops."""
    if _finish(job_id, State.CANCELLED, **saying("message", [])) is not Written.DONE:
        return False
    remove_files(job_id)
    return True


def _finish(job_id: str, state: State, also: Callable[[Pipeline], None] | None = None,
            run: StageReporter | None = None, lease: str | None = None, **changes: Any) -> Written:
    """Move a job to a final state with its stats bookkeeping, unless it already is in one.

    Written by `run` (its last write, fenced by its lease), or else under `lease` (None: by anyone).
    """
    store = context.store()
    keys = store.keys
    job = store.get(job_id)
    if job is None:
        return Written.FINISHED
    now = time.time()

    def bookkeeping(pipe: Pipeline) -> None:
        pipe.zadd(keys.finished, {f"{job_id} {state} {now - job.created:.2f}": now})
        pipe.zrem(keys.running, job_id)
        metrics.count_in(pipe, keys, "ytmp3_jobs_total", outcome=state, error=changes.get("error_code") or "")
        metrics.observe_in(pipe, keys, "ytmp3_job_seconds", now - job.created, outcome=state)
        if also is not None:
            also(pipe)

    changes.update(state=state, speed=None, eta=None, finished=now)
    if run is not None:
        written = run.finish(bookkeeping, **changes)
    else:
        written = store.write(job_id, changes, lease=lease, also=bookkeeping)
    if written is Written.DONE and job.fingerprint:  # the job no longer takes new requesters
        store.redis.eval(_DELETE_IF_EQUAL, 1, keys.inflight(job.fingerprint), job_id)
    if written is Written.DONE and job.parent and state != State.READY:  # a track that failed may end its album
        settle_album(job.parent)
    return written


# Another job may hold the fingerprint by now: delete it only if it is still ours.
_DELETE_IF_EQUAL = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
