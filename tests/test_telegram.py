"""The Telegram bot end to end: the real python-telegram-bot process against a fake Bot API,
with the real Redis, worker, yt-dlp and ffmpeg."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from common import context
from common.textlimits import FILENAME_BYTES, TELEGRAM_CAPTION, TELEGRAM_MESSAGE
from tests.conftest import BotProcess, wait_until
from tests.fake_telegram import FakeTelegram, parse_html, u16
from tests.media import TITLE_SCRIPTS, MediaServer, long_title, make_tone

ADMIN = 42
TOKEN = "123456789:TEST-token-abcdefghijklmnopqrstuvwxyz"

pytestmark = pytest.mark.usefixtures("worker")


def started(fake: FakeTelegram) -> Callable[[], bool]:
    """True once a newly started bot has begun to poll (it deletes any webhook first)."""
    starts = len(fake.calls("deleteWebhook"))
    return lambda: len(fake.calls("deleteWebhook")) > starts


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=3, retry_after=1, group_limit=20, global_limit=30) as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeTelegram, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BotProcess]:
    env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
           "TELEGRAM_FILE_URL": fake.file_url, "TELEGRAM_ADMIN_IDS": str(ADMIN)}
    process = BotProcess("telegram", env, tmp_path_factory.mktemp("telegram") / "bot.log")
    process.start(started(fake))
    yield process
    process.stop()
    assert TOKEN not in process.log.read_text(errors="replace")  # the token never reaches the logs


def new_chat() -> int:
    return 10_000 + uuid.uuid4().int % 1_000_000


def status_of(fake: FakeTelegram, chat: int, asked: int) -> dict | None:
    """The bot's status message: its text reply to the user's message."""
    for message in fake.messages(chat, include_deleted=True):
        if message.get("text") and message.get("reply_to_message", {}).get("message_id") == asked:
            return message
    return None


def answer_to(fake: FakeTelegram, chat: int, asked: int, containing: str = "", timeout: float = 15) -> str:
    """The text of the bot's first message after the user's (that contains `containing`)."""
    def first(f: FakeTelegram) -> str | None:
        later = [m["text"] for m in f.messages(chat) if m["message_id"] > asked and containing in m.get("text", "")]
        return later[0] if later else None

    return fake.wait_for(first, timeout=timeout, what=f"an answer to message {asked}")


def wait_status(fake: FakeTelegram, chat: int, asked: int, pattern: str, timeout: float = 60) -> dict:
    def current(f: FakeTelegram) -> dict | None:
        replies = [m for m in f.messages(chat, include_deleted=True)
                   if m.get("text") and m.get("reply_to_message", {}).get("message_id") == asked]
        return next((m for m in replies if re.search(pattern, m["text"], re.DOTALL)), None)

    return fake.wait_for(current, timeout=timeout, what=f"status matching {pattern!r}")


def audios(fake: FakeTelegram, chat: int) -> list[dict]:
    return [m for m in fake.sent_media("sendAudio") if int(m["chat_id"]) == chat]


def wait_audios(fake: FakeTelegram, chat: int, count: int = 1, timeout: float = 60) -> list[dict]:
    return fake.wait_for(lambda f: len(a := audios(f, chat)) >= count and a, timeout=timeout,
                         what=f"{count} audio(s) in chat {chat}")


def unique(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}n={uuid.uuid4().hex[:8]}"


def job_count() -> int:
    return sum(1 for _ in context.redis_client().scan_iter(f"{context.keys().prefix}job:*:origins"))


def test_link_gives_live_status_then_tagged_mp3(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                               test_env: dict[str, str]) -> None:
    chat = new_chat()
    url = unique(media.url("/slow/16000/opus.webm"))
    storage = Path(test_env["STORAGE_DIR"])
    before = set(storage.iterdir()) if storage.exists() else set()
    asked = fake.push_message(chat, 7, f"please {url} thanks")
    wait_status(fake, chat, asked, r"Queued|Downloading", timeout=10)
    [audio] = wait_audios(fake, chat)
    edits = fake.calls("editMessageText", chat)
    percents = [int(p) for c in edits for p in re.findall(r"(\d+)%", c.params.get("text", ""))]
    assert percents == sorted(percents) and any(10 < p < 50 for p in percents), percents
    mp3 = MP3(io.BytesIO(audio["data"]))
    assert abs(mp3.info.length - 8.0) < 0.5
    assert audio["title"] == "Test Tone" and audio["performer"] == "Test Artist"
    assert audio["filename"] == "Test Tone.mp3" and audio["thumbnail"] is None
    assert url in audio["caption"]
    wait_status(fake, chat, asked, r"✅.*Done", timeout=10)
    assert set(storage.iterdir()) <= before  # delivered: the job's files are gone


def test_hostile_title_shows_right_and_cover_goes_along(fake: FakeTelegram, bot: BotProcess,
                                                        media: MediaServer) -> None:
    chat = new_chat()
    title = "<b>Tom & Jerry</b> *bold* _it_ `code` 🎵 שלום עולם"
    url = media.register_page(f"hostile-{uuid.uuid4().hex[:6]}", title=title, uploader="A & B <c>")
    asked = fake.push_message(chat, 7, url)
    [audio] = wait_audios(fake, chat)
    assert audio["title"] == title and audio["performer"] == "A & B <c>"
    assert audio["thumbnail"] and len(audio["thumbnail"]) <= 200_000
    assert ID3(io.BytesIO(audio["data"]))["TIT2"].text == [title]
    done = wait_status(fake, chat, asked, r"Done", timeout=10)
    assert title in done["text"]  # the user sees the title as it is, markup and all


def test_cached_repeat_is_sent_by_file_id_at_once(fake: FakeTelegram, bot: BotProcess,
                                                  media: MediaServer) -> None:
    url = unique(media.media_url("audio.m4a"))
    first_chat, second_chat = new_chat(), new_chat()
    fake.push_message(first_chat, 7, url)
    [original] = wait_audios(fake, first_chat)
    jobs_before = sum(1 for _ in context.redis_client().scan_iter(f"{context.keys().prefix}job:*:origins"))
    started = time.monotonic()
    asked = fake.push_message(second_chat, 8, url)
    [repeat] = wait_audios(fake, second_chat, timeout=10)
    elapsed = time.monotonic() - started
    assert repeat["uploaded"] is False and repeat["file_id"] == original["file_id"]
    assert elapsed < 1.5, elapsed
    assert status_of(fake, second_chat, asked) is None  # no job, so no status to follow
    jobs_after = sum(1 for _ in context.redis_client().scan_iter(f"{context.keys().prefix}job:*:origins"))
    assert jobs_after == jobs_before


def test_cancel_works_for_the_requester_only(fake: FakeTelegram, bot: BotProcess,
                                             media: MediaServer, test_env: dict[str, str]) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, unique(media.url("/slow/4000/opus.webm")))
    status = wait_status(fake, chat, asked, r"Downloading", timeout=20)
    data = status["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    job_id = data.split(":")[1]
    fake.push_callback(chat, 99, status["message_id"], data)
    answer = fake.wait_for(lambda f: [c for c in f.calls("answerCallbackQuery") if c.params.get("text")
                                      and "Only the person" in c.params["text"]], timeout=10)
    assert answer
    assert context.store().get(job_id).state in ("downloading", "queued")
    fake.push_callback(chat, 7, status["message_id"], data)
    wait_status(fake, chat, asked, r"🚫.*Cancelled", timeout=10)
    assert context.store().get(job_id).state == "cancelled"
    assert not audios(fake, chat)
    assert not (Path(test_env["TEMP_DIR"]) / job_id).exists()


def answers(fake: FakeTelegram, query_id: str) -> str:
    """The text the bot answered a button press with."""
    call = fake.wait_for(lambda f: next((c for c in f.calls("answerCallbackQuery")
                                         if c.params.get("callback_query_id") == query_id), None),
                         timeout=10, what=f"the answer to {query_id}")
    return str(call.params.get("text", ""))


def test_forged_cancel_buttons_do_nothing(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    group = -new_chat()
    owner, other = new_chat(), new_chat()  # users of their own: the hourly quota is per user
    asked = {user: fake.push_message(group, user, f"/mp3 {unique(media.url('/slow/4000/opus.webm'))}",
                                     chat_type="group") for user in (owner, other)}
    status = {user: wait_status(fake, group, asked[user], r"Downloading", timeout=20) for user in (owner, other)}
    data = {user: status[user]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] for user in (owner, other)}
    job = {user: data[user].split(":")[1] for user in (owner, other)}
    # the other member presses the owner's Cancel, copied as it is
    copied = fake.push_callback(group, other, status[owner]["message_id"], data[owner])
    assert "Only the person" in answers(fake, copied)
    # ...and Cancel on their own status, with data naming the owner's job
    forged = fake.push_callback(group, other, status[other]["message_id"], f"cancel:{job[owner]}")
    assert "Only the person" in answers(fake, forged)
    assert {context.store().get(job[u]).state for u in (owner, other)} <= {"queued", "downloading"}
    # an admin may cancel anyone's job
    fake.push_callback(group, ADMIN, status[owner]["message_id"], data[owner])
    wait_status(fake, group, asked[owner], r"🚫.*Cancelled", timeout=10)
    assert context.store().get(job[owner]).state == "cancelled"
    assert context.store().get(job[other]).state in ("queued", "downloading")
    fake.push_callback(group, other, status[other]["message_id"], data[other])
    wait_status(fake, group, asked[other], r"🚫.*Cancelled", timeout=10)


def test_forged_retry_of_someone_elses_job_gets_nothing(fake: FakeTelegram, bot: BotProcess,
                                                        media: MediaServer) -> None:
    owner_chat, other_chat = new_chat(), new_chat()  # private chats: the chat id is the user id
    key = uuid.uuid4().hex
    url = media.url(f"/flaky/4/{key}/opus.webm")  # the owner's private link: fails 4 times, then works
    asked = fake.push_message(owner_chat, owner_chat, url)
    failed = wait_status(fake, owner_chat, asked, "❌", timeout=60)
    data = failed["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    hits, jobs = media.hits(key), job_count()
    # a stranger presses a button of their own chat whose data names the owner's job
    hint = fake.push_message(other_chat, other_chat, "hello")
    answer_to(fake, other_chat, hint)
    reply = fake.messages(other_chat)[-1]["message_id"]
    forged = fake.push_callback(other_chat, other_chat, reply, data)
    assert "Only the person" in answers(fake, forged)
    gone = fake.push_callback(other_chat, other_chat, reply, "retry:000000000000")
    assert "send the link again" in answers(fake, gone)
    assert job_count() == jobs and media.hits(key) == hits
    # the owner's own Retry works: the refusal above was no accident of a broken retry
    fake.push_callback(owner_chat, owner_chat, failed["message_id"], data)
    wait_audios(fake, owner_chat, timeout=30)
    assert media.hits(key) > hits
    assert not audios(fake, other_chat) and url not in json.dumps(fake.messages(other_chat))
    assert job_count() == jobs + 1


def refused(fake: FakeTelegram, chat: int) -> list[str]:
    """Calls into this chat that Telegram refused as malformed or too long."""
    return [f"{c.method}: {c.response}" for c in fake.calls(chat_id=chat) if c.status == 400
            and "not modified" not in str(c.response)]


def check_delivered(fake: FakeTelegram, chat: int, asked: int, title: str, url: str, count: int) -> list[dict]:
    """What a user of any script must get: every part accepted, named apart, within every limit."""
    done = wait_status(fake, chat, asked, r"✅.*Done", timeout=90)
    parts = audios(fake, chat)
    assert len(parts) == count if count else len(parts) > 1
    assert u16(parse_html(done["raw_text"])[0]) <= TELEGRAM_MESSAGE and title[:40] in done["text"]
    number = len(parts)
    for n, part in enumerate(parts, 1):
        suffix = f" ({n} of {number})" if number > 1 else ""
        assert part["title"].startswith(title[:500]) and part["title"].endswith(suffix)
        assert ID3(io.BytesIO(part["data"]))["TIT2"].text == [part["title"]]
        assert len(part["filename"].encode()) <= FILENAME_BYTES and part["filename"].endswith(f"{suffix}.mp3")
        shown = parse_html(part["caption"])[0]
        assert u16(shown) <= TELEGRAM_CAPTION and shown.startswith(title[:40]) and shown.endswith(f"{suffix}\n{url}")
    assert len({p["filename"] for p in parts}) == len({p["title"] for p in parts}) == number
    assert not refused(fake, chat)
    return parts


@pytest.mark.parametrize("script", list(TITLE_SCRIPTS))
def test_a_page_title_of_1500_characters_is_delivered(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                                      script: str) -> None:
    chat, title = new_chat(), long_title(script)
    url = media.register_page(f"long-{script}-{uuid.uuid4().hex[:6]}", title=title)
    asked = fake.push_message(chat, chat, url)
    check_delivered(fake, chat, asked, title, url, count=1)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/status/404/opus.webm", "Nothing was found at this link"),
        ("/page/nomedia", "isn't supported"),
        ("/media/noaudio.mp4", "no audio track"),
        ("/media/garbage.webm", "couldn't be read"),
    ],
)
def test_failures_end_in_a_clear_reason(fake: FakeTelegram, bot: BotProcess, media: MediaServer,
                                        path: str, expected: str) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, unique(media.url(path)))
    status = wait_status(fake, chat, asked, "❌", timeout=30)
    assert expected in status["text"] and "Traceback" not in status["text"]
    assert "reply_markup" not in status  # nothing to retry, nothing to cancel


def test_too_long_video_is_refused(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()
    url = media.register_page(f"long-{uuid.uuid4().hex[:6]}", duration=7200)
    asked = fake.push_message(chat, 7, url)
    status = wait_status(fake, chat, asked, "❌", timeout=30)
    assert "too long" in status["text"] and "15:00" in status["text"]


def test_transient_failure_offers_retry(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()
    key = uuid.uuid4().hex
    asked = fake.push_message(chat, 7, media.url(f"/flaky/4/{key}/opus.webm"))
    status = wait_status(fake, chat, asked, "❌", timeout=60)
    assert "server error" in status["text"] and "4 tries" in status["text"]
    button = status["reply_markup"]["inline_keyboard"][0][0]
    assert button["text"].endswith("Retry")
    fake.push_callback(chat, 7, status["message_id"], button["callback_data"])  # the 5th request succeeds
    wait_audios(fake, chat, timeout=30)


def test_private_address_is_refused_plainly(fake: FakeTelegram, bot: BotProcess) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, "http://127.0.0.1:6379/")
    status = wait_status(fake, chat, asked, "⛔", timeout=10)
    assert "private or internal" in status["text"]


def test_text_without_a_link_gets_a_hint(fake: FakeTelegram, bot: BotProcess) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, "hello there")
    assert "Send me a link" in answer_to(fake, chat, asked)


def test_help_tells_the_limits(fake: FakeTelegram, bot: BotProcess) -> None:
    chat = new_chat()
    answer = answer_to(fake, chat, fake.push_message(chat, 7, "/help"))
    assert "15:00" in answer and "per hour" in answer and "/bitrate" in answer


def test_several_links_in_one_message(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()
    slow = [unique(media.url(f"/slow/8000/{name}")) for name in ("opus.webm", "audio.m4a")]
    links = slow + [unique(media.media_url(name)) for name in ("video.mp4", "nodur.webm")]
    asked = fake.push_message(chat, 70, "\n".join(links))
    assert "first 3 links" in answer_to(fake, chat, asked)
    found = wait_audios(fake, chat, count=2, timeout=60)
    assert sorted(a["caption"].split("\n")[1] for a in found) == sorted(links[:2])
    # two conversions at once per user: the third link is refused politely, the fourth never taken
    refusal = wait_status(fake, chat, asked, "already have 2 conversions running", timeout=10)
    assert "⏸" in refusal["text"]
    assert not [m for m in fake.messages(chat) if links[3] in (m.get("text") or m.get("caption") or "")]


def test_group_needs_the_command_and_takes_replies(fake: FakeTelegram, bot: BotProcess,
                                                  media: MediaServer) -> None:
    chat = -new_chat()
    fake.push_message(chat, 7, unique(media.media_url("opus.webm")), chat_type="group")
    url = unique(media.media_url("audio.m4a"))
    fake.push_message(chat, 7, f"/mp3 {url}", chat_type="group")
    [audio] = wait_audios(fake, chat)
    assert url in audio["caption"]
    other = unique(media.media_url("video.mp4"))
    shared = fake.push_message(chat, 8, f"look at {other}", chat_type="group")
    fake.push_message(chat, 9, "/mp3", chat_type="group", reply_to_message_id=shared, reply_to_text=f"look {other}")
    found = wait_audios(fake, chat, count=2)
    assert len(found) == 2 and other in found[1]["caption"]


def test_bitrate_is_remembered(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat, user = new_chat(), 1234
    fake.push_message(chat, user, "/bitrate 320")
    fake.wait_for(lambda f: [m for m in f.messages(chat) if "320 kbit/s" in (m.get("text") or "")])
    fake.push_message(chat, user, unique(media.media_url("opus.webm")))
    [audio] = wait_audios(fake, chat)
    assert MP3(io.BytesIO(audio["data"])).info.bitrate == 320_000


def test_deleted_status_does_not_stop_the_mp3(fake: FakeTelegram, bot: BotProcess,
                                              media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, unique(media.url("/slow/20000/opus.webm")))
    status = wait_status(fake, chat, asked, r"Queued|Downloading", timeout=10)
    fake.delete_message(chat, status["message_id"])
    wait_audios(fake, chat)


@pytest.mark.parametrize("command", ["/stats", "/job abc", "/dead", "/retry abc", "/cancel abc", "/purge", "/health"])
def test_admin_commands_refused_for_others(fake: FakeTelegram, bot: BotProcess, command: str) -> None:
    chat = new_chat()
    assert "admins only" in answer_to(fake, chat, fake.push_message(chat, 7, command))


def test_admin_commands_for_admins(fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    chat = new_chat()

    def ask(text: str, expected: str) -> str:
        return answer_to(fake, chat, fake.push_message(chat, ADMIN, text), containing=expected)

    assert "download" in ask("/stats", "Workers")
    asked = fake.push_message(chat, 7, unique(media.url("/status/404/opus.webm")))
    failed = wait_status(fake, chat, asked, "❌", timeout=30)
    job_id = json.loads(context.redis_client().lindex(context.keys().dead, 0))["job_id"]
    assert "404" in ask(f"/job {job_id}", f"Job {job_id}: failed")
    assert "not_found" in ask("/dead 5", job_id)
    new_job = ask(f"/retry {job_id}", "Retrying as job").split()[-1].rstrip(".")
    assert "already ended" in ask(f"/cancel {job_id}", "ended")
    # the re-run is answered to the person who asked, with a status of its own
    wait_status(fake, chat, asked, "❌.*Nothing was found", timeout=30)
    assert context.store().get(new_job).state == "failed" and failed


def test_health_shows_the_doctors_report_to_admins(fake: FakeTelegram, bot: BotProcess) -> None:
    chat = new_chat()
    report = answer_to(fake, chat, fake.push_message(chat, ADMIN, "/health"), containing="JS runtime", timeout=60)
    lines = report.removeprefix("<pre>").removesuffix("</pre>").splitlines()
    assert lines[0].startswith("yt-dlp      ") and "days old" in lines[0]
    assert lines[2].startswith("JS runtime  deno ")  # found by the doctor, in a process of its own
    assert lines[1].startswith("EJS ") and "(matches yt-dlp's" in lines[1]
    assert any(re.match(r"workers     download [1-9]", line) for line in lines)
    assert any(line.startswith("routes      ") for line in lines)  # each download route, or "no tries yet"
    assert lines[-1] == "No problems found." or lines[-2] == "1 problem:"  # (the one an old yt-dlp gets)


def test_a_flood_of_edits_stays_within_the_limit(fake: FakeTelegram, bot: BotProcess,
                                                 media: MediaServer) -> None:
    chat = new_chat()
    fake.clear()
    for user in (501, 502, 503):
        fake.push_message(chat, user, unique(media.url("/slow/30000/opus.webm")))
    wait_audios(fake, chat, count=3, timeout=60)
    assert fake.early_retries == 0
    calls = [c for c in fake.calls(chat_id=chat) if c.method in ("sendMessage", "editMessageText", "sendAudio")]
    times = [c.time for c in calls if c.status == 200]
    # one call a second, but the MP3 itself may follow a status edit at once
    assert all(times[i + 2] - times[i] >= 0.9 for i in range(len(times) - 2)), times
    assert fake.flood_429s == 0


@pytest.mark.slow
def test_bot_restarted_mid_job_still_delivers(fake: FakeTelegram, bot: BotProcess,
                                              media: MediaServer) -> None:
    chat = new_chat()
    asked = fake.push_message(chat, 7, unique(media.url("/slow/12000/opus.webm")))
    wait_status(fake, chat, asked, r"Downloading", timeout=10)
    bot.kill()
    bot.start(started(fake))
    [audio] = wait_audios(fake, chat, timeout=60)
    assert abs(MP3(io.BytesIO(audio["data"])).info.length - 8.0) < 0.5
    wait_status(fake, chat, asked, r"Done", timeout=10)


def test_small_upload_limit_sends_parts_in_order_and_can_remove_the_status(
        test_env: dict[str, str], media: MediaServer, tmp_path: Path) -> None:
    with FakeTelegram(flood_limit=3) as other:
        env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": other.api_url,
               "TELEGRAM_FILE_URL": other.file_url, "TELEGRAM_UPLOAD_LIMIT": "50000", "TELEGRAM_DELETE_STATUS": "true"}
        process = BotProcess("telegram", env, tmp_path / "bot.log")
        process.start(started(other))
        try:
            chat = new_chat()
            asked = other.push_message(chat, 7, unique(media.media_url("opus.webm")))
            status = wait_status(other, chat, asked, r"Queued|Downloading|Converting|Uploading", timeout=15)
            other.wait_for(lambda f: f.message(chat, status["message_id"]) is None, timeout=60,
                           what="the status removed after delivery")
            parts = audios(other, chat)
            assert len(parts) >= 4
            total = 0.0
            for number, part in enumerate(parts, 1):
                assert len(part["data"]) <= 50_000
                assert part["title"] == f"Test Tone ({number} of {len(parts)})"
                total += MP3(io.BytesIO(part["data"])).info.length
            assert abs(total - 8.0) < 0.5
        finally:
            process.stop()


def test_a_refused_upload_ends_in_words_and_leaves_nothing(test_env: dict[str, str], media: MediaServer,
                                                           tmp_path: Path) -> None:
    with FakeTelegram(flood_limit=3, upload_limit=20_000) as other:  # the server takes no MP3 of this size
        env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": other.api_url,
               "TELEGRAM_FILE_URL": other.file_url}
        process = BotProcess("telegram", env, tmp_path / "bot.log")
        process.start(started(other))
        try:
            chat = new_chat()
            storage = Path(test_env["STORAGE_DIR"])
            before = set(storage.iterdir()) if storage.exists() else set()
            asked = other.push_message(chat, 7, unique(media.media_url("opus.webm")))
            status = wait_status(other, chat, asked, "❌", timeout=60)
            assert "Sending the MP3 failed" in status["text"] and "Traceback" not in status["text"]
            assert not audios(other, chat)
            assert set(storage.iterdir()) <= before  # the files went all the same
            def owed() -> list[bytes]:  # the bookkeeping follows the last status edit
                keys = context.redis_client().hkeys(context.keys().pending("telegram"))
                return [key for key in keys if f":{chat}:" in key.decode()]

            wait_until(lambda: not owed(), timeout=10, what="nothing owed to this chat")
        finally:
            process.stop()


def test_parts_of_a_long_title_keep_names_of_their_own(test_env: dict[str, str], media: MediaServer,
                                                       media_dir: Path, tmp_path: Path) -> None:
    title = long_title("cyrillic")  # 1,500 characters, 2 bytes each: a file name is cut long before
    name = f"long-{uuid.uuid4().hex[:6]}.webm"
    make_tone(media_dir / name, 8, title)
    with FakeTelegram(flood_limit=3) as other:
        env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": other.api_url,
               "TELEGRAM_FILE_URL": other.file_url, "TELEGRAM_UPLOAD_LIMIT": "50000"}
        process = BotProcess("telegram", env, tmp_path / "bot.log")
        process.start(started(other))
        try:
            chat, url = new_chat(), media.media_url(name)
            asked = other.push_message(chat, chat, url)
            parts = check_delivered(other, chat, asked, title, url, count=0)
            assert len(parts) >= 4
        finally:
            process.stop()


def keyboard(message: dict) -> dict[str, str]:
    """A settings message's buttons: label -> callback data."""
    return {b["text"]: b["callback_data"] for row in message["reply_markup"]["inline_keyboard"] for b in row}


