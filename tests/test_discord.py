"""The Discord bot end to end: the real discord.py bot process against a fake Discord (REST and
gateway), with the real Redis, worker, yt-dlp and ffmpeg. One bot process serves the module."""

from __future__ import annotations

import io
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from bots.discord_adapter import TOKEN_LIFE
from common import context
from common.textlimits import DISCORD_CONTENT, FILENAME_BYTES
from tests.conftest import BotProcess
from tests.fake_discord import FakeDiscord, StoredAttachment
from tests.media import TITLE_SCRIPTS, MediaServer, long_title

GUILD = 900
CHANNEL = 901
ADMIN = 42
TOKEN = "MTAwMA.discord-test-token.abcdefghijklmnopqrstuvwxyz"
EPHEMERAL = 64

pytestmark = pytest.mark.usefixtures("worker")


def started(fake: FakeDiscord) -> Callable[[], bool]:
    """True once a newly started bot has identified and synced its commands."""
    syncs, identified = len(fake.calls("PUT", r"/commands$")), len(fake.identifies)
    return lambda: len(fake.calls("PUT", r"/commands$")) > syncs and len(fake.identifies) > identified


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, channel_id=CHANNEL, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeDiscord, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BotProcess]:
    env = {**test_env, "DISCORD_TOKEN": TOKEN, "DISCORD_API_URL": fake.api_url,
           "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_GUILD_ID": str(GUILD),
           "DISCORD_ADMIN_IDS": str(ADMIN)}
    process = BotProcess("discord", env, tmp_path_factory.mktemp("discord") / "bot.log")
    process.start(started(fake))
    yield process
    process.stop()
    assert TOKEN not in process.log.read_text(errors="replace")  # the token never reaches the logs


def new_id() -> int:
    return 10_000 + uuid.uuid4().int % 1_000_000


def unique(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}n={uuid.uuid4().hex[:8]}"


