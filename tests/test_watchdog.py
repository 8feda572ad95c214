"""The watchdog leaves live stages alone and gives up on a job whose workers keep vanishing."""

from __future__ import annotations

import json
import time
import uuid

from common import context
from common.errors import TEXT, Code
from common.jobs import Job, State, new_job_id
from tasks import watchdog


def stale_job(state: State, restarts: int = 0) -> str:
    store = context.store()
    job = Job(id=new_job_id(), url=f"http://127.0.0.1:9/{uuid.uuid4().hex}", state=state, restarts=restarts)
    store.create(job)
    store.redis.zadd(store.keys.running, {job.id: time.time() - 3600})  # its heartbeat stopped long ago
    return job.id


def test_a_live_lease_is_left_alone(test_env: dict[str, str]) -> None:
    job_id = stale_job(State.CONVERTING)
    store = context.store()
    store.redis.set(store.keys.job_lease(job_id), "someone", ex=30)
    assert job_id not in watchdog.check()
    assert store.get(job_id).state == State.CONVERTING and store.get(job_id).restarts == 0


def test_a_finished_job_is_forgotten(test_env: dict[str, str]) -> None:
    job_id = stale_job(State.CANCELLED)
    assert job_id not in watchdog.check()
    assert context.redis_client().zscore(context.keys().running, job_id) is None


def test_workers_vanishing_again_and_again_end_in_a_clear_failure(test_env: dict[str, str]) -> None:
    job_id = stale_job(State.DOWNLOADING, restarts=watchdog.MAX_RESTARTS)
    assert job_id not in watchdog.check()
    job = context.store().get(job_id)
    assert job.state == State.FAILED and job.error_code == Code.OUT_OF_MEMORY
    assert job.error_text == TEXT[Code.OUT_OF_MEMORY] and not job.retryable
    letters = [json.loads(raw) for raw in context.redis_client().lrange(context.keys().dead, 0, 20)]
    assert any(d["job_id"] == job_id and d["task"] == "watchdog" for d in letters)
