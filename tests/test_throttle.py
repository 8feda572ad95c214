"""The chat lane: spacing, coalescing, no repeated text, rate limits waited out, gone messages dropped."""

from __future__ import annotations

import asyncio
import itertools
import time

from bots.throttle import ChatLane, MessageGone, RateLimited


class Chat:
    """A platform stand-in that records what it was asked, and when."""

    def __init__(self, limited: list[float] | None = None, gone: bool = False) -> None:
        self.sent: list[tuple[float, str]] = []
        self.limited = limited or []
        self.gone = gone

    async def edit(self, view: str) -> None:
        if self.gone:
            raise MessageGone
        if self.limited:
            raise RateLimited(self.limited.pop(0))
        self.sent.append((time.monotonic(), view))


def test_edits_are_coalesced_spaced_and_never_repeated() -> None:
    async def scenario() -> list[tuple[float, str]]:
        lane, chat = ChatLane(interval=0.2), Chat()
        for n in range(10):
            lane.edit("status", f"{n * 10}%", chat.edit)
            await asyncio.sleep(0.03)
        await lane.settled()
        lane.edit("status", "90%", chat.edit)  # what the message already says
        await lane.settled()
        return chat.sent

    sent = asyncio.run(scenario())
    views = [v for _, v in sent]
    assert views[-1] == "90%" and len(views) < 5 and len(set(views)) == len(views)
    assert all(b - a >= 0.19 for (a, _), (b, _) in itertools.pairwise(sent))


def test_a_rate_limit_is_waited_out_and_the_latest_view_sent() -> None:
    async def scenario() -> tuple[float, list[tuple[float, str]]]:
        lane, chat = ChatLane(interval=0.05), Chat(limited=[0.4])
        started = time.monotonic()
        lane.edit("status", "first", chat.edit)
        await asyncio.sleep(0.1)
        lane.edit("status", "second", chat.edit)
        await lane.settled()
        return started, chat.sent

    started, sent = asyncio.run(scenario())
    assert sent[0][0] - started >= 0.4  # not a single call before retry_after passed
    assert [v for _, v in sent][-1] == "second"


def test_direct_calls_share_the_spacing_and_retry_after_a_limit() -> None:
    async def scenario() -> list[float]:
        lane, times = ChatLane(interval=0.2), []
        attempts = iter([RateLimited(0.3), None, None])

        async def send() -> str:
            failure = next(attempts)
            if failure:
                raise failure
            times.append(time.monotonic())
            return "ok"

        assert await lane.call(send) == "ok"
        assert await lane.call(send) == "ok"
        return times

    first, second = asyncio.run(scenario())
    assert second - first >= 0.19


def test_an_urgent_call_skips_the_spacing_once_per_interval() -> None:
    async def scenario() -> list[float]:
        lane, times = ChatLane(interval=0.3), []

        async def send() -> None:
            times.append(time.monotonic())

        for urgent in (False, True, True):
            await lane.call(send, urgent=urgent)
        return times

    edit, upload, next_upload = asyncio.run(scenario())
    assert upload - edit < 0.1  # the MP3 right after a status edit
    assert next_upload - upload >= 0.29  # but not two of them


def test_a_deleted_message_stops_its_edits() -> None:
    async def scenario() -> Chat:
        lane, chat = ChatLane(interval=0.01), Chat(gone=True)
        lane.edit("status", "10%", chat.edit)
        await lane.settled()
        chat.gone = False
        lane.edit("other", "20%", chat.edit)  # the lane goes on for the chat's other messages
        await lane.settled()
        return chat

    assert [v for _, v in asyncio.run(scenario()).sent] == ["20%"]
