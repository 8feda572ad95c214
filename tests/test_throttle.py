"""The chat lane: spacing, coalescing, no repeated text, rate limits waited out, gone messages dropped; the
bot-wide pacer: every second within the rate, room kept for replies and deliveries."""

from __future__ import annotations

import asyncio
import itertools
import time

from bots.telegram_pacer import Pacer
from bots.throttle import ChatLane, MessageGone, Priority, RateLimited


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


def test_edits_wait_for_room_while_replies_and_the_mp3_go_first() -> None:
    async def scenario() -> list[str]:
        budget = {Priority.DELIVERY: True, Priority.EDIT: False}  # the bot is busy: no room for edits
        lane, chat = ChatLane(interval=0.01, room=lambda priority: budget[priority]), Chat()
        lane.edit("status", "10%", chat.edit)
        await asyncio.sleep(0.05)
        lane.edit("status", "20%", chat.edit)  # replaces the one waiting
        await asyncio.sleep(0.2)

        async def say(what: str) -> None:
            chat.sent.append((time.monotonic(), what))

        await lane.call(lambda: say("reply"))
        await lane.call(lambda: say("mp3"), priority=Priority.DELIVERY)
        budget[Priority.DELIVERY] = False
        late = asyncio.create_task(lane.call(lambda: say("second mp3"), priority=Priority.DELIVERY))
        await asyncio.sleep(0.2)
        assert not late.done()  # a delivery waits for room too, only less long
        budget[Priority.DELIVERY] = budget[Priority.EDIT] = True
        await late
        await lane.settled()
        return [v for _, v in chat.sent]

    assert asyncio.run(scenario()) == ["reply", "mp3", "second mp3", "20%"]


def test_the_pacer_keeps_every_second_within_the_rate_and_room_for_replies() -> None:
    async def scenario() -> tuple[list[float], dict[str, bool]]:
        pacer, loop = Pacer(30.0), asyncio.get_running_loop()
        times: list[float] = []

        async def api_call(*args: object, **kwargs: object) -> bool:
            times.append(loop.time())
            return True

        async def send(chat: int) -> None:
            await pacer.process_request(api_call, (), {}, "sendMessage", {"chat_id": chat}, None)

        await asyncio.gather(*(send(1000 + n) for n in range(22)))  # a burst: the second is nearly full
        seen = {"busy delivery": pacer.room(1, Priority.DELIVERY), "busy edit": pacer.room(1, Priority.EDIT)}
        await asyncio.gather(*(send(2000 + n) for n in range(80)))
        await asyncio.sleep(1.0)
        seen["calm edit"] = pacer.room(1, Priority.EDIT)
        for _ in range(10):
            await send(-5)  # half of a group's minute
        seen["group delivery"] = pacer.room(-5, Priority.DELIVERY)
        seen["group edit"] = pacer.room(-5, Priority.EDIT)
        return times, seen

    times, seen = asyncio.run(scenario())
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 30
    assert seen == {"busy delivery": False, "busy edit": False, "calm edit": True, "group delivery": True,
                    "group edit": False}
