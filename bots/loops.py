"""A bot's background work, supervised: no exception ends a loop for good, and none goes unseen.

Every loop (following the jobs, refreshing queue positions, housekeeping) runs
under `Loops.start`: whatever it raises is logged (with its traceback the first
time, in one line while the same error repeats), counted in
``ytmp3_loop_restarts_total``, and the loop starts again after a pause that grows
while it keeps failing. Short-lived work for one chat (an upload, a last status)
runs under `Loops.spawn`: a task that is kept until done and whose failure is
logged and counted instead of vanishing with the task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis

from common import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    most: float = 30.0
    calm: float = 60.0
    """A loop that ran this long without failing starts over at `first`."""


class Loops:
    """The supervised tasks of one bot."""

    def __init__(self, platform: str, backoff: Backoff = Backoff()) -> None:
        self.platform = platform
        self.backoff = backoff
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `loop` until the bot stops; it is started again whenever it raises (or returns)."""
        return self._keep(asyncio.create_task(self._supervise(name, loop), name=name))

    def spawn(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one piece of work beside everything else; a failure is logged and counted."""
        task = self._keep(asyncio.create_task(work, name=name))
        task.add_done_callback(lambda done: self._failed(name, done))
        return task

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)  # a reference until it is done: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)
        return task

    def _failed(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        metrics.count("ytmp3_loop_restarts_total", platform=self.platform, loop=name.split(":")[0],
                      error=type(error).__name__)
        log.error("%s failed", name, exc_info=error)

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        delay, last = self.backoff.first, ""
        while True:
            started = time.monotonic()
            try:
                await loop()
                error: BaseException = RuntimeError("the loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as raised:
                error = raised
            if time.monotonic() - started > self.backoff.calm:
                delay, last = self.backoff.first, ""
            metrics.count("ytmp3_loop_restarts_total", platform=self.platform, loop=name, error=type(error).__name__)
            said = f"{type(error).__name__}: {error}"
            if isinstance(error, redis.RedisError):
                log.warning("%s: Redis unavailable (%s); again in %.0f s", name, error, delay)
            elif said == last:
                log.warning("%s failed again (%s); again in %.0f s", name, said, delay)
            else:
                log.error("%s failed; again in %.0f s", name, delay, exc_info=error)
            last = said
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff.most)
