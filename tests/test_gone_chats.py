"""A chat that stops taking the bot's messages while it owes them something: a Discord channel deleted (404 Unknown
Channel), a Telegram user who blocked the bot (403). The request ends in one log line, without a traceback; its slot
and its pending record are let go, its job (no one else's) is cancelled, nothing is tried again; the bot goes on
serving the other chats. Real bot processes against the fake servers, the real worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import context
from common.jobs import State
from tests.conftest import BotProcess, wait_until
from tests.fake_discord import UNKNOWN_CHANNEL, UNKNOWN_MESSAGE, FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer
from tests.test_discord import GUILD, TOKEN, new_id, unique, wait_files, wait_original
from tests.test_discord import started as discord_started
from tests.test_telegram import TOKEN as TELEGRAM_TOKEN
from tests.test_telegram import audios, new_chat, wait_audios, wait_status
from tests.test_telegram import started as telegram_started

pytestmark = pytest.mark.usefixtures("worker")

GONE_LINE = "the chat no longer takes messages"


def owed(platform: str, chat: int) -> list[str]:
    """The requests a bot still owes to a chat, as kept in Redis."""
    keys = context.redis_client().hkeys(context.keys().pending(platform))
    return [key.decode() for key in keys if f":{chat}:" in key.decode()]


def running(platform: str, user: int) -> set[bytes]:
    """The user's requests holding a slot."""
    return context.redis_client().smembers(context.keys().user(platform, user, "active"))


def job_of(chat: int) -> str:
    client, keys = context.redis_client(), context.keys()
    for key in client.scan_iter(f"{keys.prefix}job:*:origins"):
        if any(f":{chat}:" in json.loads(raw).get("id", "") for raw in client.lrange(key, 0, -1)):
            return key.decode().removeprefix(f"{keys.prefix}job:").removesuffix(":origins")
    raise AssertionError(f"no job for chat {chat}")


def ended(platform: str, chat: int, user: int) -> None:
    wait_until(lambda: not owed(platform, chat) and not running(platform, user), timeout=20,
               what=f"the request in chat {chat} let go")


def quiet(log: Path, gone: int) -> None:
    """`gone` requests ended in one line each, and nothing in the log has a traceback."""
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert text.count(GONE_LINE) == gone, text[-3000:]


@pytest.fixture
def discord_bot(test_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[FakeDiscord, BotProcess]]:
    with FakeDiscord(guild_id=GUILD, token=TOKEN) as fake:
        env = {**test_env, "DISCORD_TOKEN": TOKEN, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_GUILD_ID": str(GUILD)}
        bot = BotProcess("discord", env, tmp_path / "discord.log")
        bot.start(discord_started(fake))
        try:
            yield fake, bot
        finally:
            bot.stop()


def test_a_channel_deleted_mid_job_ends_its_request(discord_bot: tuple[FakeDiscord, BotProcess],
                                                   media: MediaServer) -> None:
    fake, bot = discord_bot
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/16000/opus.webm"))}, user_id=user,
                               channel_id=channel)
    wait_original(fake, token, "Downloading", timeout=20)
    job_id = job_of(channel)
    fake.delete_channel(channel)
    ended("discord", channel, user)
    wait_until(lambda: context.store().get(job_id).state == State.CANCELLED, timeout=10, what="the job cancelled")

    other, someone = new_id(), new_id()  # the bot goes on serving
    served = fake.slash_command("mp3", {"url": unique(media.media_url("opus.webm"))}, user_id=someone,
                                channel_id=other)
    wait_files(fake, token=served)
    wait_original(fake, served, r"✅.*Done", timeout=10)
    ended("discord", other, someone)  # nothing left owed for the next test's bot (the same keys) to resume
    refused = [c for c in fake.calls() if c.status == 404 and (token in c.path or f"/channels/{channel}/" in c.path)]
    assert 1 <= len(refused) <= 2, refused  # the refusal ended it: no edit, upload or retry after it
    assert not fake.attachments(channel_id=channel)
    quiet(bot.log, gone=1)


def test_uploads_into_a_gone_channel_or_after_a_lost_message(discord_bot: tuple[FakeDiscord, BotProcess],
                                                             media: MediaServer) -> None:
    fake, bot = discord_bot
    # The MP3 meets a deleted channel: the request ends there, the job's files go.
    channel, user = new_id(), new_id()
    fake.inject_error(r"^/webhooks/\d+/[^/]+$", 404, UNKNOWN_CHANNEL, method="POST")
    token = fake.slash_command("mp3", {"url": unique(media.media_url("opus.webm"))}, user_id=user, channel_id=channel)
    fake.wait_for(lambda: [c for c in fake.calls("POST", re.escape(token)) if c.status == 404], timeout=60,
                  what="the upload refused")
    ended("discord", channel, user)
    job = context.store().get(job_of(channel))
    assert job.state == State.DELIVERED and not any(Path(f).exists() for f in job.files)
    assert not fake.attachments(token=token)

    # The interaction lost its message (Discord: 404 Unknown Message to a followup): the MP3 goes into the channel.
    channel, user = new_id(), new_id()
    fake.inject_error(r"^/webhooks/\d+/[^/]+$", 404, UNKNOWN_MESSAGE, method="POST")
    fake.slash_command("mp3", {"url": unique(media.media_url("audio.m4a"))}, user_id=user, channel_id=channel)
    [audio] = wait_files(fake, channel_id=channel)
    assert audio.interaction_token is None and re.search(rf"<@{user}>", audio.content)
    ended("discord", channel, user)
    quiet(bot.log, gone=1)


def test_a_user_who_blocks_the_bot_mid_job_is_let_go(test_env: dict[str, str], media: MediaServer,
                                                     tmp_path: Path) -> None:
    with FakeTelegram(flood_limit=3, retry_after=1) as fake:
        env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": fake.api_url,
               "TELEGRAM_FILE_URL": fake.file_url}
        bot = BotProcess("telegram", env, tmp_path / "telegram.log")
        bot.start(telegram_started(fake))
        try:
            blocked = 5000 + new_chat()
            asked = fake.push_message(blocked, blocked, unique(media.url("/slow/16000/opus.webm")))
            wait_status(fake, blocked, asked, r"Downloading", timeout=20)
            job_id = job_of(blocked)
            fake.blocked.add(blocked)
            ended("telegram", blocked, blocked)
            wait_until(lambda: context.store().get(job_id).state == State.CANCELLED, timeout=10,
                       what="the job cancelled")

            chat = 5000 + new_chat()
            fake.push_message(chat, chat, unique(media.media_url("opus.webm")))
            wait_audios(fake, chat)
            ended("telegram", chat, chat)
            refused = [c for c in fake.calls(chat_id=blocked) if c.status == 403]
            assert len(refused) == 1 and not audios(fake, blocked), refused
        finally:
            bot.stop()
    quiet(bot.log, gone=1)
