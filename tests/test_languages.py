"""Both bots speak their user's language: the app's (Telegram's language_code, Discord's locale) without
asking, else the one chosen with /language. Real bot processes against the fake Telegram and Discord, the
real Redis and worker.

The catalogs are the project's own: a text is expected as common/i18n.py gives it, and must differ from the
English.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import context, i18n, usersettings
from common.usersettings import UserSettings
from tests.conftest import BotProcess
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.media import make_chapters
from tests.test_discord import EPHEMERAL, GUILD, wait_files
from tests.test_discord import TOKEN as DISCORD_TOKEN
from tests.test_discord import started as discord_started
from tests.test_telegram import CHAPTERS, answer_to, answers, keyboard, new_chat, unique, wait_audios
from tests.test_telegram import TOKEN as TELEGRAM_TOKEN
from tests.test_telegram import started as telegram_started

pytestmark = pytest.mark.usefixtures("worker")

HINT = "Send me a link to a video and I'll turn it into an MP3. /help tells more."
NOT_A_LINK = "That doesn't look like a link; try /mp3 url:https://…"
SAVED = "Done: I'll answer you in %(language)s."
SAVED_AUTO = "Done: I'll answer you in your app's language (now %(language)s)."
def translated(code: str, msgid: str, **args: Any) -> str:
    """`msgid` as the bots should say it in `code`, which is not the English."""
    text = i18n.get(code).gettext(msgid, **args)
    assert text != i18n.get("en").gettext(msgid, **args), f"{code} has no translation of {msgid!r}"
    return text


@pytest.fixture(scope="module")
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="module")
def tg_bot(tg: FakeTelegram, test_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": tg.api_url,
           "TELEGRAM_FILE_URL": tg.file_url}
    process = BotProcess("telegram", env, tmp_path_factory.mktemp("telegram-lang") / "bot.log")
    process.start(telegram_started(tg))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def dc() -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, token=DISCORD_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def dc_bot(dc: FakeDiscord, test_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    env = {**test_env, "DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": dc.api_url,
           "DISCORD_GATEWAY_URL": dc.gateway_url, "DISCORD_GUILD_ID": str(GUILD)}
    process = BotProcess("discord", env, tmp_path_factory.mktemp("discord-lang") / "bot.log")
    process.start(discord_started(dc))
    yield process
    process.stop()


def languages_asked(platform: str, user_id: int) -> list[str]:
    """The language of each request the user made, as its job's origins keep it."""
    redis = context.redis_client()
    found = []
    for key in redis.scan_iter(f"{context.keys().prefix}job:*:origins"):
        for raw in redis.lrange(key, 0, -1):
            origin = json.loads(raw)
            request = origin.get("request") or {}
            if origin.get("platform") == platform and request.get("user_id") == user_id:
                found.append(request.get("lang"))
    return found


def test_telegram_answers_in_the_apps_language_until_language_chooses_another(
        tg: FakeTelegram, tg_bot: BotProcess, media: Any) -> None:
    chat = user = new_chat()
    asked = tg.push_message(chat, user, "hello", language_code="ru")
    assert answer_to(tg, chat, asked) == translated("ru", HINT)
    tg.push_message(chat, user, unique(media.media_url("audio.m4a")), language_code="ru")
    wait_audios(tg, chat)
    assert languages_asked("telegram", user) == ["ru"]

    asked = tg.push_message(chat, user, "/language es", language_code="ru")
    assert answer_to(tg, chat, asked) == translated("es", SAVED, language="Español")
    asked = tg.push_message(chat, user, "hello", language_code="ru")
    assert answer_to(tg, chat, asked) == translated("es", HINT)
    asked = tg.push_message(chat, user, "/language klingon", language_code="ru")
    assert answer_to(tg, chat, asked) == usersettings.language_unknown("klingon", i18n.get("es"))

    # /language alone: every language in its own name as a button, the choice ticked; "Automatic" follows the app
    asked = tg.push_message(chat, user, "/language", language_code="ru")
    shown = tg.wait_for(lambda f: next((m for m in f.messages(chat) if m["message_id"] > asked
                                        and m.get("reply_markup")), None), timeout=10, what="the languages")
    es, ru = i18n.get("es"), i18n.get("ru")
    assert shown["text"] == usersettings.language_title(UserSettings(192, False, language="es"), es)
    buttons = keyboard(shown)
    assert {"✓ Español", "Русский", "English", "فارسی", es.gettext(usersettings.AUTOMATIC_LABEL)} <= set(buttons)
    automatic = buttons[es.gettext(usersettings.AUTOMATIC_LABEL)]
    assert "someone else's" in answers(tg, tg.push_callback(chat, user + 1, shown["message_id"], automatic))
    pressed = tg.push_callback(chat, user, shown["message_id"], automatic, language_code="ru")
    assert answers(tg, pressed) == translated("ru", SAVED_AUTO, language="Русский")
    title = usersettings.language_title(UserSettings(192, False, language=""), ru)
    edited = tg.wait_for(lambda f: (m := f.message(chat, shown["message_id"])) and m["text"] == title and m,
                         timeout=10, what="the languages edited in place")
    assert "✓ " + ru.gettext(usersettings.AUTOMATIC_LABEL) in keyboard(edited) and "Español" in keyboard(edited)
    asked = tg.push_message(chat, user, "hello", language_code="ru")
    assert answer_to(tg, chat, asked) == translated("ru", HINT)

    asked = tg.push_message(chat, user, "/help")  # an app in English, nothing chosen: English
    assert "/language" in answer_to(tg, chat, asked)
    [listed] = [c for c in tg.calls("setMyCommands") if not c.params.get("language_code")]
    commands = listed.params["commands"]
    assert "language" in [c["command"] for c in (json.loads(commands) if isinstance(commands, str) else commands)]


