"""Faults and load a busy bot meets, injected into the real Telegram bot process: pending records it can't read,
an adapter call that raises, a user who blocked the bot while an admin retries their job, a chat flooded
with 429s, many chats at once against Telegram's limits. Whatever happens in some chats, the others are
answered, and on time."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.core import Request
from bots.loops import Backoff, Loops
from common import context, metrics
from common.jobs import State
from tasks import pipeline
from tests.conftest import BotProcess, wait_until
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer
from tests.test_telegram import ADMIN, TOKEN, answer_to, audios, new_chat, started, unique, wait_audios, wait_status

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=3, retry_after=1) as server:
        yield server


def start_bot(fake: FakeTelegram, test_env: dict[str, str], log: Path, **settings: str) -> BotProcess:
    env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
           "TELEGRAM_FILE_URL": fake.file_url, "TELEGRAM_ADMIN_IDS": str(ADMIN), **settings}
    process = BotProcess("telegram", env, log)
    process.start(started(fake))
    return process


def user() -> int:
    """A user of this test alone (the per-user hourly limit counts across the session)."""
    return 100_000 + uuid.uuid4().int % 1_000_000


def owed(chat: int) -> list[str]:
    """The requests the bot still owes to a chat, as kept in Redis."""
    keys = context.redis_client().hkeys(context.keys().pending("telegram"))
    return [key.decode() for key in keys if f":{chat}:" in key.decode()]


def test_faults_in_some_chats_leave_the_others_served(fake: FakeTelegram, test_env: dict[str, str],
                                                      media: MediaServer, tmp_path: Path) -> None:
    client, pending = context.redis_client(), context.keys().pending("telegram")
    # Records left by another version: unreadable, unusable, and one with a field this version doesn't know.
    client.hset(pending, "telegram:1:broken", b"{not json")
    client.hset(pending, "telegram:2:odd", json.dumps({"id": "telegram:2:odd", "url": 5, "user_id": "x"}))
    resumed_chat = new_chat()
    req = Request(f"telegram:{resumed_chat}:{uuid.uuid4().hex[:10]}", unique(media.media_url("opus.webm")),
                  user(), resumed_chat, 192, None)
    req.job_id, _ = pipeline.submit(req.url, req.bitrate, None, {"id": req.id, "platform": "telegram"})
    client.hset(pending, req.id, json.dumps({**json.loads(req.to_json()), "from_a_newer_version": {"x": 1}}))
    bot = start_bot(fake, test_env, tmp_path / "bot.log")
    try:
        # A user blocks the bot after a failure; an admin retries their job: the bot can't write to them.
        blocked_chat = new_chat()
        asked = fake.push_message(blocked_chat, user(), unique(media.url("/status/404/opus.webm")))
        wait_status(fake, blocked_chat, asked, "❌", timeout=30)
        job_id = _job_of(blocked_chat)
        wait_until(lambda: not owed(blocked_chat), timeout=10, what="the failure answered")
        fake.blocked.add(blocked_chat)
        admin_chat = new_chat()
        retried = answer_to(fake, admin_chat, fake.push_message(admin_chat, ADMIN, f"/retry {job_id}"),
                            containing="Retrying as job").split()[-1].rstrip(".")
        # Every answer into another chat is garbage the client library can't read: the adapter raises.
        garbled_chat = new_chat()
        fake.garbled.add(garbled_chat)
        fake.push_message(garbled_chat, user(), unique(media.media_url("audio.m4a")))
        # Meanwhile, an ordinary chat.
        chat = new_chat()
        fake.push_message(chat, user(), unique(media.media_url("video.mp4")))
        wait_audios(fake, chat, timeout=60)
        wait_audios(fake, resumed_chat, timeout=60)  # the record with an unknown field was resumed
        # It fails again, unless the bot cancelled it first: its only requester can't be told anything.
        wait_until(lambda: context.store().get(retried)
                   and context.store().get(retried).state in (State.FAILED, State.CANCELLED),
                   timeout=30, what="the retried job ending")
        wait_until(lambda: [c for c in fake.calls(chat_id=blocked_chat) if c.status == 403], timeout=15,
                   what="the bot trying to answer the retried job")
        wait_until(lambda: not owed(blocked_chat), timeout=15, what="the retried request let go")
        assert not audios(fake, blocked_chat)
        assert not client.hexists(pending, "telegram:1:broken") and not client.hexists(pending, "telegram:2:odd")
        # A liveness figure the admin sees: the follow loop turned just now.
        stats_text = answer_to(fake, admin_chat, fake.push_message(admin_chat, ADMIN, "/stats"), containing="Workers")
        assert "Bot telegram: loop turned" in stats_text
        assert bot.proc is not None and bot.proc.poll() is None
    finally:
        bot.stop()
    log = (tmp_path / "bot.log").read_text()
    assert log.count("dropping an unusable pending request") == 2
    assert "Traceback" not in "".join(m.get("text", "") for m in fake.messages(chat))


def test_a_flooded_chat_does_not_hold_up_another(fake: FakeTelegram, test_env: dict[str, str], media: MediaServer,
                                                 tmp_path: Path) -> None:
    bot = start_bot(fake, test_env, tmp_path / "bot.log")
    try:
        flooded, other = new_chat(), new_chat()
        fake.flood(flooded, seconds=15, retry_after=5)
        fake.push_message(flooded, user(), unique(media.media_url("opus.webm")))
        asked = fake.push_message(other, user(), unique(media.media_url("audio.m4a")))
        [audio] = wait_audios(fake, other, timeout=60)
        assert fake.forced_429s > 0 and not audios(fake, flooded)  # the flood was still on
        wait_status(fake, other, asked, "Done", timeout=10)
        job_id = _job_of(other)
        ready_at = next(change["updated"] for _, change in context.store().history(job_id)
                        if change.get("state") == State.READY)
        sent_at = next(c.time for c in fake.calls("sendAudio", other) if c.status == 200)
        offset = time.time() - time.monotonic()  # the fake logs monotonic times
        assert sent_at + offset - ready_at < 2.0, sent_at + offset - ready_at  # generous: it takes milliseconds
        wait_audios(fake, flooded, timeout=60)  # once the flood lifts
        assert fake.early_retries == 0 and fake.flood_429s == 0
        assert audio["uploaded"]
    finally:
        bot.stop()


def test_many_chats_at_once_stay_within_every_limit(test_env: dict[str, str], media: MediaServer,
                                                   tmp_path: Path) -> None:
    """Telegram's three limits, the bot-wide one lowered so that 13 chats at once press on it."""
    with FakeTelegram(flood_limit=2, retry_after=1, group_limit=20, global_limit=10) as fake:
        bot = start_bot(fake, test_env, tmp_path / "bot.log", TELEGRAM_RATE="10")
        try:
            chats = [new_chat() for _ in range(10)] + [-new_chat() for _ in range(3)]
            for chat in chats:
                link = unique(media.media_url("opus.webm"))
                if chat < 0:
                    fake.push_message(chat, user(), f"/mp3 {link}", chat_type="group")
                else:
                    fake.push_message(chat, user(), link)
            for chat in chats:
                wait_audios(fake, chat, timeout=120)
            assert all(len(audios(fake, chat)) == 1 for chat in chats)
            assert fake.flood_429s == 0 and fake.early_retries == 0, dict(fake.limit_429s)
        finally:
            bot.stop()


