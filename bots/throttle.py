"""Calls into one chat, spaced out; status edits coalesced to the latest text.

Chat platforms limit how often a bot may write into one chat.  Every call a bot
makes into a chat goes through that chat's lane: at most one call per `interval`,
a rate-limit answer pauses the lane for as long as the platform asks, and an edit
that would repeat what the message already says is never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RateLimited(Exception):
    """The platform asked us to wait `seconds` before writing into this chat again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds}s")
        self.seconds = seconds


class MessageGone(Exception):
    """The message to edit no longer exists (the user deleted it)."""


class ChatLane:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = asyncio.Lock()
        self._next_at = 0.0  # spacing between calls
        self._blocked_until = 0.0  # what the platform asked for after a rate limit
        self._urgent_at = 0.0  # the last call let through without spacing: one per interval
        self._pending: dict[Hashable, tuple[Any, Callable[[Any], Awaitable[None]]]] = {}
        self._shown: dict[Hashable, Any] = {}
        self._drainer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def call(self, fn: Callable[[], Awaitable[T]], urgent: bool = False) -> T:
        """Run one call in its turn; a rate limit is waited out and the call tried again.

        An urgent call (the MP3 itself) does not wait for the spacing after a status edit,
        only for a rate limit the platform imposed.
        """
        async with self._lock:
            return await self._run(fn, urgent)

    async def _run(self, fn: Callable[[], Awaitable[T]], urgent: bool = False) -> T:
        while True:
            urgent = urgent and time.monotonic() - self._urgent_at >= self.interval
            ready_at = self._blocked_until if urgent else max(self._next_at, self._blocked_until)
            delay = ready_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                result = await fn()
            except RateLimited as limited:
                log.info("chat rate limited, waiting %.1fs", limited.seconds)
                self._blocked_until = time.monotonic() + limited.seconds
                continue
            self._next_at = time.monotonic() + self.interval
            if urgent:
                self._urgent_at = time.monotonic()
            return result

    def edit(self, key: Hashable, view: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        """Show `view` in message `key` soon; a newer view replaces one not yet sent."""
        if self._shown.get(key) == view:
            self._pending.pop(key, None)
            return
        self._pending[key] = (view, send)
        if self._drainer is None or self._drainer.done():
            self._idle.clear()
            self._drainer = asyncio.create_task(self._drain())

    def shown(self, key: Hashable, view: Any) -> None:
        """Record what a message says now (it was just sent with this view)."""
        self._shown[key] = view

    def forget(self, key: Hashable) -> None:
        self._pending.pop(key, None)
        self._shown.pop(key, None)

    @property
    def idle(self) -> bool:
        """Nothing under way, nothing remembered, no wait owed: the lane can go (a new one behaves the same)."""
        now = time.monotonic()
        return (not self._pending and not self._shown and not self._lock.locked()
                and (self._drainer is None or self._drainer.done())
                and max(self._next_at, self._blocked_until, self._urgent_at + self.interval) <= now)

    async def settled(self) -> None:
        """Wait until every pending edit has been sent."""
        await self._idle.wait()

    async def _drain(self) -> None:
        try:
            while self._pending:
                async with self._lock:
                    if not self._pending:
                        break
                    key = next(iter(self._pending))
                    view, send = self._pending.pop(key)
                    if self._shown.get(key) == view:
                        continue
                    try:
                        await self._run(lambda: send(view))  # noqa: B023 - awaited within this iteration
                        self._shown[key] = view
                    except MessageGone:
                        self.forget(key)
                    except Exception:  # one bad edit must not stop the others
                        log.exception("status edit failed")
        finally:
            self._idle.set()


class Lanes:
    """One lane per chat."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lanes: dict[Hashable, ChatLane] = {}

    def __call__(self, chat: Hashable) -> ChatLane:
        lane = self._lanes.get(chat)
        if lane is None:
            lane = self._lanes[chat] = ChatLane(self.interval)
        return lane

    def __len__(self) -> int:
        return len(self._lanes)

    def prune(self) -> None:
        """Let idle lanes go: a chat that writes again gets a fresh one."""
        for chat in [c for c, lane in self._lanes.items() if lane.idle]:
            del self._lanes[chat]