def plain(text: str) -> str:
    """What Discord shows of escaped markdown."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


def wait_original(fake: FakeDiscord, token: str, pattern: str, timeout: float = 60) -> dict:
    def matching() -> dict | None:
        message = fake.original(token)
        return message if message and re.search(pattern, plain(message["content"]), re.DOTALL) else None

    return fake.wait_for(matching, timeout=timeout, what=f"the original response matching {pattern!r}")


def wait_files(fake: FakeDiscord, count: int = 1, timeout: float = 60, **where: object) -> list[StoredAttachment]:
    return fake.wait_for(lambda: len(found := fake.attachments(**where)) >= count and found, timeout=timeout,
                         what=f"{count} attachment(s) in {where}")


def channel_texts(fake: FakeDiscord, channel: int) -> list[str]:
    """Messages the bot posted with its own token (no interaction) in a channel."""
    return [plain(m["content"]) for m in fake.channel_messages(channel) if "interaction_metadata" not in m]


def job_count() -> int:
    return sum(1 for _ in context.redis_client().scan_iter(f"{context.keys().prefix}job:*:origins"))


def button(message: dict, action: str) -> str:
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    return next(i for i in ids if i.startswith(f"{action}:"))


def test_slash_command_defers_shows_progress_then_mp3(fake: FakeDiscord, bot: BotProcess, media: MediaServer,
                                                      test_env: dict[str, str]) -> None:
    channel, user = new_id(), new_id()
    url = unique(media.url("/slow/16000/opus.webm"))
    token = fake.slash_command("mp3", {"url": url}, user_id=user, channel_id=channel)
    fake.wait_for(lambda: fake.interaction(token)["callback_types"], timeout=3, what="the deferral")
    info = fake.interaction(token)
    assert info["callback_types"] == [5] and info["callback_times"][0] - info["created"] < 3.0
    [audio] = wait_files(fake, token=token)
    edits = [c.json for c in fake.calls("PATCH", re.escape(token)) if c.status == 200]
    percents = [int(p) for e in edits for p in re.findall(r"(\d+)%", e.get("content", ""))]
    assert percents == sorted(percents) and any(10 < p < 50 for p in percents), percents
    job_id = next(button(e, "cancel") for e in edits if e.get("components")).split(":")[1]
    assert abs(MP3(io.BytesIO(audio.data)).info.length - 8.0) < 0.5
    assert audio.filename == "Test Tone.mp3"
    assert "**Test Tone**" in audio.content and f"<{url}>" in audio.content
    done = wait_original(fake, token, r"✅.*Test Tone.*Done", timeout=10)
    assert done["components"] == []
    storage = Path(test_env["STORAGE_DIR"])
    assert not (storage / job_id).exists()  # the job's files are gone; a copy stays in the cache
    assert list((storage / "discord-cache").glob("*.mp3"))


@pytest.mark.parametrize("limit", [120_000, 60_000])
def test_small_attachment_limit_lowers_bitrate_or_splits(fake: FakeDiscord, bot: BotProcess,
                                                         media: MediaServer, limit: int) -> None:
    token = fake.slash_command("mp3", {"url": unique(media.media_url("opus.webm"))}, user_id=new_id(),
                               channel_id=new_id(), attachment_size_limit=limit)
    wait_original(fake, token, "Done", timeout=60)
    files = fake.attachments(token=token)
    assert files and all(f.size <= limit for f in files)
    mp3s = [MP3(io.BytesIO(f.data)).info for f in files]
    assert abs(sum(m.length for m in mp3s) - 8.0) < 1.0
    if len(files) == 1:
        assert mp3s[0].bitrate < 192_000
    else:
        assert [f.filename for f in files] == [f"Test Tone ({n} of {len(files)}).mp3" for n in range(1, len(files) + 1)]


def test_cached_repeat_is_uploaded_again_without_a_job(fake: FakeDiscord, bot: BotProcess,
                                                       media: MediaServer) -> None:
    url = unique(media.media_url("audio.m4a"))
    first = fake.slash_command("mp3", {"url": url}, user_id=new_id(), channel_id=new_id())
    [original] = wait_files(fake, token=first)
    wait_original(fake, first, "Done", timeout=10)
    jobs_before = job_count()
    started = time.monotonic()
    second = fake.slash_command("mp3", {"url": url}, user_id=new_id(), channel_id=new_id())
    [repeat] = wait_files(fake, token=second, timeout=10)
    assert time.monotonic() - started < 3
    assert repeat.data == original.data and repeat.filename == original.filename
    assert job_count() == jobs_before
    assert fake.original(second)["attachments"]  # the answer is the MP3 itself: no status to follow


def test_cancel_works_for_the_requester_only(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/4000/opus.webm"))}, user_id=user,
                               channel_id=channel)
    status = wait_original(fake, token, "Downloading", timeout=20)
    cancel = button(status, "cancel")
    job_id = cancel.split(":")[1]
    refused = fake.component_click(status["id"], cancel, user_id=new_id())
    answer = wait_original(fake, refused, "Only the person", timeout=10)
    assert answer["flags"] & EPHEMERAL
    assert context.store().get(job_id).state in ("queued", "downloading")
    accepted = fake.component_click(status["id"], cancel, user_id=user)
    wait_original(fake, accepted, "Cancelled", timeout=10)
    wait_original(fake, token, r"🚫.*Cancelled", timeout=10)
    assert context.store().get(job_id).state == "cancelled"
    assert not fake.attachments(token=token)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/status/404/opus.webm", "Nothing was found at this link"),
        ("/page/nomedia", "isn't supported"),
        ("long", "too long.*15:00"),
    ],
)
def test_failures_end_in_a_clear_reason(fake: FakeDiscord, bot: BotProcess, media: MediaServer,
                                        path: str, expected: str) -> None:
    url = (media.register_page(f"long-{uuid.uuid4().hex[:6]}", duration=7200) if path == "long"
           else unique(media.url(path)))
    token = fake.slash_command("mp3", {"url": url}, user_id=new_id(), channel_id=new_id())
    status = wait_original(fake, token, "❌", timeout=30)
    assert re.search(expected, plain(status["content"]), re.DOTALL) and "Traceback" not in status["content"]
    assert status["components"] == []  # nothing to retry, nothing to cancel


def test_private_address_is_refused_before_any_job(fake: FakeDiscord, bot: BotProcess) -> None:
    jobs_before = job_count()
    token = fake.slash_command("mp3", {"url": "http://127.0.0.1:6379/"}, user_id=new_id(), channel_id=new_id())
    status = wait_original(fake, token, "⛔", timeout=10)
    assert "private or internal" in plain(status["content"])
    assert job_count() == jobs_before


def test_transient_failure_offers_retry(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    url = media.url(f"/flaky/4/{uuid.uuid4().hex}/opus.webm")
    token = fake.slash_command("mp3", {"url": url}, user_id=user, channel_id=channel)
    status = wait_original(fake, token, "❌.*server error", timeout=60)
    again = fake.component_click(status["id"], button(status, "retry"), user_id=user)  # the 5th request succeeds
    wait_files(fake, token=again, timeout=30)
    wait_original(fake, again, "Done", timeout=10)


def test_others_cannot_press_a_requesters_buttons(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, owner, stranger = new_id(), new_id(), new_id()
    key = uuid.uuid4().hex
    url = media.url(f"/flaky/4/{key}/opus.webm")  # fails 4 times, then works
    token = fake.slash_command("mp3", {"url": url}, user_id=owner, channel_id=channel)
    status = wait_original(fake, token, "❌.*server error", timeout=60)
    hits, jobs = media.hits(key), job_count()
    refused = fake.component_click(status["id"], button(status, "retry"), user_id=stranger)
    answer = wait_original(fake, refused, "Only the person", timeout=10)
    assert answer["flags"] & EPHEMERAL and not answer["attachments"]
    assert job_count() == jobs and media.hits(key) == hits
    # nothing ran for the stranger: the owner's retry is the first to fetch again
    again = fake.component_click(status["id"], button(status, "retry"), user_id=owner)
    wait_files(fake, token=again, timeout=30)
    assert media.hits(key) > hits and job_count() == jobs + 1
    assert not fake.attachments(token=refused)


def test_context_menu_takes_the_first_link(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    first, second = unique(media.media_url("video.mp4")), unique(media.media_url("opus.webm"))
    token = fake.message_command("Convert to MP3", f"listen to {first} and {second}", user_id=new_id(),
                                 channel_id=new_id())
    [audio] = wait_files(fake, token=token)
    assert f"<{first}>" in audio.content
    none = fake.message_command("Convert to MP3", "no link here", user_id=new_id(), channel_id=new_id())
    answer = fake.wait_for(lambda: fake.original(none), what="an answer")
    assert "no link" in answer["content"] and answer["flags"] & EPHEMERAL


def test_hostile_title_shows_as_it_is_and_pings_nobody(fake: FakeDiscord, bot: BotProcess,
                                                       media: MediaServer) -> None:
    title = "**Loud** _it_ `x` <@123> <#901> @everyone ||spoiler|| # 1."
    url = media.register_page(f"hostile-{uuid.uuid4().hex[:6]}", title=title)
    token = fake.slash_command("mp3", {"url": url}, user_id=new_id(), channel_id=new_id())
    [audio] = wait_files(fake, token=token)
    done = wait_original(fake, token, "Done", timeout=10)
    for text in (done["content"], audio.content):
        assert title in plain(text)
        assert "@everyone" not in text and "<@123>" not in text and "<#901>" not in text
    assert audio.filename.endswith(".mp3")


@pytest.mark.parametrize("script", list(TITLE_SCRIPTS))
def test_parts_of_a_1500_character_title_keep_names_of_their_own(fake: FakeDiscord, bot: BotProcess,
                                                                 media: MediaServer, script: str) -> None:
    title = long_title(script)
    url = media.register_page(f"long-{script}-{uuid.uuid4().hex[:6]}", title=title)
    token = fake.slash_command("mp3", {"url": url}, user_id=new_id(), channel_id=new_id(),
                               attachment_size_limit=60_000)
    done = wait_original(fake, token, r"✅.*Done", timeout=90)
    assert title[:40] in plain(done["content"])
    files = fake.attachments(token=token)
    count = len(files)
    assert count > 1 and len({f.filename for f in files}) == len({f.content for f in files}) == count
    for number, part in enumerate(files, 1):
        suffix = f" ({number} of {count})"
        assert len(part.filename.encode()) <= FILENAME_BYTES and part.filename.endswith(f"{suffix}.mp3")
        first, link = plain(part.content).split("\n")
        assert first.startswith(f"**{title[:40]}") and first.endswith(f"{suffix}**") and link == f"<{url}>"
    assert not [str(c) for c in fake.calls() if token in c.path and c.status >= 400]
    assert all(len(c.json.get("content") or "") <= DISCORD_CONTENT for c in fake.calls() if token in c.path and c.json)


def test_mp3_without_a_link_gets_a_hint(fake: FakeDiscord, bot: BotProcess) -> None:
    token = fake.slash_command("mp3", {"url": "hello there"}, user_id=new_id(), channel_id=new_id())
    answer = fake.wait_for(lambda: fake.original(token), what="an answer")
    assert "doesn't look like a link" in answer["content"] and answer["flags"] & EPHEMERAL


@pytest.mark.parametrize(("name", "options"), [("stats", {}), ("job", {"job_id": "abc"}), ("dead", {}),
                                               ("retry", {"job_id": "abc"}), ("cancel", {"job_id": "abc"}),
                                               ("purge", {}), ("health", {})])
def test_admin_commands_refused_for_others(fake: FakeDiscord, bot: BotProcess, name: str,
                                           options: dict) -> None:
    token = fake.slash_command(name, options, user_id=new_id(), channel_id=new_id())
    answer = fake.wait_for(lambda: fake.original(token), what="an answer")
    assert "not allowed" in answer["content"] and answer["flags"] & EPHEMERAL


def test_admin_commands_for_admins(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel = new_id()

    def ask(name: str, expected: str, **options: object) -> dict:
        token = fake.slash_command(name, options, user_id=ADMIN, channel_id=channel)
        answer = fake.wait_for(lambda: (m := fake.original(token)) and expected in m["content"] and m,
                               timeout=15, what=f"/{name} answering {expected!r}")
        assert answer["flags"] & EPHEMERAL
        return answer

    assert "download" in ask("stats", "Workers")["content"]
    failing = fake.slash_command("mp3", {"url": unique(media.url("/status/404/opus.webm"))}, user_id=new_id(),
                                 channel_id=channel)
    wait_original(fake, failing, "❌", timeout=30)
    job_id = json.loads(context.redis_client().lindex(context.keys().dead, 0))["job_id"]
    assert "404" in ask("job", f"Job {job_id}: failed", job_id=job_id)["content"]
    ask("dead", job_id, count=5)
    edits = len(fake.calls("PATCH", re.escape(failing)))
    ask("retry", "Retrying as job", job_id=job_id)
    # the re-run is answered to the person who asked, in their status message (one edit when it has already
    # failed by the time the bot takes it up, more when it is seen running)
    fake.wait_for(lambda: len(fake.calls("PATCH", re.escape(failing))) > edits, timeout=30, what="re-run status")
    wait_original(fake, failing, "❌.*Nothing was found", timeout=30)
    ask("cancel", "already ended", job_id=job_id)
    question = ask("purge", "Purge the queues?")
    refused = fake.component_click(question["id"], "purge:yes", user_id=new_id())
    refusal = wait_original(fake, refused, "not allowed", timeout=10)
    assert refusal["flags"] & EPHEMERAL and refusal["id"] != question["id"]
    fake.component_click(question["id"], "purge:no", user_id=ADMIN)
    fake.wait_for(lambda: "Nothing was purged" in fake.message(question["id"])["content"], what="purge answer")


def test_health_shows_the_doctors_report_to_admins(fake: FakeDiscord, bot: BotProcess) -> None:
    token = fake.slash_command("health", {}, user_id=ADMIN, channel_id=new_id())
    answer = fake.wait_for(lambda: (m := fake.original(token)) and "JS runtime" in m["content"] and m, timeout=60,
                           what="the doctor's report")
    assert answer["flags"] & EPHEMERAL
    lines = answer["content"].removeprefix("```\n").removesuffix("\n```").splitlines()
    assert lines[2].startswith("JS runtime  deno ") and "(matches yt-dlp's" in lines[1]
    assert any(re.match(r"workers     download [1-9]", line) for line in lines)
    assert any(line.startswith("routes      ") for line in lines)  # each download route, or "no tries yet"
    assert lines[-1] == "No problems found." or lines[-2] == "1 problem:"


def test_expired_interaction_goes_on_in_the_channel(fake: FakeDiscord, bot: BotProcess,
                                                    media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/16000/opus.webm"))}, user_id=user,
                               channel_id=channel)
    wait_original(fake, token, "Downloading", timeout=20)
    fake.expire_interaction(token)
    [audio] = wait_files(fake, channel_id=channel)
    assert audio.interaction_token is None and f"<@{user}>" in audio.content
    assert abs(MP3(io.BytesIO(audio.data)).info.length - 8.0) < 0.5
    moved = [plain(c.json["content"]) for c in fake.calls(path=rf"^/channels/{channel}/messages") if c.json]
    assert any(re.search(r"<@\d+> .*Downloading.*%", text, re.DOTALL) for text in moved), moved  # the status moved
    fake.wait_for(lambda: any("✅" in text and "Done" in text for text in channel_texts(fake, channel)),
                  what="the status in the channel saying Done")


def test_blocked_channel_tells_the_user_by_dm(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/16000/opus.webm"))}, user_id=user,
                               channel_id=channel)
    wait_original(fake, token, "Downloading", timeout=20)
    fake.block_channel(channel)
    fake.expire_interaction(token)
    dm = fake.dm_channel_id(user)
    [audio] = wait_files(fake, channel_id=dm)
    assert abs(MP3(io.BytesIO(audio.data)).info.length - 8.0) < 0.5
    fake.wait_for(lambda: any("Done" in text for text in channel_texts(fake, dm)), what="the status in the DM")
    assert not channel_texts(fake, channel)


@pytest.mark.slow
def test_bot_restarted_mid_job_still_delivers(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/12000/opus.webm"))}, user_id=user,
                               channel_id=channel)
    wait_original(fake, token, "Downloading", timeout=20)
    bot.kill()
    age_pending_requests(by=TOKEN_LIFE + 30)  # the bot comes back after the 14 minutes it uses a token for
    bot.start(started(fake))
    [audio] = wait_files(fake, channel_id=channel, timeout=60)
    assert audio.interaction_token is None
    assert abs(MP3(io.BytesIO(audio.data)).info.length - 8.0) < 0.5
    left = wait_original(fake, token, "goes on in a new message below", timeout=10)
    assert left["components"] == []  # the old status hands over, without buttons
    fake.wait_for(lambda: any("Done" in text for text in channel_texts(fake, channel)), what="Done in the channel")


def age_pending_requests(by: float) -> None:
    client, key = context.redis_client(), context.keys().pending("discord")
    for rid, raw in client.hgetall(key).items():
        req = json.loads(raw)
        req["where"]["created"] -= by
        client.hset(key, rid, json.dumps(req))


def test_rate_limits_are_waited_out_and_edits_spaced(fake: FakeDiscord, bot: BotProcess,
                                                     media: MediaServer) -> None:
    limited = fake.count_429
    fake.force_rate_limit(r"^/webhooks/\d+/[^/]+/messages/", times=2, retry_after=0.5)
    token = fake.slash_command("mp3", {"url": unique(media.url("/slow/24000/opus.webm"))}, user_id=new_id(),
                               channel_id=new_id())
    wait_files(fake, token=token)
    wait_original(fake, token, "Done", timeout=10)
    assert fake.count_429 >= limited + 2
    edits = [c.t for c in fake.calls("PATCH", re.escape(token)) if c.status == 200]
    assert len(edits) >= 3 and all(b - a >= 0.9 for a, b in itertools.pairwise(edits)), edits


def test_discord_settings_are_ephemeral_change_the_next_mp3_and_are_the_users_alone(
        fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, owner, stranger = new_id(), new_id(), new_id()
    token = fake.slash_command("settings", user_id=owner, channel_id=channel)
    shown = fake.wait_for(lambda: fake.original(token), timeout=10, what="the settings")
    assert shown["flags"] & EPHEMERAL

    def ids(message: dict) -> dict[str, str]:
        return {c["label"]: c["custom_id"] for row in message["components"] for c in row["components"]}

    assert "✓ 192 kbit/s" in ids(shown)
    refused = fake.component_click(shown["id"], ids(shown)["320 kbit/s"], user_id=stranger)
    answer = wait_original(fake, refused, "someone else's", timeout=10)
    assert answer["flags"] & EPHEMERAL
    assert "✓ 192 kbit/s" in ids(fake.message(shown["id"]))

    fake.component_click(shown["id"], ids(shown)["320 kbit/s"], user_id=owner)
    fake.wait_for(lambda: "✓ 320 kbit/s" in ids(fake.message(shown["id"])), timeout=10, what="the edit in place")
    assert "192 kbit/s" in ids(fake.message(shown["id"]))  # no longer ticked

    token = fake.slash_command("mp3", {"url": unique(media.media_url("opus.webm"))}, user_id=owner,
                               channel_id=channel)
    [audio] = wait_files(fake, token=token)
    assert MP3(io.BytesIO(audio.data)).info.bitrate == 320_000
    token = fake.slash_command("mp3", {"url": unique(media.media_url("opus.webm")), "bitrate": 128},
                               user_id=owner, channel_id=channel)  # the option still wins for one link
    [audio] = wait_files(fake, token=token)
    assert MP3(io.BytesIO(audio.data)).info.bitrate == 128_000


def test_discord_loudness_and_album_settings_show_stay_and_the_next_mp3_is_at_the_target(
        fake: FakeDiscord, bot: BotProcess, media: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    from tests.test_loudness import ebur128, make_level
    from tests.test_telegram import ASK_ALBUMS
    channel, user = new_id(), new_id()
    token = fake.slash_command("settings", user_id=user, channel_id=channel)
    shown = fake.wait_for(lambda: fake.original(token), timeout=10, what="the settings")

    def ids(message: dict) -> dict[str, str]:
        return {c["label"]: c["custom_id"] for row in message["components"] for c in row["components"]}

    assert "✓ Loudness off" in ids(shown) and f"{ASK_ALBUMS}: on" in ids(shown)
    fake.component_click(shown["id"], ids(shown)["-16 LUFS"], user_id=user)
    fake.wait_for(lambda: "✓ -16 LUFS" in ids(fake.message(shown["id"])), timeout=10, what="the loudness shown")
    fake.component_click(shown["id"], ids(shown)[f"{ASK_ALBUMS}: on"], user_id=user)
    fake.wait_for(lambda: f"{ASK_ALBUMS}: off" in ids(fake.message(shown["id"])), timeout=10, what="albums shown")
    assert "✓ -16 LUFS" in ids(fake.message(shown["id"]))  # the one choice did not undo the other
    record = context.redis_client().hgetall(context.keys().user("discord", user, "settings"))
    assert (record[b"loudness"], record[b"confirm_albums"]) == (b"-16", b"off")

    quiet = make_level(media_dir / "quiet.webm", -20)
    token = fake.slash_command("mp3", {"url": unique(media.media_url(quiet.name))}, user_id=user, channel_id=channel)
    [audio] = wait_files(fake, token=token)
    mp3 = tmp_path / "delivered.mp3"
    mp3.write_bytes(audio.data)
    integrated, _ = ebur128(mp3)
    assert abs(integrated - -16) <= 1.0, integrated


def test_split_option_and_button_give_one_mp3_per_chapter(fake: FakeDiscord, bot: BotProcess, media: MediaServer,
                                                          media_dir: Path) -> None:
    from mutagen.id3 import ID3

    from tests.media import make_chapters
    from tests.test_telegram import CHAPTERS, assert_chapter_tracks

    make_chapters(media_dir / "chapters.mka", CHAPTERS, title="Chapter Test")
    channel, user = new_id(), new_id()

    def page() -> str:
        return media.register_page(f"chapters-{uuid.uuid4().hex[:6]}", file="chapters.mka", title="Chapter Test")

    def tracks(token: str) -> list[tuple[bytes, str, str]]:
        found = wait_files(fake, count=3, token=token)
        return [(a.data, str(ID3(io.BytesIO(a.data))["TIT2"].text[0]), a.filename) for a in found]

    token = fake.slash_command("mp3", {"url": page(), "split": True}, user_id=user, channel_id=channel)
    assert_chapter_tracks(tracks(token))
    assert all(name in plain(a.content) for a, (name, _) in zip(fake.attachments(token=token), CHAPTERS,
                                                                 strict=True))

    token = fake.slash_command("mp3", {"url": page()}, user_id=user, channel_id=channel)
    done = wait_original(fake, token, r"✅.*Done", timeout=60)
    [split] = [c for row in done["components"] for c in row["components"]]
    assert split["label"] == "✂ Split into 3 tracks"
    again = fake.component_click(done["id"], split["custom_id"], user_id=user)
    assert_chapter_tracks(tracks(again))


def test_a_cached_repeat_offers_the_split_to_its_requester(fake: FakeDiscord, bot: BotProcess, media: MediaServer,
                                                           media_dir: Path) -> None:
    from mutagen.id3 import ID3

    from tests.media import make_chapters
    from tests.test_telegram import CHAPTERS, assert_chapter_tracks, forget_job_of

    make_chapters(media_dir / "chapters.mka", CHAPTERS, title="Chapter Test")
    url = media.register_page(f"chapters-{uuid.uuid4().hex[:6]}", file="chapters.mka", title="Chapter Test")
    first, second = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": url}, user_id=first, channel_id=first)
    wait_original(fake, token, r"✅.*Done", timeout=60)
    forget_job_of(first)  # the button under the repeat can't lean on the job that made the MP3

    token = fake.slash_command("mp3", {"url": url}, user_id=second, channel_id=second)
    [repeat] = wait_files(fake, token=token, timeout=10)
    [split] = [c for row in fake.message(repeat.message_id)["components"] for c in row["components"]]
    assert split["label"] == "✂ Split into 3 tracks"
    refused = fake.component_click(repeat.message_id, split["custom_id"], user_id=first)
    assert wait_original(fake, refused, "Only the person", timeout=10)["flags"] & EPHEMERAL
    again = fake.component_click(repeat.message_id, split["custom_id"], user_id=second)
    found = wait_files(fake, count=3, token=again)
    assert_chapter_tracks([(a.data, str(ID3(io.BytesIO(a.data))["TIT2"].text[0]), a.filename) for a in found])
