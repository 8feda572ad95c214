"""YouTube's refusals end to end: the real worker, yt-dlp's real YouTube extractor code (fed
YouTube's answers by the tests' plugin, tests/ytdlp_plugins), the real bots against the fake
Telegram and Discord.

What a user sees (the status text), what the operator gets (one alert per kind per interval,
in the admin chats, also from a bot that was down), and how a rate limit holds the site.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common import alerts, context
from common.errors import TEXT, Code
from common.jobs import State
from tasks import pipeline, sitehold
from tasks.celery_app import app
from tests.conftest import BotProcess, origin, wait_job, wait_until
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer

pytestmark = pytest.mark.usefixtures("worker")

TELEGRAM_ADMIN = 4242
DISCORD_ADMIN = 4343
TELEGRAM_TOKEN = "123456789:TEST-alerts-abcdefghijklmnopqrstuvwxyz"
DISCORD_TOKEN = "MTAwMA.discord-alerts-token.abcdefghijklmnopqrstuvwxyz"
GUILD, CHANNEL = 910, 911

# -- YouTube's answers: player responses as YouTube sends them when it refuses playback

LEARN_MORE = "This helps protect our community. Learn more"


def refusal(status: str, reason: str, subreason: str | None = None) -> dict:
    screen: dict = {"reason": {"simpleText": reason}}
    if subreason:
        screen["subreason"] = {"simpleText": subreason}
    return {"playabilityStatus": {"status": status, "reason": reason,
                                  "errorScreen": {"playerErrorMessageRenderer": screen}},
            "videoDetails": {"videoId": "refused", "title": "A video"}}


BOT_CHECK = {"player_response": refusal("LOGIN_REQUIRED", "Sign in to confirm you\u2019re not a bot", LEARN_MORE)}
ANSWERS: dict[str, tuple[dict, Code]] = {
    "bot_check": (BOT_CHECK, Code.BOT_CHECK),
    "cookies_rotated": ({**BOT_CHECK, "environment": {"cookies_rotated": True}}, Code.COOKIES_EXPIRED),
    "age": ({"player_response": refusal("LOGIN_REQUIRED", "Sign in to confirm your age",
                                        "This video may be inappropriate for some users.")}, Code.LOGIN_REQUIRED),
    "private": ({"player_response": refusal("LOGIN_REQUIRED", "Private video",
                                            "Sign in if you've been granted access to this video")}, Code.PRIVATE),
    "members": ({"player_response": refusal(
        "UNPLAYABLE", "Join this channel to get access to members-only content like this video, and other "
                      "exclusive perks.")}, Code.PRIVATE),
    "geo": ({"player_response": {
        **refusal("UNPLAYABLE", "Video unavailable", "The uploader has not made this video available in your country"),
        "microformat": {"playerMicroformatRenderer": {"availableCountries": ["US"]}}}}, Code.GEO_BLOCKED),
    "premiere": ({"player_response": {
        "playabilityStatus": {"status": "LIVE_STREAM_OFFLINE", "reason": "Premieres in 10 hours"},
        "videoDetails": {"videoId": "soon", "title": "A premiere", "isUpcoming": True, "isLiveContent": True}}},
        Code.UPCOMING),
    "no_js_runtime": ({"player_response": {
        "playabilityStatus": {"status": "OK"}, "videoDetails": {"videoId": "nojs", "title": "A video"}},
        "environment": {"no_js_runtime": True}}, Code.NO_FORMAT),
    "no_format": ({"player_response": {
        "playabilityStatus": {"status": "OK"}, "videoDetails": {"videoId": "noformat", "title": "A video"}}},
        Code.NO_FORMAT),
    "po_token_needed": ({"player_response": {  # the real PO-token framework asks the plugin, which finds no provider
        "playabilityStatus": {"status": "OK"}, "videoDetails": {"videoId": "nopot", "title": "A video"}},
        "environment": {"po_token_needed": True}}, Code.NO_FORMAT),
    "rate_limited": ({"player_response": refusal("UNPLAYABLE", "This content isn't available, try again later.")},
                     Code.RATE_LIMITED),
}
# The answers that need the operator, and the alert each raises.
ALERT_OF = {"bot_check": "bot_check", "cookies_rotated": "cookies_expired", "no_js_runtime": "js_runtime",
            "po_token_needed": "pot_provider", "no_format": "no_format"}


def youtube_link(media: MediaServer, answer: str) -> tuple[str, str]:
    """A link of a fresh case (its own job, its own request count) that YouTube answers so; (link, case)."""
    case = f"{answer}-{uuid.uuid4().hex[:8]}"
    return media.register_youtube(case, ANSWERS[answer][0]), case


def submit(url: str) -> str:
    job_id, _ = pipeline.submit(url, origin=origin())
    return job_id


# -- each refusal on its own


@pytest.mark.parametrize("answer", [a for a in ANSWERS if a != "rate_limited"])
def test_each_refusal_ends_the_job_at_once_with_its_code_and_text(media: MediaServer, test_env: dict[str, str],
                                                                   answer: str) -> None:
    url, case = youtube_link(media, answer)
    job = wait_job(submit(url))
    code = ANSWERS[answer][1]
    assert (job.state, job.error_code, job.error_text) == (State.FAILED, code, TEXT[code])
    assert job.retryable == (code in (Code.BOT_CHECK, Code.COOKIES_EXPIRED, Code.NO_FORMAT))
    asked = 2 if answer == "cookies_rotated" else 1  # the rotation shows on the second request of the same run
    assert media.hits(f"yt:{case}") == asked  # not retried
    letter = json.loads(context.redis_client().lindex(context.keys().dead, 0))
    assert (letter["job_id"], letter["code"]) == (job.id, code)
    assert not [p for p in (Path(test_env["TEMP_DIR"]) / job.id, Path(test_env["STORAGE_DIR"]) / job.id)
                if p.exists()]


# -- the rate limit: no quick retry, the site held


def scheduled_downloads() -> dict[str, float]:
    """Job id -> ETA (epoch seconds) of the download tasks the workers hold for later."""
    held: dict[str, float] = {}
    for tasks in (app.control.inspect(timeout=2).scheduled() or {}).values():
        for entry in tasks:
            request = entry["request"]
            if request["name"] == "tasks.download":
                held[request["args"][0]] = dt.datetime.fromisoformat(entry["eta"]).timestamp()
    return held


@pytest.fixture
def youtube_hold() -> Iterator[None]:
    """Whatever a test holds of YouTube is let go after it (jobs still held are cancelled by the test)."""
    yield
    context.redis_client().hdel(context.keys().site_holds, "youtube")


@pytest.mark.usefixtures("youtube_hold")
def test_a_rate_limit_is_not_retried_soon_and_holds_the_site(media: MediaServer, test_env: dict[str, str]) -> None:
    backoff = 900.0  # RATE_LIMIT_BACKOFF's default: the session's worker has it
    url, case = youtube_link(media, "rate_limited")
    limited = submit(url)
    store = context.store()
    retry_text = re.compile(r"^The site is limiting the bot's downloads; trying again in about 15 minutes \(1 of 3\)…$")
    wait_until(lambda: retry_text.match(store.get(limited).message), timeout=30,
               what=lambda: f"the retry notice, got {store.get(limited)}")
    before = time.time()
    assert media.hits(f"yt:{case}") == 1
    assert store.get(limited).state == State.DOWNLOADING  # waiting, not failed
    assert scheduled_downloads()[limited] >= before + backoff - 60  # Celery holds the retry ~15 minutes
    until = float(context.redis_client().hget(context.keys().site_holds, "youtube"))  # the plugin's links are YouTube's
    assert until >= before + backoff - 60

    # Another YouTube link waits in the queue without YouTube being asked...
    other_url, other_case = youtube_link(media, "private")
    held = submit(other_url)
    wait_until(lambda: "starting in about" in store.get(held).message, timeout=30,
               what=lambda: f"the hold notice, got {store.get(held)}")
    job = store.get(held)
    assert job.state == State.QUEUED and job.message.startswith("The site is limiting the bot's downloads")
    assert media.hits(f"yt:{other_case}") == 0
    assert scheduled_downloads()[held] >= before + backoff - 60
    # ...while other sites go on.
    elsewhere = wait_job(submit(f"{media.media_url('opus.webm')}?n={uuid.uuid4().hex[:8]}"))
    assert elsewhere.state == State.READY

    for job_id in (limited, held):  # their late messages then find them cancelled and do nothing
        assert pipeline.cancel(job_id)


@pytest.mark.usefixtures("youtube_hold")
def test_a_held_job_starts_when_the_hold_ends(media: MediaServer, test_env: dict[str, str]) -> None:
    url, case = youtube_link(media, "premiere")
    sitehold.hold("youtube", 3)  # as a rate limit would, shorter
    job_id = submit(url)
    store = context.store()
    wait_until(lambda: "starting in about 1 minute" in store.get(job_id).message, timeout=30,
               what=lambda: f"the hold notice, got {store.get(job_id)}")
    assert media.hits(f"yt:{case}") == 0
    job = wait_job(job_id)
    assert (job.error_code, media.hits(f"yt:{case}")) == (Code.UPCOMING, 1)


# -- what users and admins see in the chats


def telegram_started(fake: FakeTelegram) -> Callable[[], bool]:
    starts = len(fake.calls("deleteWebhook"))
    return lambda: len(fake.calls("deleteWebhook")) > starts


def discord_started(fake: FakeDiscord) -> Callable[[], bool]:
    syncs, identified = len(fake.calls("PUT", r"/commands$")), len(fake.identifies)
    return lambda: len(fake.calls("PUT", r"/commands$")) > syncs and len(fake.identifies) > identified


@pytest.fixture(scope="module")
def telegram(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[FakeTelegram, BotProcess]]:
    with FakeTelegram() as fake:
        env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": fake.api_url,
               "TELEGRAM_FILE_URL": fake.file_url, "TELEGRAM_ADMIN_IDS": str(TELEGRAM_ADMIN)}
        bot = BotProcess("telegram", env, tmp_path_factory.mktemp("alerts-telegram") / "bot.log")
        bot.start(telegram_started(fake))
        yield fake, bot
        bot.stop()


@pytest.fixture(scope="module")
def discord(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[FakeDiscord, BotProcess]]:
    with FakeDiscord(guild_id=GUILD, channel_id=CHANNEL, token=DISCORD_TOKEN) as fake:
        env = {**test_env, "DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_GUILD_ID": str(GUILD),
               "DISCORD_ADMIN_IDS": str(DISCORD_ADMIN)}
        bot = BotProcess("discord", env, tmp_path_factory.mktemp("alerts-discord") / "bot.log")
        bot.start(discord_started(fake))
        yield fake, bot
        bot.stop()


def alert_text(kind: str) -> str | None:
    """The alert of this kind as an admin with no language of their own reads it (English)."""
    return alerts.message({"kind": kind, "text": alerts.TEXT[kind], "time": str(time.time())})


def telegram_alerts(fake: FakeTelegram, kind: str) -> list[str]:
    return [m["text"] for m in fake.messages(TELEGRAM_ADMIN) if m.get("text") == alert_text(kind)]


def discord_alerts(fake: FakeDiscord, kind: str) -> list[str]:
    shown = [re.sub(r"\\(.)", r"\1", m["content"]) for m in fake.channel_messages(fake.dm_channel_id(DISCORD_ADMIN))]
    return [text for text in shown if text == alert_text(kind)]


def stream_read_by(platform: str) -> bool:
    """The platform's bot has taken and confirmed every alert in the stream."""
    client, keys = context.redis_client(), context.keys()
    last = client.xrevrange(keys.alerts, count=1)
    if not last:
        return True
    group = {g["name"].decode(): g for g in client.xinfo_groups(keys.alerts)}.get(platform)
    return bool(group and group["pending"] == 0 and group["last-delivered-id"] == last[0][0])


