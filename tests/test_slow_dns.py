"""Slow-resolving names from one user don't stall the bot for others; quotas come before DNS.

The Telegram bot runs as a real process against the fake Bot API, with a stand-in for a slow DNS
server loaded into it (``tests/slowdns/sitecustomize.py``: names ending ``.hang.test`` hang until
the test lets them go). Everything else is real: Redis, the session's worker, yt-dlp, ffmpeg.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import context
from tests.conftest import ROOT, BotProcess, wait_until
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer
from tests.test_telegram import TOKEN, new_chat, started, unique, wait_audios, wait_status

pytestmark = pytest.mark.usefixtures("worker")

HANGING_USER = 666
LINKS = 6  # more than the bot's shared default thread pool has threads (6 on 2 cores)


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("slowdns")
    files = {"log": folder / "lookups.log", "release": folder / "release"}
    files["log"].touch()
    yield files
    files["release"].touch()  # whatever happened, no lookup hangs past the test


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeTelegram, test_env: dict[str, str], dns: dict[str, Path],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    path = os.pathsep.join(p for p in (str(ROOT / "tests" / "slowdns"), os.environ.get("PYTHONPATH")) if p)
    env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
           "TELEGRAM_FILE_URL": fake.file_url, "PYTHONPATH": path, "DNS_TIMEOUT": "2",
           "SLOW_DNS_LOG": str(dns["log"]), "SLOW_DNS_RELEASE": str(dns["release"])}
    process = BotProcess("telegram", env, tmp_path_factory.mktemp("slowdns-bot") / "bot.log")
    process.start(started(fake))
    yield process
    dns["release"].touch()
    process.stop()


def reply_to(fake: FakeTelegram, chat: int, asked: int) -> str | None:
    for message in fake.messages(chat):
        if message.get("reply_to_message", {}).get("message_id") == asked and message.get("text"):
            return message["text"]
    return None


def test_hanging_names_of_one_user_stall_nobody_else(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                                     dns: dict[str, Path]) -> None:
    tag = uuid.uuid4().hex[:8]
    sent = {}
    for n in range(LINKS):
        chat, name = new_chat(), f"n{n}-{tag}.hang.test"
        sent[name] = (chat, fake.push_message(chat, HANGING_USER, f"http://{name}/song.webm"))

    def answered(_: FakeTelegram) -> dict[str, str] | None:
        replies = {name: reply_to(fake, chat, asked) for name, (chat, asked) in sent.items()}
        return replies if sum("already have 2 conversions" in (r or "") for r in replies.values()) == LINKS - 2 \
            else None

    replies = fake.wait_for(answered, timeout=15, what="the links over the user's limit refused")
    # Over the limit: refused without any lookup. Within it: looked up, and only those.
    looked_up = wait_until(lambda: dns["log"].read_text().split() if len(dns["log"].read_text().split()) >= 2
                           else None, timeout=10, what="two lookups")
    refused = [name for name, text in replies.items() if text and "already have 2" in text]
    assert sorted(looked_up) == sorted(set(sent) - set(refused))

    # Meanwhile someone else's link is taken and delivered at once.
    chat = new_chat()
    asked = fake.push_message(chat, 7, unique(media.media_url("audio.m4a")))
    wait_status(fake, chat, asked, r"Queued|Downloading|Converting|Done", timeout=10)
    wait_audios(fake, chat, timeout=60)

    # The hanging ones get a plain answer after DNS_TIMEOUT; their lookups still hold the user's slots.
    for name in looked_up:
        chat, asked = sent[name]
        text = fake.wait_for(lambda f, c=chat, a=asked: reply_to(f, c, a), timeout=10, what=f"an answer for {name}")
        assert "took too long to resolve" in text and name not in text
    active = context.keys().user("telegram", HANGING_USER, "active")
    assert context.redis_client().scard(active) == 2
    dns["release"].touch()  # the lookups end: the slots come free
    wait_until(lambda: context.redis_client().scard(active) == 0, timeout=10, what="the user's slots freed")
    assert sorted(dns["log"].read_text().split()) == sorted(looked_up)  # and nothing was looked up again
