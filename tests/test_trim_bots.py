"""Ranges in the chats: the real Telegram and Discord bot processes against the fake servers, with the
real worker. A link followed by a range (Telegram), /mp3 <link> <range>, Discord's start and end
options; bad ranges answered in words with nothing started; the cache keeps ranges apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from tests.conftest import BotProcess
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer, make_long, probe_duration
from tests.test_discord import EPHEMERAL, GUILD, plain, wait_files
from tests.test_discord import TOKEN as DISCORD_TOKEN
from tests.test_discord import started as discord_started
from tests.test_telegram import TOKEN as TELEGRAM_TOKEN
from tests.test_telegram import answer_to, audios, job_count, new_chat, wait_audios, wait_status
from tests.test_telegram import started as telegram_started

pytestmark = pytest.mark.usefixtures("worker")

TOLERANCE = 0.1


@pytest.fixture(scope="module")
def tone(media_dir: Path) -> Path:
    return make_long(media_dir, minutes=3)


@pytest.fixture(scope="module")
def telegram(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=3, retry_after=1) as fake:
        env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": fake.api_url,
               "TELEGRAM_FILE_URL": fake.file_url}
        process = BotProcess("telegram", env, tmp_path_factory.mktemp("telegram") / "bot.log")
        process.start(telegram_started(fake))
        yield fake
        process.stop()


@pytest.fixture(scope="module")
def discord(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, channel_id=901, token=DISCORD_TOKEN) as fake:
        env = {**test_env, "DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_GUILD_ID": str(GUILD)}
        process = BotProcess("discord", env, tmp_path_factory.mktemp("discord") / "bot.log")
        process.start(discord_started(fake))
        yield fake
        process.stop()


def page(media: MediaServer) -> str:
    """A page of the three-minute tone; its link ends in a digit, as a range after it may begin with one."""
    return media.register_page(f"range-{uuid.uuid4().hex[:8]}0", file="long-3m.webm", title="Long Tone",
                               duration=180)


def length_of(data: bytes, folder: Path) -> float:
    """The MP3's length as ffprobe measures it."""
    return probe_duration(saved(data, folder))


def saved(data: bytes, folder: Path) -> Path:
    path = folder / f"{uuid.uuid4().hex}.mp3"
    path.write_bytes(data)
    return path


def storage_files(env: dict[str, str]) -> set[Path]:
    storage = Path(env["STORAGE_DIR"])
    return {p for p in storage.rglob("*") if p.is_file() and "discord-cache" not in p.parts} if storage.exists() \
        else set()


def test_telegram_link_then_range_in_a_private_chat(telegram: FakeTelegram, media: MediaServer, tone: Path,
                                                    tmp_path: Path) -> None:
    chat, url = new_chat(), page(media)
    telegram.push_message(chat, 7, f"{url} 1:30 - 2:35")
    [audio] = wait_audios(telegram, chat)
    assert audio["title"] == "Long Tone (1:30–2:35)" and audio["duration"] == 65
    assert audio["filename"] == "Long Tone (1.30–2.35).mp3"
    mp3 = saved(audio["data"], tmp_path)
    assert abs(probe_duration(mp3) - 65) <= TOLERANCE
    assert ID3(mp3)["TIT2"].text == ["Long Tone (1:30–2:35)"]
    # the same range, written otherwise, is the cached file; the whole video is not
    again = new_chat()
    telegram.push_message(again, 8, f"{url} 1:30–2:35")  # colon-free "90-155" may pick a playlist's entries
    [repeat] = wait_audios(telegram, again, timeout=10)
    assert repeat["uploaded"] is False and repeat["file_id"] == audio["file_id"]
    whole = new_chat()
    telegram.push_message(whole, 9, url)
    [full] = wait_audios(telegram, whole)
    assert full["uploaded"] is True and full["title"] == "Long Tone" and full["duration"] == 180


