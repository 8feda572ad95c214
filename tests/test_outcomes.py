"""A stage's outcome as Celery itself tells it (what Flower and `celery events` show): a failure is a
task-failed event naming the error code, a transient error a task-retried one; the message of a failed
task is acked, not delivered again.  Captured with Celery's own event receiver from the session's worker.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from common import context
from common.errors import Code
from common.jobs import State
from tasks import pipeline
from tasks.celery_app import app
from tests.conftest import deliver, origin, wait_job, wait_until
from tests.media import MediaServer

pytestmark = pytest.mark.usefixtures("worker")


class Events:
    """Celery's task events, as a receiver in a thread of this process gets them."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._capture, name="celery-events", daemon=True)

    def start(self) -> None:
        self.thread.start()
        probe = uuid.uuid4().hex
        with app.events.default_dispatcher() as dispatcher:  # subscribed once our own event comes back
            wait_until(lambda: dispatcher.send("ytmp3-probe", probe=probe) or self.where(probe=probe),
                       timeout=30, interval=0.2, what="the event receiver subscribed")

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(10)

    def _capture(self) -> None:
        with app.connection_for_read() as connection:
            self.receiver = app.events.Receiver(connection, handlers={"*": self._on})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.seen.append(event)

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.seen if all(e.get(k) == v for k, v in fields.items())]

    def of_job(self, job_id: str, kind: str, task: str = "tasks.download") -> list[dict[str, Any]]:
        """Events of a kind ("task-failed"...) about the job's runs of a task, in order."""
        with self.lock:
            ids = {e["uuid"] for e in self.seen if e["type"] == "task-received" and e.get("name") == task
                   and job_id in str(e.get("args"))}
            return [e for e in self.seen if e["type"] == kind and e.get("uuid") in ids]

    def wait(self, job_id: str, kind: str, count: int = 1) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.of_job(job_id, kind)) >= count, timeout=30, what=f"{count} {kind} event(s)")
        return self.of_job(job_id, kind)


@pytest.fixture
def events(test_env: dict[str, str]) -> Iterator[Events]:
    captured = Events()
    captured.start()
    yield captured
    captured.stop()


def unacked_task_ids() -> set[str]:
    """Task ids of the messages the broker still holds as delivered and unacknowledged."""
    raw = context.redis_client().hvals(context.keys().broker_unacked)
    return {json.loads(entry)[0]["headers"]["id"] for entry in raw}


def assert_acked(task_id: str) -> None:
    """The failed task's message is acked, not left for the broker to deliver again (the worker acks on its
    next loop turn: the task-failed event may come first)."""
    wait_until(lambda: task_id not in unacked_task_ids(), timeout=10, what=f"the message of {task_id} acked")


def dead_letters(job_id: str) -> list[dict]:
    raw = context.redis_client().lrange(context.keys().dead, 0, -1)
    return [letter for letter in map(json.loads, raw) if letter["job_id"] == job_id]


def test_a_permanent_failure_is_a_celery_failure_with_its_code(events: Events, media: MediaServer) -> None:
    job_id, _ = pipeline.submit(media.url("/status/404/opus.webm", n=uuid.uuid4().hex), origin=origin())
    job = wait_job(job_id)
    assert job.state == State.FAILED and job.error_code == Code.NOT_FOUND  # what users see, as before
    assert "Nothing was found" in job.error_text and len(dead_letters(job_id)) == 1
    [failed] = events.wait(job_id, "task-failed")
    assert failed["exception"].startswith("JobError('not_found:"), failed["exception"]
    assert not events.of_job(job_id, "task-retried")
    assert_acked(failed["uuid"])
    assert len(events.of_job(job_id, "task-received")) == 1


def test_a_transient_error_is_a_celery_retry_with_our_backoff(events: Events, media: MediaServer) -> None:
    key = uuid.uuid4().hex
    job_id, _ = pipeline.submit(media.url(f"/flaky/2/{key}/opus.webm"), origin=origin())
    job = wait_job(job_id)
    assert job.state == State.READY, job.error_text
    retried = events.wait(job_id, "task-retried", count=2)
    assert all(r["exception"].startswith("JobError('server: HTTP 503") for r in retried), retried
    [succeeded] = events.wait(job_id, "task-succeeded")
    assert succeeded["uuid"] == retried[0]["uuid"]  # Celery's retry: the same task, sent again
    assert not events.of_job(job_id, "task-failed") and not dead_letters(job_id)
    messages = [c.get("message", "") for _, c in context.store().history(job_id)]
    assert any("Trying again (2 of 3)" in m for m in messages)
    deliver(job_id)


def test_retries_spent_end_in_one_celery_failure(events: Events, media: MediaServer) -> None:
    job_id, _ = pipeline.submit(media.url("/status/503/opus.webm", n=uuid.uuid4().hex), origin=origin())
    job = wait_job(job_id)
    assert job.state == State.FAILED and job.error_code == Code.SERVER and "4 tries" in job.error_text
    retried = events.wait(job_id, "task-retried", count=3)
    [failed] = events.wait(job_id, "task-failed")
    assert "server: HTTP 503" in failed["exception"]
    assert len(retried) == 3 and len(dead_letters(job_id)) == 1
    assert_acked(failed["uuid"])
