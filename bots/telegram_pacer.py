"""Telegram's limits for the whole bot: python-telegram-bot's AIORateLimiter, counting as Telegram counts.

AIORateLimiter holds every Bot API call into a chat to an overall limit and every
call into a group to a per-group limit, and each call waits for its turn. Its own
limiters are leaky buckets, which let a full bucket *plus* its refill through in
one window (up to 60 calls in a second for "30 a second"): sized down to stay
within every window, they would make the first replies to 40 links at once wait
1.4 s. So the pacer keeps AIORateLimiter's way of sorting calls (chat or group,
the retry-after gate) and gives it sliding windows instead: at most `per_second`
calls in any second and 20 in any minute per group (a tenth spare), each call
counted from when it leaves until a window after its answer.

On top of it the chat lanes (bots/throttle.py) space the calls into one chat and
decide what to send: before a call enters the limiter, the lane asks `room`
whether the windows hold more than that call's priority leaves free. So the first
reply to a new link always finds room first, a delivery nearly always, and
progress edits use what is left (they wait, coalescing into the newest text,
while the bot is busy).

A 429 is not retried here (``max_retries=0``): AIORateLimiter would halt *every*
call for the wait, while the answer concerns one chat; the chat's lane waits it
out alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import TracebackType

from aiolimiter import AsyncLimiter
from telegram.ext import AIORateLimiter

from bots.throttle import Priority

GROUP_PER_MINUTE = 20
SPARE = 0.1  # of each limit, kept unused: our clock and Telegram's may tick apart
# How much of a window each priority leaves free for the ones above it.
RESERVE = {Priority.REPLY: 0.0, Priority.DELIVERY: 0.2, Priority.EDIT: 0.5}


class Window:
    """At most `max_rate` calls in any `time_period` seconds (the interface of aiolimiter's AsyncLimiter).

    A call counts from the moment it is let through until `time_period` after its answer: Telegram
    counts it when it arrives, which is somewhere in between, so no window of Telegram's can hold more.
    """

    def __init__(self, max_rate: float, time_period: float) -> None:
        self.max_rate = max_rate
        self.time_period = time_period
        self._done: deque[float] = deque()  # when the calls of the last period were answered
        self._running = 0

    def has_capacity(self, amount: float = 1) -> bool:
        now = time.monotonic()
        while self._done and self._done[0] <= now - self.time_period:
            self._done.popleft()
        return len(self._done) + self._running + amount <= self.max_rate

    async def __aenter__(self) -> None:
        while not self.has_capacity():
            wake = self._done[0] + self.time_period - time.monotonic() if self._done else 0.0
            await asyncio.sleep(max(wake, 0.01))
        self._running += 1

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._running -= 1
        self._done.append(time.monotonic())


class Pacer(AIORateLimiter):
    def __init__(self, per_second: float) -> None:
        super().__init__(max_retries=0)
        self._base_limiter = Window(per_second * (1 - SPARE), 1.0)  # type: ignore[assignment]
        self._group_max_rate, self._group_time_period = GROUP_PER_MINUTE * (1 - SPARE), 60.0

    def _get_group_limiter(self, group_id: str | int | bool) -> Window:  # type: ignore[override]
        if group_id not in self._group_limiters:
            for key, limiter in list(self._group_limiters.items()):  # let quiet groups go
                if limiter.has_capacity(limiter.max_rate):
                    del self._group_limiters[key]
            self._group_limiters[group_id] = Window(self._group_max_rate, self._group_time_period)  # type: ignore[assignment]
        return self._group_limiters[group_id]  # type: ignore[return-value]

    def room(self, chat_id: int, priority: Priority) -> bool:
        """Whether a call of this priority into this chat may enter the limiter now."""
        windows: list[Window | AsyncLimiter | None] = [self._base_limiter]
        if chat_id < 0:  # AIORateLimiter's own rule: negative ids are groups and channels
            windows.append(self._get_group_limiter(chat_id))
        return all(w is None or w.has_capacity(1 + RESERVE[priority] * max(w.max_rate - 1, 0)) for w in windows)
