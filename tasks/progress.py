"""Progress of a running stage, throttled at the source, and the cancel check."""

from __future__ import annotations

import time
from typing import Any

from common.errors import Cancelled
from common.jobs import JobStore, State, overall_percent


class StageReporter:
    """Publishes a stage's progress at most every `interval` seconds, and the last one always.

    Each publish also beats the job's heartbeat and notices a cancel request.
    """

    def __init__(self, store: JobStore, job_id: str, state: State, interval: float) -> None:
        self.store = store
        self.job_id = job_id
        self.state = state
        self.interval = interval
        self._last_sent = 0.0
        self._pending: dict[str, Any] | None = None

    def start(self, **fields: Any) -> None:
        """Enter the stage: published at once."""
        if not self.store.update_unless_finished(
            self.job_id, state=self.state, percent=overall_percent(self.state, 0), speed=None, eta=None, **fields
        ):
            raise Cancelled
        self._beat()
        self._last_sent = time.monotonic()

    def progress(self, fraction: float, speed: float | None = None, eta: float | None = None, **fields: Any) -> None:
        self._pending = {"percent": overall_percent(self.state, fraction), "speed": speed, "eta": eta, **fields}
        if time.monotonic() - self._last_sent >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Publish what is pending now (end of a stage); raise Cancelled if the job was stopped."""
        if self.store.state(self.job_id) in (State.CANCELLED, State.FAILED, None):
            raise Cancelled
        if self._pending is not None:
            self.store.update(self.job_id, **self._pending)
            self._pending = None
        self._beat()
        self._last_sent = time.monotonic()

    def check(self) -> None:
        """Cheap enough to call often: looks at Redis at most every interval."""
        if time.monotonic() - self._last_sent >= self.interval:
            self.flush()

    def _beat(self) -> None:
        self.store.redis.zadd(self.store.keys.running, {self.job_id: time.time()})
