"""A running stage: its lease and heartbeat, its progress throttled at the source, the cancel check."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from common.errors import Cancelled
from common.jobs import JobStore, State, overall_percent

# Renew the lease only while we hold it; KEYS: lease, ARGV: token, ttl ms.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseTaken(Exception):
    """Another live run holds this job's stage (the broker delivered its message twice)."""


class StageReporter:
    """One stage of one job, while it runs in this process.

    It holds the job's lease, renewed by a heartbeat thread: when the process dies the
    lease expires and the watchdog takes the stage up again.  Progress is published at
    most every `interval` seconds, and the last one always; each publish notices a cancel.
    """

    def __init__(self, store: JobStore, job_id: str, state: State, interval: float, lease_ttl: float) -> None:
        self.store = store
        self.job_id = job_id
        self.state = state
        self.interval = interval
        self.lease_ttl = lease_ttl
        self.token = uuid.uuid4().hex
        self._last_sent = 0.0
        self._pending: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def start(self, **fields: Any) -> None:
        """Take the lease and enter the stage (published at once)."""
        lease = self.store.keys.job_lease(self.job_id)
        if not self.store.redis.set(lease, self.token, nx=True, px=int(self.lease_ttl * 1000)):
            raise LeaseTaken
        self._beat()
        self._beater = threading.Thread(target=self._beat_loop, name=f"beat-{self.job_id}", daemon=True)
        self._beater.start()
        if not self.store.update_unless_finished(
            self.job_id, state=self.state, percent=overall_percent(self.state, 0), speed=None, eta=None, **fields
        ):
            raise Cancelled
        self._last_sent = time.monotonic()

    def close(self) -> None:
        """Stop the heartbeat and give the lease back."""
        self._stop.set()
        if self._beater is not None:
            self._beater.join(2)
        self.store.redis.eval(_RELEASE, 1, self.store.keys.job_lease(self.job_id), self.token)

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
        self._last_sent = time.monotonic()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.lease_ttl / 3):
            try:
                self._beat()
            except Exception:  # Redis away for a moment: the next beat may get through
                continue

    def _beat(self) -> None:
        keys = self.store.keys
        pipe = self.store.redis.pipeline()
        pipe.eval(_RENEW, 1, keys.job_lease(self.job_id), self.token, int(self.lease_ttl * 1000))
        pipe.zadd(keys.running, {self.job_id: time.time()})
        pipe.execute()
