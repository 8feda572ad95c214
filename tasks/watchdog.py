"""Taking up stages whose worker vanished, within seconds rather than the broker's hour.

A running stage holds its job's lease and renews it from a heartbeat thread.  When a
worker is killed whole, its message stays unacked until Redis's visibility timeout;
the watchdog (run by every worker's housekeeping thread, one at a time under a lock)
sees the job's heartbeat stop and sends the stage again.  The stale message, when the
broker finally returns it, finds the job past that stage and does nothing.

A job whose worker vanishes under it a second time fails as out of memory: in the threads pool (the
default) the OOM killer takes the whole worker process, and a job that does it every time would
otherwise cost a worker on each round (tasks/losses.py counts the same for a prefork pool process).
"""

from __future__ import annotations

import logging
import time

from common import context
from common.errors import Code, JobError
from common.jobs import State
from common.redisio import members
from common.settings import get_settings
from tasks import lifecycle, pipeline
from tasks.losses import MAX_LOSSES

log = logging.getLogger(__name__)

MAX_RESTARTS = MAX_LOSSES - 1  # taken up once; the second vanishing ends the job
STAGES = (State.DOWNLOADING, State.CONVERTING, State.CLEANING)
ALBUM_LOOK = 30.0  # seconds between looks at an album whose tracks wait for its last step (tasks/albumgain.py)


def check(now: float | None = None) -> list[str]:
    """Send again the stage of every job whose heartbeat stopped; return their ids."""
    settings = get_settings()
    store = context.store()
    keys = store.keys
    now = now or time.time()
    silent = members(store.redis.zrangebyscore(keys.running, "-inf", now - settings.heartbeat_timeout))
    taken = []
    for job_id in silent:
        if store.redis.exists(keys.job_lease(job_id)):
            continue  # alive, its beat just late
        job = store.get(job_id)
        if job is None or job.state not in STAGES:
            store.redis.zrem(keys.running, job_id)
            continue
        if job.restarts >= MAX_RESTARTS:
            detail = f"its worker vanished under it {job.restarts + 1} times"
            lifecycle.fail(job_id, JobError(Code.OUT_OF_MEMORY, detail), "watchdog")
            continue
        log.warning("job %s: %s lost its worker, sending it again", job_id, job.state)
        store.update(job_id, restarts=job.restarts + 1)
        store.redis.zadd(keys.running, {job_id: now})  # a grace period before the next look
        pipeline.send(job_id, first=job.state)
        taken.append(job_id)
    return taken


def check_albums(now: float | None = None) -> list[str]:
    """Send again the last step of every album whose tracks all wait for it (the last track's send was lost);
    return their ids. An album still at work is looked at again later."""
    store = context.store()
    now = now or time.time()
    sent = []
    for album_id in members(store.redis.zrangebyscore(store.keys.albums_waiting, "-inf", now - ALBUM_LOOK)):
        store.redis.zadd(store.keys.albums_waiting, {album_id: now}, xx=True)
        if lifecycle.settle_album(album_id):
            log.warning("album %s: its tracks waited for its last step, sending it again", album_id)
            sent.append(album_id)
    return sent