def test_telegram_settings_change_the_next_mp3_and_are_the_users_alone(
        fake: FakeTelegram, bot: BotProcess, media: MediaServer) -> None:
    group, owner, stranger = new_chat(), 5000 + new_chat(), 6000 + new_chat()
    # a choice made with /bitrate before /settings existed: kept in its old key, read and moved
    context.redis_client().set(context.keys().user("telegram", owner, "bitrate"), "128")
    asked = fake.push_message(group, owner, "/settings", chat_type="group")
    shown = fake.wait_for(lambda f: next((m for m in f.messages(group) if m["message_id"] > asked
                                          and m.get("reply_markup")), None), timeout=10, what="the settings")
    buttons = keyboard(shown)
    assert "✓ 128 kbit/s" in buttons and "Split chapters automatically: off" in buttons

    refused = fake.push_callback(group, stranger, shown["message_id"], buttons["320 kbit/s"])
    assert "someone else's" in answers(fake, refused)
    forged = fake.push_callback(group, stranger, shown["message_id"], buttons["320 kbit/s"].replace(
        str(owner), str(stranger)))  # a stranger's own id in the data changes only the stranger's settings
    assert answers(fake, forged) == "Saved."
    assert "✓ 128 kbit/s" in keyboard(fake.message(group, shown["message_id"]))

    pressed = fake.push_callback(group, owner, shown["message_id"], buttons["320 kbit/s"])
    assert answers(fake, pressed) == "Saved."
    edited = fake.wait_for(lambda f: "✓ 320 kbit/s" in keyboard(f.message(group, shown["message_id"])), timeout=10,
                           what="the settings edited in place")
    assert edited and len([m for m in fake.messages(group) if m.get("reply_markup")]) == 1
    assert context.redis_client().get(context.keys().user("telegram", owner, "bitrate")) is None  # moved

    fake.push_message(group, owner, f"/mp3 {unique(media.media_url('opus.webm'))}", chat_type="group")
    [audio] = wait_audios(fake, group)
    assert MP3(io.BytesIO(audio["data"])).info.bitrate == 320_000

    fake.push_message(group, owner, "/bitrate 128", chat_type="group")  # the shortcut sets the same record
    fake.wait_for(lambda f: [m for m in f.messages(group) if "will be 128 kbit/s" in (m.get("text") or "")])
    fake.push_message(group, owner, f"/mp3 {unique(media.media_url('opus.webm'))}", chat_type="group")
    audio = wait_audios(fake, group, count=2)[1]
    assert MP3(io.BytesIO(audio["data"])).info.bitrate == 128_000