def _job_of(chat: int) -> str:
    """The job id on a chat's status (the cancel button is gone by now: the job's origins tell)."""
    client, keys = context.redis_client(), context.keys()
    for key in client.scan_iter(f"{keys.prefix}job:*:origins"):
        for raw in client.lrange(key, 0, -1):
            if f":{chat}:" in json.loads(raw).get("id", ""):
                return key.decode().removeprefix(f"{keys.prefix}job:").removesuffix(":origins")
    raise AssertionError(f"no job for chat {chat}")


def test_a_loop_that_fails_is_logged_once_counted_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    platform = f"test-{uuid.uuid4().hex[:6]}"
    turns: list[float] = []

    async def flaky() -> None:
        turns.append(time.monotonic())
        if len(turns) <= 3:
            raise KeyError("from_a_newer_version")
        await asyncio.Event().wait()  # then it runs for good

    async def scenario() -> None:
        loops = Loops(platform, Backoff(first=0.05, most=0.2))
        loops.start("follow", flaky)
        while len(turns) < 4:
            await asyncio.sleep(0.01)
        await loops.stop()

    with caplog.at_level(logging.WARNING, logger="bots.loops"):
        asyncio.run(scenario())
    metrics.flush()
    assert len(turns) == 4 and turns[2] - turns[1] >= turns[1] - turns[0]  # the pause grows
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "again" in caplog.records[-1].getMessage()
    recorded = metrics.read(context.redis_client(), context.keys())["ytmp3_loop_restarts_total"]
    labels = (("error", "KeyError"), ("loop", "follow"), ("platform", platform))
    assert recorded.get(labels) == 3
