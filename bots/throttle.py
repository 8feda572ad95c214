"""Calls into one chat, spaced out; status edits coalesced to the latest text; the bot's budget shared by priority.

Chat platforms limit how often a bot may write into one chat.  Every call a bot
makes into a chat goes through that chat's lane: at most one call per `interval`,
a rate-limit answer pauses the lane (and only it) for as long as the platform asks,
and an edit that would repeat what the message already says is never sent.

Platforms limit the bot as a whole too. A lane asks `room(priority)` (the
platform's pacer, e.g. bots/telegram_pacer.py) before a call of lower priority
goes out: a delivery waits until the bot's budget has some to spare, a progress
edit until it has more, and meanwhile newer views replace the one waiting. A
first reply never waits for room.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import IntEnum
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
ROOM_RECHECK = 0.1  # seconds between looks at the budget while a call waits for room


class Priority(IntEnum):
    REPLY = 0
    """The first answer to a new request (and every reply to a command)."""
    DELIVERY = 1
    """The MP3."""
    EDIT = 2
    """A progress edit: coalesced while it waits, never worth a reply's or a delivery's place."""


Room = Callable[[Priority], bool]


class RateLimited(Exception):
    """The platform asked us to wait `seconds` before writing into this chat again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds}s")
        self.seconds = seconds


class MessageGone(Exception):
    """The message to edit no longer exists (the user deleted it)."""


class ChatGone(MessageGone):
    """The whole chat no longer takes the bot's messages (a deleted channel, the bot removed or blocked): whatever
    a request still had to say there, it can't. The lane treats it as its message gone; the core ends the request."""


class ChatLane:
    def __init__(self, interval: float, room: Room | None = None) -> None:
        self.interval = interval
        self.room = room
        self._lock = asyncio.Lock()
        self._next_at = 0.0  # spacing between calls
        self._blocked_until = 0.0  # what the platform asked for after a rate limit
        self._urgent_at = 0.0  # the last call let through without spacing: one per interval
        self._pending: dict[Hashable, tuple[Any, Callable[[Any], Awaitable[None]], Priority]] = {}
        self._shown: dict[Hashable, Any] = {}
        self._drainer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def call(self, fn: Callable[[], Awaitable[T]], urgent: bool = False,
                   priority: Priority = Priority.REPLY) -> T:
        """Run one call in its turn; a rate limit is waited out and the call tried again.

        An urgent call (the MP3 itself) does not wait for the spacing after a status edit,
        only for a rate limit the platform imposed.
        """
        await self._until_room(priority)
        if not urgent:
            await self._until_due()  # outside the lock: an urgent call may go meanwhile
        async with self._lock:
            return await self._run(fn, urgent)

    async def _until_due(self) -> None:
        delay = max(self._next_at, self._blocked_until) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _until_room(self, priority: Priority) -> None:
        while priority != Priority.REPLY and self.room is not None and not self.room(priority):
            await asyncio.sleep(ROOM_RECHECK)

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

    def edit(self, key: Hashable, view: Any, send: Callable[[Any], Awaitable[None]],
             priority: Priority = Priority.EDIT) -> None:
        """Show `view` in message `key` soon; a newer view replaces one not yet sent.

        A request's last words (done, failed, cancelled) go as a delivery: progress edits must not spend the
        budget they need (a group's 20 a minute)."""
        if self._shown.get(key) == view:
            self._pending.pop(key, None)
            return
        self._pending[key] = (view, send, priority)
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

    def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()

    async def settled(self) -> None:
        """Wait until every pending edit has been sent."""
        await self._idle.wait()

    async def _drain(self) -> None:
        try:
            while self._pending:
                first = min(self._pending.values(), key=lambda pending: pending[2])[2]
                await self._until_room(first)  # outside the lock: a reply or the MP3 may go first
                await self._until_due()
                async with self._lock:
                    if not self._pending:
                        break
                    key = min(self._pending, key=lambda k: self._pending[k][2])  # last words first
                    view, send, _ = self._pending.pop(key)
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
    """One lane per chat; `room_for(chat, priority)` is the platform's pacer, if it has one."""

    def __init__(self, interval: float, room_for: Callable[[Any, Priority], bool] | None = None) -> None:
        self.interval = interval
        self.room_for = room_for
        self._lanes: dict[Hashable, ChatLane] = {}

    def __call__(self, chat: Hashable) -> ChatLane:
        lane = self._lanes.get(chat)
        if lane is None:
            room = None if self.room_for is None else functools.partial(self.room_for, chat)
            lane = self._lanes[chat] = ChatLane(self.interval, room)
        return lane

    def __len__(self) -> int:
        return len(self._lanes)

    def close(self) -> None:
        """The bot stops: edits not yet sent are dropped."""
        for lane in self._lanes.values():
            lane.close()

    def prune(self) -> None:
        """Let idle lanes go: a chat that writes again gets a fresh one."""
        for chat in [c for c, lane in self._lanes.items() if lane.idle]:
            del self._lanes[chat]
