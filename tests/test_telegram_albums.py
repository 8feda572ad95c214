"""Albums through the Telegram bot end to end: a feed's tracks in feed order, one status message, skips, cancel."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from common import context
from tests.conftest import BotProcess, wait_until
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer
from tests.test_telegram import TOKEN, answer_to, audios, keyboard, new_chat, started, unique, wait_audios, wait_status

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeTelegram, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BotProcess]:
    env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url, "TELEGRAM_FILE_URL": fake.file_url,
           "USER_JOBS_PER_HOUR": "4"}  # each test is a user of its own
    process = BotProcess("telegram", env, tmp_path_factory.mktemp("telegram-albums") / "bot.log")
    process.start(started(fake))
    yield process
    process.stop()


def feed(media: MediaServer, count: int = 3, **query: str) -> str:
    return media.url("/feed", count=str(count), n=uuid.uuid4().hex, **query)


def tags(audio: dict) -> tuple[str, str, str]:
    found = ID3(io.BytesIO(audio["data"]))
    return found["TIT2"].text[0], found["TALB"].text[0], found["TRCK"].text[0]


def test_a_feed_arrives_as_an_album_in_feed_order(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                                  test_env: dict[str, str]) -> None:
    chat = new_chat()
    # The first episode comes slowly: the others finish first, and still wait for it.
    asked = fake.push_message(chat, chat, feed(media, first=media.url("/slow/24000/opus.webm", n=uuid.uuid4().hex)))
    status = wait_status(fake, chat, asked, r"💿 .*A feed.*of 3 done", timeout=30)
    assert status["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("cancel:")
    sent = wait_audios(fake, chat, count=3)
    assert [tags(a) for a in sent] == [("Episode 1", "A feed", "1/3"), ("Episode 2", "A feed", "2/3"),
                                       ("Episode 3", "A feed", "3/3")]
    assert [a["title"] for a in sent] == ["Episode 1", "Episode 2", "Episode 3"]
    # The others finished first and waited for the slow first one: all three went as one album message.
    assert sent[0]["media_group_id"] and {a["media_group_id"] for a in sent} == {sent[0]["media_group_id"]}
    wait_status(fake, chat, asked, r"✅ .*A feed.*3 tracks delivered", timeout=15)
    storage = Path(test_env["STORAGE_DIR"])
    album_id = status["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1]
    tracks = context.store().get(album_id).entries
    wait_until(lambda: not any((storage / t).exists() for t in tracks), timeout=10,
               what=lambda: f"files of delivered tracks removed: {[t for t in tracks if (storage / t).exists()]}")


def test_a_range_after_the_link_picks_entries(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, chat, f"{feed(media, 5)} 2-3")
    sent = wait_audios(fake, chat, count=2)
    assert [tags(a) for a in sent] == [("Episode 2", "A feed", "1/2"), ("Episode 3", "A feed", "2/2")]
    wait_status(fake, chat, asked, r"✅ .*2 tracks delivered", timeout=15)
    assert len(audios(fake, chat)) == 2


def test_an_unavailable_entry_is_skipped_and_counted(fake: FakeTelegram, bot: BotProcess,
                                                     media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, chat, feed(media, first=media.url("/status/404/opus.webm", n=uuid.uuid4().hex)))
    sent = wait_audios(fake, chat, count=2)
    assert [tags(a)[0] for a in sent] == ["Episode 2", "Episode 3"]
    done = wait_status(fake, chat, asked, r"✅ .*2 tracks delivered", timeout=15)
    assert "1 unavailable, skipped" in done["text"]


def test_cancel_stops_the_whole_album(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                      test_env: dict[str, str]) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, chat, feed(media, via="/slow/4000/opus.webm"))
    status = wait_status(fake, chat, asked, r"💿 .*0 of 3 done", timeout=30)
    data = status["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    fake.push_callback(chat, chat, status["message_id"], data)
    wait_status(fake, chat, asked, r"🚫.*Cancelled", timeout=15)
    album = context.store().get(data.split(":")[1])
    assert album.state == "cancelled"
    assert all(context.store().get(t).state == "cancelled" for t in album.entries)
    assert not audios(fake, chat)
    for track in album.entries:
        assert not (Path(test_env["TEMP_DIR"]) / track).exists()


def test_a_users_quota_counts_tracks(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, chat, feed(media))
    wait_status(fake, chat, asked, r"✅ .*3 tracks delivered", timeout=60)
    fake.push_message(chat, chat, unique(media.media_url("audio.m4a")))  # the fourth of four this hour
    wait_audios(fake, chat, count=4)
    refused = fake.push_message(chat, chat, unique(media.media_url("opus.webm")))
    assert "reached 4 conversions this hour" in answer_to(fake, chat, refused, "reached")


def test_a_large_album_waits_for_a_yes_that_shows_its_cost(fake: FakeTelegram, bot: BotProcess,
                                                           media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, chat, feed(media, 11))  # ALBUM_CONFIRM is 10
    status = wait_status(fake, chat, asked, r"11 tracks: they count as 11 conversions\. Start\?", timeout=30)
    buttons = [b["callback_data"] for b in status["reply_markup"]["inline_keyboard"][0]]
    assert [b.split(":")[0] for b in buttons] == ["start", "cancel"]
    album = context.store().get(buttons[0].split(":")[1])
    assert all(context.store().get(t).state == "queued" for t in album.entries)  # nothing runs before the yes
    fake.push_callback(chat, chat + 1, status["message_id"], buttons[0])  # someone else's press does nothing
    fake.wait_for(lambda f: [c for c in f.calls("answerCallbackQuery") if "Only the person" in
                             str(c.params.get("text"))], timeout=10)
    fake.push_callback(chat, chat, status["message_id"], buttons[0])
    sent = wait_audios(fake, chat, count=11, timeout=120)
    assert [tags(a)[2] for a in sent] == [f"{n}/11" for n in range(1, 12)]
    groups = [a.get("media_group_id") for a in sent]
    assert all(groups.count(g) <= 10 for g in groups if g)  # at most 10 audios in one album message
    wait_status(fake, chat, asked, r"✅ .*11 tracks delivered", timeout=15)


def test_a_large_album_starts_at_once_for_a_user_who_said_not_to_ask(fake: FakeTelegram, bot: BotProcess,
                                                                     media: MediaServer) -> None:
    chat = new_chat()
    fake.push_message(chat, chat, "/settings")
    shown = fake.wait_for(lambda f: next((m for m in f.messages(chat) if m.get("reply_markup")), None), timeout=10,
                          what="the settings")
    ask = "Ask before albums of over 10 tracks"
    fake.push_callback(chat, chat, shown["message_id"], keyboard(shown)[f"{ask}: on"])
    fake.wait_for(lambda f: f"{ask}: off" in keyboard(f.message(chat, shown["message_id"])), timeout=10,
                  what="the choice shown")
    asked = fake.push_message(chat, chat, feed(media, 11))
    status = wait_status(fake, chat, asked, r"💿 .*\n\d+ of 11 done", timeout=30)
    buttons = [b["callback_data"] for row in status["reply_markup"]["inline_keyboard"] for b in row]
    assert [b.split(":")[0] for b in buttons] == ["cancel"]  # no Start to press
    album = context.store().get(buttons[0].split(":")[1])
    assert not album.confirm
    wait_until(lambda: any(context.store().get(t).state != "queued" for t in album.entries), timeout=30,
               what="its tracks running without a yes")
    fake.push_callback(chat, chat, status["message_id"], buttons[0])  # enough: no need to convert all eleven
    wait_status(fake, chat, asked, r"🚫.*Cancelled", timeout=15)


def test_two_chats_asking_for_one_album_both_get_it(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                                     test_env: dict[str, str]) -> None:
    first, second = new_chat(), new_chat()
    url = feed(media, first=media.url("/slow/24000/opus.webm", n=uuid.uuid4().hex))
    asked = fake.push_message(first, first, url)
    status = wait_status(fake, first, asked, r"💿 .*of 3 done", timeout=30)  # expanded: the second joins its tracks
    fake.push_message(second, second, url)
    for chat in (first, second):
        assert [tags(a)[2] for a in wait_audios(fake, chat, count=3)] == ["1/3", "2/3", "3/3"]
    album = context.store().get(status["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[1])
    storage = Path(test_env["STORAGE_DIR"])
    wait_until(lambda: not any((storage / t).exists() for t in album.entries), timeout=10,
               what="the shared tracks' files removed once both chats have them")
