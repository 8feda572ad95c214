"""Delivery bookkeeping shared by the CLI and both bots: a job is done when every requester has it."""

from __future__ import annotations

import json
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

from common.jobs import Job, JobStore, State
from common.keys import Keys
from common.redisio import Batch, Plan, run


def delivered(keys: Keys, ttl: int, job_id: str, origin_id: str) -> Plan[bool]:
    """Record that one requester got the files; True when now every requester has them."""
    def queue(pipe: Any) -> None:
        pipe.sadd(keys.job_delivered(job_id), origin_id)
        pipe.expire(keys.job_delivered(job_id), ttl)
        pipe.smembers(keys.job_delivered(job_id))
        pipe.lrange(keys.job_origins(job_id), 0, -1)

    _, _, done, origins = yield Batch(queue)
    return {_origin_id(raw) for raw in origins} <= {d.decode() for d in done}


def mark_delivered(store: JobStore, job: Job, origin_id: str) -> bool:
    """Record that one requester got the files; the last one removes them. True when all have."""
    if not run(store.redis, delivered(store.keys, store.ttl, job.id, origin_id)):
        return False
    remove_output(job)
    store.update(job.id, state=State.DELIVERED)
    return True


def remove_output(job: Job) -> None:
    for folder in {Path(f).parent for f in job.files}:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent.name == job.id:  # the run's folder was in the job's (tasks/lifecycle.py): it goes too
            with suppress(OSError):
                folder.parent.rmdir()


def _origin_id(raw: bytes) -> str:
    return str(json.loads(raw).get("id"))