def test_telegram_mp3_command_with_a_range_in_a_group(telegram: FakeTelegram, media: MediaServer, tone: Path,
                                                      tmp_path: Path) -> None:
    chat, url = -new_chat(), page(media)
    telegram.push_message(chat, 7, f"/mp3 {url} -0:20", chat_type="group")
    [audio] = wait_audios(telegram, chat)
    assert audio["title"] == "Long Tone (0:00–0:20)"
    assert abs(length_of(audio["data"], tmp_path) - 20) <= TOLERANCE
    # a range as the /mp3 that replies to a message with the link
    shared = telegram.push_message(chat, 8, f"look {url}", chat_type="group")
    telegram.push_message(chat, 9, "/mp3 2:50-", chat_type="group", reply_to_message_id=shared,
                          reply_to_text=f"look {url}")
    second = wait_audios(telegram, chat, count=2)[1]
    assert second["title"] == "Long Tone (2:50–3:00)"
    assert abs(length_of(second["data"], tmp_path) - 10) <= TOLERANCE


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("{url} 1:70-2:00", "In “1:70”, 70 seconds is more than 59. Times look like 1:30, 1:02:03 or 90 (seconds)."),
        ("{url} 2:00-1:30", "That range ends (1:30) before it starts (2:00)."),
        ("/mp3 {url} soon", "I couldn't read “soon” as a range. Write a range like 1:30-4:05, 90-245, -4:05 or "
                            "1:30-."),
        ("/mp3 {url} 1:30-4:05-6:00", "I couldn't read “1:30-4:05-6:00” as a range. Write a range like 1:30-4:05, "
                                      "90-245, -4:05 or 1:30-."),
    ],
)
def test_telegram_bad_ranges_are_answered_and_start_nothing(
    telegram: FakeTelegram, media: MediaServer, test_env: dict[str, str], text: str, answer: str
) -> None:
    chat, url = new_chat(), page(media)
    jobs, files = job_count(), storage_files(test_env)
    asked = telegram.push_message(chat, 7, text.format(url=url))
    assert answer_to(telegram, chat, asked) == answer
    assert job_count() == jobs and storage_files(test_env) <= files
    assert not audios(telegram, chat)


def test_telegram_start_past_the_end_fails_in_words(telegram: FakeTelegram, media: MediaServer, tone: Path,
                                                    test_env: dict[str, str]) -> None:
    chat, files = new_chat(), storage_files(test_env)
    asked = telegram.push_message(chat, 7, f"{page(media)} 9:00-")
    status = wait_status(telegram, chat, asked, "❌")
    assert status["text"].endswith("The range you asked for isn't in this video. It starts at 9:00; the video is "
                                   "3:00 long.")
    assert not status.get("reply_markup")  # no Retry: the same range would fail again
    assert not audios(telegram, chat) and storage_files(test_env) <= files


def test_discord_start_and_end_options(discord: FakeDiscord, media: MediaServer, tone: Path,
                                       tmp_path: Path) -> None:
    url = page(media)
    token = discord.slash_command("mp3", {"url": url, "start": "1:30", "end": "2:35"}, user_id=7001,
                                  channel_id=7002)
    [audio] = wait_files(discord, token=token)
    assert audio.filename == "Long Tone (1.30–2.35).mp3"
    assert abs(length_of(audio.data, tmp_path) - 65) <= TOLERANCE
    assert "Long Tone (1:30–2:35)" in plain(audio.content)
    only_end = discord.slash_command("mp3", {"url": url, "end": "20"}, user_id=7001, channel_id=7002)
    [start_part] = wait_files(discord, token=only_end)
    assert abs(length_of(start_part.data, tmp_path) - 20) <= TOLERANCE
    assert "Long Tone (0:00–0:20)" in plain(start_part.content)


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({"start": "1:70"}, "In “1:70”, 70 seconds is more than 59."),
        ({"start": "2:00", "end": "1:00"}, "That range ends (1:00) before it starts (2:00)."),
        ({"end": "later"}, "“later” isn't a time. Times look like 1:30, 1:02:03 or 90 (seconds)."),
    ],
)
def test_discord_bad_options_are_answered_privately(discord: FakeDiscord, media: MediaServer,
                                                    options: dict[str, str], answer: str) -> None:
    jobs = job_count()
    token = discord.slash_command("mp3", {"url": page(media), **options}, user_id=7003, channel_id=7004)
    reply = discord.wait_for(lambda: discord.original(token), what="an answer")
    assert reply["content"].startswith(answer) and reply["flags"] & EPHEMERAL
    assert job_count() == jobs
