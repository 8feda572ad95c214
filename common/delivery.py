"""Delivery bookkeeping shared by the CLI and both bots: a job is done when every requester has it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.jobs import Job, JobStore, State


def mark_delivered(store: JobStore, job: Job, origin_id: str) -> bool:
    """Record that one requester got the files; the last one removes them. True when all have."""
    keys = store.keys
    pipe = store.redis.pipeline()
    pipe.sadd(keys.job_delivered(job.id), origin_id)
    pipe.expire(keys.job_delivered(job.id), store.ttl)
    pipe.smembers(keys.job_delivered(job.id))
    pipe.lrange(keys.job_origins(job.id), 0, -1)
    _, _, delivered, origins = pipe.execute()
    wanted = {_origin_id(raw) for raw in origins}
    if not wanted <= {d.decode() for d in delivered}:
        return False
    remove_output(job)
    store.update(job.id, state=State.DELIVERED)
    return True


def remove_output(job: Job) -> None:
    for folder in {Path(f).parent for f in job.files}:
        shutil.rmtree(folder, ignore_errors=True)


def _origin_id(raw: bytes) -> str:
    return str(json.loads(raw).get("id"))
