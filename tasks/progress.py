"""A running stage: its fenced lease and heartbeat, its progress throttled at the source, the cancel check.

Each run of a stage takes the job's lease with a token of its own and renews it from a
heartbeat thread; when the process dies or stalls (a worker frozen, Redis away longer than
the heartbeat timeout) the lease expires and the watchdog sends the stage again.  The old
run may still wake up: every write it makes carries its token (common/jobs.py checks it in
the same step), so a run that lost its lease publishes nothing, advances and fails nothing,
and stops at its next progress report.  Its files live in folders of its own, named by its
token (tasks/lifecycle.py), so it cannot trample the run that took over either.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.client import Pipeline

from common.errors import Cancelled
from common.jobs import JobStore, State, Written, overall_percent

# Renew the lease, and show the job as running, only while we hold it; KEYS: lease, running; ARGV: token,
# ttl ms, job id, now.
_RENEW = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
redis.call('zadd', KEYS[2], ARGV[4], ARGV[3])
return 1
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseTaken(Exception):
    """Another run holds this job's stage: the broker delivered its message twice, or this run
    stalled past the heartbeat timeout and the stage was sent again."""


class StageReporter:
    """One run of one stage of one job, in this process.

    It holds the job's lease, renewed by a heartbeat thread.  Progress is published at most
    every `interval` seconds, and the last one always; each publish notices a cancel (Cancelled)
    and a lost lease (LeaseTaken).  `finish` is the run's last write: it gives the lease back.
    """

    def __init__(self, store: JobStore, job_id: str, state: State, interval: float, lease_ttl: float) -> None:
        self.store = store
        self.job_id = job_id
        self.state = state
        self.interval = interval
        self.lease_ttl = lease_ttl
        self.token = secrets.token_hex(8)
        self.lost = False  # the heartbeat found the lease gone
        self.ended: Written | None = None  # the outcome of the run's last write, once made
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
        self._check(self.store.write(self.job_id, {"state": self.state, "percent": overall_percent(self.state, 0),
                                                   "speed": None, "eta": None, **fields}, lease=self.token))
        self._last_sent = time.monotonic()

    def progress(self, fraction: float, speed: float | None = None, eta: float | None = None, **fields: Any) -> None:
        if self.lost:
            raise LeaseTaken
        self._pending = {"percent": overall_percent(self.state, fraction), "speed": speed, "eta": eta, **fields}
        if time.monotonic() - self._last_sent >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Publish what is pending now (end of a step); raise Cancelled if the job was stopped,
        LeaseTaken if another run holds it."""
        self._check(self.store.write(self.job_id, self._pending or {}, lease=self.token))
        self._pending = None
        self._last_sent = time.monotonic()

    def finish(self, also: Callable[[Pipeline], None] | None = None, **fields: Any) -> Written:
        """The run's last write: what is pending and `fields`, with `also`, the lease given back.

        By default the job leaves the running set (it waits in the next stage's queue, where
        the broker keeps it).  Only the first call writes; later ones return its outcome.
        """
        if self.ended is None:
            keys = self.store.keys

            def leave_running(pipe: Pipeline) -> None:
                pipe.zrem(keys.running, self.job_id)

            self.stop()
            self.ended = self.store.write(self.job_id, {**(self._pending or {}), **fields}, lease=self.token,
                                          release=True, also=also or leave_running)
            self._pending = None
        return self.ended

    def holds_lease(self) -> bool:
        """Whether this run still holds the job (asked of Redis, not of the heartbeat alone)."""
        return not self.lost and self.store.redis.get(self.store.keys.job_lease(self.job_id)) == self.token.encode()

    def stop(self) -> None:
        """Stop the heartbeat; the lease stays until the run's last write or its expiry."""
        self._stop.set()
        if self._beater is not None and self._beater is not threading.current_thread():
            self._beater.join(2)

    def close(self) -> None:
        """Stop the heartbeat and give the lease back (a run that ends without a last write)."""
        self.stop()
        if self.ended is None:
            self.store.redis.eval(_RELEASE, 1, self.store.keys.job_lease(self.job_id), self.token)

    @staticmethod
    def _check(written: Written) -> None:
        if written is Written.LEASE_LOST:
            raise LeaseTaken
        if written is Written.FINISHED:
            raise Cancelled

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.lease_ttl / 3):
            try:
                self._beat()
            except Exception:  # Redis away for a moment: the next beat may get through
                continue
            if self.lost:
                return

    def _beat(self) -> None:
        keys = self.store.keys
        held = self.store.redis.eval(_RENEW, 2, keys.job_lease(self.job_id), keys.running, self.token,
                                     int(self.lease_ttl * 1000), self.job_id, time.time())
        self.lost = self.lost or not held
