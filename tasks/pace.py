"""The pace of a download: one that trickles fails as too slow instead of holding its slot until the time limit.

Past the first ``slow_grace`` seconds, every stretch of ``slow_grace`` seconds must bring
``min_download_rate`` bytes a second on average. The bytes are counted by yt-dlp's progress hook,
but a trickle may call no hook for hours (yt-dlp reads in blocks of a KB and more, and a byte every
few seconds keeps the socket timeout away): so the stage's watch judges the pace every second too,
and interrupts the read that is waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from common import i18n
from common.errors import Code, JobError, human_bytes
from common.i18n import N_, Msg
from tasks import interrupt


class Pace:
    def __init__(self, min_rate: int, grace: float) -> None:
        self.min_rate = min_rate
        self.grace = grace
        self.done = 0
        self.started = time.monotonic()
        self.mark: tuple[float, int] | None = None  # (when, bytes by then): the start of the stretch being judged
        self.finished = False  # all bytes are in: what follows (yt-dlp's fixups) is not judged
        self._lock = threading.Lock()  # judged by the progress hook and by the stage's watch

    def check(self, done: int | None = None) -> None:
        """Note the bytes received so far (when given) and judge the stretch that has run its length."""
        with self._lock:
            self._check(done)

    def _check(self, done: int | None) -> None:
        if done is not None:
            self.done = done
        now = time.monotonic()
        if not self.min_rate or self.finished or now - self.started < self.grace:
            return
        if self.mark is None:
            self.mark = (now, self.done)
            return
        since, then = self.mark
        if now - since < self.grace:
            return
        rate = (self.done - then) / (now - since)
        if rate < self.min_rate:
            raise JobError(Code.TOO_SLOW, f"{human_bytes(rate)}/s over {now - since:.0f}s, under MIN_DOWNLOAD_RATE "
                                          f"({human_bytes(self.min_rate)}/s, judged after SLOW_GRACE {self.grace:g}s)",
                           hint=Msg(N_("The bot needs at least %(rate)s."), rate=i18n.speed(self.min_rate)))
        self.mark = (now, self.done)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Judge the pace every second while the block runs, whether bytes arrive or not.

        The stage's watch (tasks.interrupt) judges it from a thread of its own, in any pool, and
        interrupts a read that waits; outside a stage the progress hook's checks remain.
        """
        self.started = time.monotonic()
        if not self.min_rate:
            yield
            return
        with interrupt.checking(self.check):
            yield