def test_a_split_pressed_in_telegram_speaks_the_pressers_language(tg: FakeTelegram, tg_bot: BotProcess,
                                                                  media: Any, media_dir: Path) -> None:
    """A button makes a new request (Split, Retry): it speaks the language of the app it was pressed in."""
    make_chapters(media_dir / "chapters-lang.mka", CHAPTERS, title="Chapter Test")
    chat = user = new_chat()
    page = media.register_page(f"chapters-{uuid.uuid4().hex[:6]}", file="chapters-lang.mka", title="Chapter Test")
    asked = tg.push_message(chat, user, page, language_code="ru")
    wait_audios(tg, chat)
    done = tg.wait_for(lambda f: (m := f.message(chat, asked + 1)) and "✂" in json.dumps(m.get("reply_markup"),
                                                                                          ensure_ascii=False) and m,
                       timeout=30, what="the finished status with its split button")
    [[split]] = done["reply_markup"]["inline_keyboard"]
    ru = i18n.get("ru")
    assert split["text"] == "✂ " + ru.ngettext("Split into %(n)s track", "Split into %(n)s tracks", 3)
    assert split["text"] != "✂ Split into 3 tracks"
    tg.push_callback(chat, user, done["message_id"], split["callback_data"], language_code="ru")
    wait_audios(tg, chat, count=4)
    assert sorted(languages_asked("telegram", user)) == ["ru", "ru"]  # the link and the split


def test_discord_answers_in_the_apps_language_until_language_chooses_another(
        dc: FakeDiscord, dc_bot: BotProcess, media: Any) -> None:
    channel, user = new_chat(), new_chat()

    def answer(token: str) -> dict:
        return dc.wait_for(lambda: dc.original(token), timeout=10, what="the answer")

    shown = answer(dc.slash_command("mp3", {"url": "no link here"}, user_id=user, channel_id=channel, locale="ru"))
    assert shown["content"] == translated("ru", NOT_A_LINK) and shown["flags"] & EPHEMERAL
    token = dc.slash_command("mp3", {"url": unique(media.media_url("audio.m4a"))}, user_id=user,
                             channel_id=channel, locale="ru")
    wait_files(dc, token=token)
    assert languages_asked("discord", user) == ["ru"]

    saved = answer(dc.slash_command("language", {"language": "es"}, user_id=user, channel_id=channel, locale="ru"))
    assert saved["content"] == translated("es", SAVED, language="Español") and saved["flags"] & EPHEMERAL
    shown = answer(dc.slash_command("mp3", {"url": "no link here"}, user_id=user, channel_id=channel, locale="ru"))
    assert shown["content"] == translated("es", NOT_A_LINK)
    refused = answer(dc.slash_command("language", {"language": "xx"}, user_id=user, channel_id=channel))
    assert refused["content"] == usersettings.language_unknown("xx", i18n.get("es"))

    # no option: the language now and the choices as buttons only the user sees
    es, ru = i18n.get("es"), i18n.get("ru")
    shown = answer(dc.slash_command("language", user_id=user, channel_id=channel, locale="ru"))
    assert shown["content"] == usersettings.language_title(UserSettings(192, False, language="es"), es)
    assert shown["flags"] & EPHEMERAL

    def ids(message: dict) -> dict[str, str]:
        return {c["label"]: c["custom_id"] for row in message["components"] for c in row["components"]}

    assert {"✓ Español", "Русский", "English", es.gettext(usersettings.AUTOMATIC_LABEL)} <= set(ids(shown))
    dc.component_click(shown["id"], ids(shown)["Русский"], user_id=user)
    title = usersettings.language_title(UserSettings(192, False, language="ru"), ru)
    edited = dc.wait_for(lambda: (m := dc.message(shown["id"]))["content"] == title and m, timeout=10,
                         what="the languages edited in place")
    assert "✓ Русский" in ids(edited)
    shown = answer(dc.slash_command("mp3", {"url": "no link here"}, user_id=user, channel_id=channel))
    assert shown["content"] == translated("ru", NOT_A_LINK)  # chosen, whatever the app says
    assert "language" in [c["name"] for c in dc.commands]