def settled() -> None:
    """Both bots have delivered every alert so far (earlier tests of the session raised some)."""
    for platform in ("telegram", "discord"):
        wait_until(lambda p=platform: stream_read_by(p), timeout=30, what=f"{platform} to deliver every alert")


def counts(tg: FakeTelegram, dc: FakeDiscord, kind: str) -> tuple[int, int]:
    """How many alerts of this kind the Telegram admin and the Discord admin have got."""
    return len(telegram_alerts(tg, kind)), len(discord_alerts(dc, kind))


def new_interval(tg: FakeTelegram, dc: FakeDiscord, *kinds: str) -> dict[str, tuple[int, int]]:
    """The alert interval of these kinds starts now (earlier tests of the session raised some, and the
    bots have delivered those); returns each kind's counts so far."""
    keys = context.keys()
    context.redis_client().delete(*(keys.alert_sent(kind) for kind in kinds))
    settled()
    return {kind: counts(tg, dc, kind) for kind in kinds}


def test_user_sees_the_refusal_and_the_admins_get_one_alert_per_kind(
        media: MediaServer, telegram: tuple[FakeTelegram, BotProcess],
        discord: tuple[FakeDiscord, BotProcess]) -> None:
    (tg, _), (dc, _) = telegram, discord
    tg_before, dc_before = new_interval(tg, dc, "bot_check")["bot_check"]
    chat = 20_000 + uuid.uuid4().int % 1_000_000
    for answer in ("bot_check", "bot_check", "private"):  # the second bot check within the hour: no new alert
        url, _ = youtube_link(media, answer)
        asked = tg.push_message(chat, 77, url)
        expected = f"❌ Your link\n{TEXT[ANSWERS[answer][1]]}"
        tg.wait_for(lambda f, a=asked, e=expected: any(
            m.get("text") == e and m.get("reply_to_message", {}).get("message_id") == a
            for m in f.messages(chat)), timeout=60, what=f"the status {expected!r}")
    assert all(m.get("text") != alert_text("bot_check") for m in tg.messages(chat))
    settled()
    assert counts(tg, dc, "bot_check") == (tg_before + 1, dc_before + 1)


