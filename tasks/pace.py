"""The pace of a download: one that trickles fails as too slow instead of holding its slot until the time limit.

Past the first ``slow_grace`` seconds, every stretch of ``slow_grace`` seconds must bring
``min_download_rate`` bytes a second on average. The bytes are counted by yt-dlp's progress hook,
but a trickle may call no hook for hours (yt-dlp reads in blocks of a KB and more, and a byte every
few seconds keeps the socket timeout away): so a timer signal judges the pace every second too,
and its exception interrupts the read that is waiting.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from common.errors import Code, JobError, human_bytes


class Pace:
    def __init__(self, min_rate: int, grace: float) -> None:
        self.min_rate = min_rate
        self.grace = grace
        self.done = 0
        self.started = time.monotonic()
        self.mark: tuple[float, int] | None = None  # (when, bytes by then): the start of the stretch being judged
        self.finished = False  # all bytes are in: what follows (yt-dlp's fixups) is not judged

    def check(self, done: int | None = None) -> None:
        """Note the bytes received so far (when given) and judge the stretch that has run its length."""
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
                           hint=f"The bot needs at least {human_bytes(self.min_rate)}/s.")
        self.mark = (now, self.done)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Judge the pace every second while the block runs, whether bytes arrive or not.

        Signals reach the main thread only (a Celery pool process runs its task there); elsewhere the
        progress hook's checks remain.
        """
        self.started = time.monotonic()
        if not self.min_rate or threading.current_thread() is not threading.main_thread():
            yield
            return

        def tick(signum: int, frame: FrameType | None) -> None:
            self.check()

        previous = signal.signal(signal.SIGALRM, tick)
        tick_every = min(1.0, self.grace / 2)
        signal.setitimer(signal.ITIMER_REAL, tick_every, tick_every)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
