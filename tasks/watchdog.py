"""Taking up stages whose worker vanished, within seconds rather than the broker's hour.

A running stage holds its job's lease and renews it from a heartbeat thread.  When a
worker is killed whole, its message stays unacked until Redis's visibility timeout;
the watchdog (run by every worker's housekeeping thread, one at a time under a lock)
sees the job's heartbeat stop and sends the stage again.  The stale message, when the
broker finally returns it, finds the job past that stage and does nothing.
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

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
STAGES = (State.DOWNLOADING, State.CONVERTING, State.CLEANING)


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
            lifecycle.fail(job_id, JobError(Code.INTERNAL, "workers kept vanishing"), "watchdog")
            continue
        log.warning("job %s: %s lost its worker, sending it again", job_id, job.state)
        store.update(job_id, restarts=job.restarts + 1)
        store.redis.zadd(keys.running, {job_id: now})  # a grace period before the next look
        pipeline.send(job_id, first=job.state)
        taken.append(job_id)
    return taken