def test_each_operator_kind_alerts_with_its_fix(media: MediaServer, telegram: tuple[FakeTelegram, BotProcess],
                                                discord: tuple[FakeDiscord, BotProcess]) -> None:
    (tg, _), (dc, _) = telegram, discord
    before = new_interval(tg, dc, *ALERT_OF.values())
    for answer in ALERT_OF:
        assert wait_job(submit(youtube_link(media, answer)[0])).state == State.FAILED
    settled()
    assert {kind: counts(tg, dc, kind) for kind in before} == {
        kind: (on_telegram + 1, on_discord + 1) for kind, (on_telegram, on_discord) in before.items()}
    fixes = {"bot_check": "/cookies", "cookies_expired": "/cookies", "js_runtime": "pip install -r requirements.txt",
             "pot_provider": "POT_PROVIDER_URL", "no_format": 'pip install -U "yt-dlp[default]"'}
    assert {kind: fix in alerts.TEXT[kind] for kind, fix in fixes.items()} == dict.fromkeys(fixes, True)


def test_a_bot_that_was_down_delivers_the_alert_when_it_is_back(
        media: MediaServer, telegram: tuple[FakeTelegram, BotProcess],
        discord: tuple[FakeDiscord, BotProcess]) -> None:
    (tg, _), (dc, dc_bot) = telegram, discord
    tg_before, dc_before = new_interval(tg, dc, "bot_check")["bot_check"]
    dc_bot.kill()  # down, as after a crash
    assert wait_job(submit(youtube_link(media, "bot_check")[0])).error_code == Code.BOT_CHECK
    tg.wait_for(lambda f: len(telegram_alerts(f, "bot_check")) == tg_before + 1, timeout=30,
                what="the alert in telegram")
    assert counts(tg, dc, "bot_check") == (tg_before + 1, dc_before)
    dc_bot.start(discord_started(dc))
    settled()
    assert counts(tg, dc, "bot_check") == (tg_before + 1, dc_before + 1)