ASK_ALBUMS = "Ask before albums of over 10 tracks"  # ALBUM_CONFIRM is 10


def test_telegram_loudness_and_album_settings_show_stay_and_the_next_mp3_is_at_the_target(
        fake: FakeTelegram, bot: BotProcess, media: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    from tests.test_loudness import ebur128, make_level
    chat, user = new_chat(), 7000 + new_chat()
    fake.push_message(chat, user, "/settings")
    shown = fake.wait_for(lambda f: next((m for m in f.messages(chat) if m.get("reply_markup")), None), timeout=10,
                          what="the settings")
    buttons = keyboard(shown)
    assert "✓ Loudness off" in buttons and f"{ASK_ALBUMS}: on" in buttons  # LOUDNESS off, ALBUM_CONFIRM 10
    assert answers(fake, fake.push_callback(chat, user, shown["message_id"], buttons["-14 LUFS"])) == "Saved."
    assert answers(fake, fake.push_callback(chat, user, shown["message_id"], buttons[f"{ASK_ALBUMS}: on"])) == "Saved."
    fake.wait_for(lambda f: {"✓ -14 LUFS", "Loudness off", f"{ASK_ALBUMS}: off"} <= set(
        keyboard(f.message(chat, shown["message_id"]))), timeout=10, what="both choices shown in place")
    record = context.redis_client().hgetall(context.keys().user("telegram", user, "settings"))
    assert (record[b"loudness"], record[b"confirm_albums"]) == (b"-14", b"off")

    quiet = make_level(media_dir / "quiet.webm", -20)  # far quieter than -14 LUFS as it is
    fake.push_message(chat, user, unique(media.media_url(quiet.name)))
    [audio] = wait_audios(fake, chat)
    mp3 = tmp_path / "delivered.mp3"
    mp3.write_bytes(audio["data"])
    integrated, _ = ebur128(mp3)
    assert abs(integrated - -14) <= 1.0, integrated


CHAPTERS = [("Intro", 3.0), ("Verse / Chorus = 🎵; #1", 4.0), ("Ω" * 300, 3.0)]  # a name over 255 bytes


def assert_chapter_tracks(found: list[tuple[bytes, str, str]]) -> None:
    """Three MP3s (data, title shown, file name): the chapters' titles and lengths, tagged as an album."""
    assert [title for _, title, _ in found] == [name for name, _ in CHAPTERS]
    names = [filename for _, _, filename in found]
    assert len(set(names)) == 3 and all(len(n.encode()) <= FILENAME_BYTES for n in names), names
    for number, ((data, _, _), (name, seconds)) in enumerate(zip(found, CHAPTERS, strict=True), 1):
        assert abs(MP3(io.BytesIO(data)).info.length - seconds) <= 0.1
        tags = ID3(io.BytesIO(data))
        assert tags["TIT2"].text == [name] and tags["TRCK"].text == [f"{number}/3"]
        assert tags["TALB"].text == ["Chapter Test"] and tags["TPE2"].text == ["Test Artist"] and tags.getall("APIC")


def test_chapters_offered_then_split_on_press_or_automatically(fake: FakeTelegram, bot: BotProcess,
                                                                media: MediaServer, media_dir: Path) -> None:
    from tests.media import make_chapters
    make_chapters(media_dir / "chapters.mka", CHAPTERS, title="Chapter Test")
    chat, user = new_chat(), 4000 + new_chat()
    def page() -> str:  # a page (so the cover goes along) whose video has the chapters in its container
        return media.register_page(f"chapters-{uuid.uuid4().hex[:6]}", file="chapters.mka", title="Chapter Test")

    asked = fake.push_message(chat, user, page())
    [whole] = wait_audios(fake, chat)
    assert abs(MP3(io.BytesIO(whole["data"])).info.length - 10.0) < 0.5
    done = wait_status(fake, chat, asked, r"✅.*Done", timeout=10)
    [[split]] = done["reply_markup"]["inline_keyboard"]
    assert split["text"] == "✂ Split into 3 tracks"

    stranger = fake.push_callback(chat, user + 1, done["message_id"], split["callback_data"])
    assert "Only the person" in answers(fake, stranger)
    fake.push_callback(chat, user, done["message_id"], split["callback_data"])
    tracks = wait_audios(fake, chat, count=4)[1:]
    assert_chapter_tracks([(a["data"], a["title"], a["filename"]) for a in tracks])

    # "split automatically" on: the next link with chapters comes as tracks without a press
    fake.push_message(chat, user, "/settings")
    shown = fake.wait_for(lambda f: next((m for m in f.messages(chat) if m.get("reply_markup")
                                          and "settings" in m.get("text", "")), None), timeout=10, what="settings")
    answers(fake, fake.push_callback(chat, user, shown["message_id"],
                                     keyboard(shown)["Split chapters automatically: off"]))
    fake.push_message(chat, user, page())
    tracks = wait_audios(fake, chat, count=7)[4:]
    assert_chapter_tracks([(a["data"], a["title"], a["filename"]) for a in tracks])


def forget_job_of(chat: int) -> None:
    """The job that answered a chat expires (its records go), as it does job_ttl after it ended."""
    client, keys = context.redis_client(), context.keys()
    for key in client.scan_iter(f"{keys.prefix}job:*:origins"):
        if any(f":{chat}:" in json.loads(raw).get("id", "") for raw in client.lrange(key, 0, -1)):
            job_id = key.decode().removeprefix(f"{keys.prefix}job:").removesuffix(":origins")
            client.delete(*client.scan_iter(f"{keys.prefix}job:{job_id}*"))
            return
    raise AssertionError(f"no job for chat {chat}")


def test_a_cached_repeat_offers_the_split_to_its_requester(fake: FakeTelegram, bot: BotProcess,
                                                           media: MediaServer, media_dir: Path) -> None:
    from tests.media import make_chapters
    make_chapters(media_dir / "chapters.mka", CHAPTERS, title="Chapter Test")
    url = media.register_page(f"chapters-{uuid.uuid4().hex[:6]}", file="chapters.mka", title="Chapter Test")
    first, second, third = (4000 + new_chat() for _ in range(3))  # private chats: the chat is the user's id
    fake.push_message(first, first, url)
    [whole] = wait_audios(fake, first)
    wait_until(lambda: not [k for k in context.redis_client().hkeys(context.keys().pending("telegram"))
                            if f":{first}:" in k.decode()], timeout=10, what="the first request answered")
    forget_job_of(first)  # the button under the repeat can't lean on the job that made the MP3

    fake.push_message(second, second, url)
    [repeat] = wait_audios(fake, second, timeout=10)
    assert repeat["uploaded"] is False and repeat["file_id"] == whole["file_id"]
    [[split]] = repeat["reply_markup"]["inline_keyboard"]
    assert split["text"] == "✂ Split into 3 tracks"
    stranger = fake.push_callback(second, first, repeat["message_id"], split["callback_data"])
    assert "Only the person" in answers(fake, stranger)
    forged = fake.push_callback(second, second, repeat["message_id"], "split:hit0123456789abcdef")
    assert "gone" in answers(fake, forged)
    fake.push_callback(second, second, repeat["message_id"], split["callback_data"])
    tracks = wait_audios(fake, second, count=4)[1:]
    assert_chapter_tracks([(a["data"], a["title"], a["filename"]) for a in tracks])

    # "split automatically" on: the same link comes as the tracks cached just now, at once, with nothing to offer
    context.redis_client().hset(context.keys().user("telegram", third, "settings"), "split_chapters", "on")
    jobs_before = job_count()
    fake.push_message(third, third, url)
    tracks = wait_audios(fake, third, count=3, timeout=10)
    assert [a["file_id"] for a in tracks] == [a["file_id"] for a in audios(fake, second)[1:]]
    assert not any(a["reply_markup"] for a in tracks) and job_count() == jobs_before
