"""/cookies in both bots: admins replace the cookie file from chat, answered privately, never echoing a value.

Each bot is the real process against its fake server, with COOKIES_FILE pointing at a file of this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bots import admin
from common import i18n
from common.settings import get_settings
from tests.conftest import BotProcess
from tests.cookiefiles import SECRET, cookies_text, write_cookies
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.test_discord import CHANNEL, GUILD
from tests.test_discord import TOKEN as DISCORD_TOKEN
from tests.test_discord import started as discord_started
from tests.test_telegram import TOKEN as TELEGRAM_TOKEN
from tests.test_telegram import started as telegram_started

ADMIN, STRANGER, GROUP = 42, 7, -500
EPHEMERAL = 64
OLD = cookies_text(login=False)  # what the operator had: no sign-in, readable by others
NEW = cookies_text().encode()  # a signed-in export: 2 + 10 cookies
EN = i18n.get(i18n.SOURCE)  # the helpers of bots/admin.py answer in the language they are given
BROKEN = b'[{"domain": ".youtube.com", "name": "SID", "value": "' + SECRET.encode() + b'"}]'


@pytest.fixture(scope="module")
def cookie_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cookies") / "cookies.txt"


@pytest.fixture
def old_file(cookie_file: Path) -> Path:
    """Each test starts from the operator's old file and no backup."""
    cookie_file.with_name("cookies.txt.bak").unlink(missing_ok=True)
    return write_cookies(cookie_file, OLD, mode=0o644)


def start_bot(platform: str, env: dict[str, str], log: Path, started: Callable[[], bool],
              cookie_file: Path) -> BotProcess:
    write_cookies(cookie_file, OLD, mode=0o644)
    process = BotProcess(platform, {**env, "COOKIES_FILE": str(cookie_file)}, log)
    process.start(started)
    return process


def assert_start_warnings(bot: BotProcess, cookie_file: Path) -> None:
    text = bot.log.read_text()
    logger = f"WARNING bots.{bot.platform}: COOKIES_FILE {cookie_file}"
    assert f"{logger}: readable by other users (mode 644); chmod 600 it\n" in text
    assert f"{logger}: no YouTube login cookies (LOGIN_INFO, SAPISID...): age-restricted videos will fail\n" in text


def assert_unchanged(cookie_file: Path) -> None:
    assert cookie_file.read_text() == OLD and not cookie_file.with_name("cookies.txt.bak").exists()


def assert_installed(cookie_file: Path, answer: str) -> None:
    assert cookie_file.read_bytes() == NEW and cookie_file.stat().st_mode & 0o777 == 0o600
    backup = cookie_file.with_name("cookies.txt.bak")
    assert backup.read_text() == OLD and backup.stat().st_mode & 0o777 == 0o600
    assert f"Installed. {cookie_file}: 12 cookies, YouTube login cookies present, earliest expiry " in answer
    assert f"The previous file is kept as {backup}." in answer
    assert SECRET not in answer


# -- Telegram

@pytest.fixture(scope="module")
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def tg_bot(tg: FakeTelegram, test_env: dict[str, str], cookie_file: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": tg.api_url,
           "TELEGRAM_FILE_URL": tg.file_url, "TELEGRAM_ADMIN_IDS": str(ADMIN)}
    process = start_bot("telegram", env, tmp_path_factory.mktemp("telegram") / "bot.log", telegram_started(tg),
                        cookie_file)
    yield process
    process.stop()
    assert SECRET not in process.log.read_text()
    sent = [json.dumps(call.params) for call in tg.calls() if call.method.startswith("send")]
    assert sent and not any(SECRET in text for text in sent)  # no message of the bot holds a value


def tg_answer(fake: FakeTelegram, chat: int, after: int, containing: str) -> str:
    """The bot's first message in `chat` after message `after` that contains `containing`."""
    def first(f: FakeTelegram) -> str | None:
        texts = [m["text"] for m in f.messages(chat) if m["message_id"] > after and containing in m.get("text", "")]
        return texts[0] if texts else None

    return fake.wait_for(first, timeout=15, what=f"an answer containing {containing!r}")


def test_telegram_start_warns_about_the_cookie_file(tg_bot: BotProcess, cookie_file: Path) -> None:
    assert_start_warnings(tg_bot, cookie_file)


def test_telegram_admin_replaces_the_file(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    sent = tg.push_document(ADMIN, ADMIN, NEW, "cookies.txt", caption="/cookies")
    answer = tg_answer(tg, ADMIN, sent, "Installed")
    assert_installed(old_file, answer)
    assert "I deleted your message with the file." in answer
    assert tg.message(ADMIN, sent) is None  # the credentials do not stay in the chat


def test_telegram_admin_replies_cookies_to_a_file(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    document = tg.push_document(ADMIN, ADMIN, NEW, "cookies.txt")
    asked = tg.push_message(ADMIN, ADMIN, "/cookies", reply_to_message_id=document)
    assert_installed(old_file, tg_answer(tg, ADMIN, asked, "Installed"))
    assert tg.message(ADMIN, document) is None


def test_telegram_refuses_others(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    sent = tg.push_document(STRANGER, STRANGER, NEW, "cookies.txt", caption="/cookies")
    assert "admins only" in tg_answer(tg, STRANGER, sent, "admins")
    asked = tg.push_message(STRANGER, STRANGER, "/cookies")
    assert "admins only" in tg_answer(tg, STRANGER, asked, "admins")
    assert_unchanged(old_file)


def test_telegram_refuses_a_broken_file(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    sent = tg.push_document(ADMIN, ADMIN, BROKEN, "cookies.json", caption="/cookies")
    answer = tg_answer(tg, ADMIN, sent, "Not installed")
    assert answer.startswith("Not installed: the file is JSON, not a Netscape cookie file; export it again as "
                             "cookies.txt (Netscape format). The cookies in use are unchanged.")
    assert_unchanged(old_file)


def test_telegram_refuses_a_large_file_unread(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    sent = tg.push_document(ADMIN, ADMIN, NEW + b"#" * (1024 * 1024), "cookies.txt", caption="/cookies")
    assert "Not installed: a cookies.txt is well under 1 MB" in tg_answer(tg, ADMIN, sent, "Not installed")
    document = tg.message(ADMIN, sent, include_deleted=True)["document"]  # type: ignore[index]
    assert not [call for call in tg.calls("getFile") if call.params["file_id"] == document["file_id"]]
    assert_unchanged(old_file)


@pytest.mark.parametrize("can_delete", [True, False])
def test_telegram_cookies_in_a_group_are_taken_down_not_installed(
        tg: FakeTelegram, tg_bot: BotProcess, old_file: Path, can_delete: bool) -> None:
    if not can_delete:
        tg.no_delete_rights.add(GROUP)
    try:
        before = max([m["message_id"] for m in tg.messages(ADMIN)] or [0])
        sent = tg.push_document(GROUP, ADMIN, NEW, "cookies.txt", caption="/cookies@ytmp3_test_bot",
                                chat_type="group")
        answer = tg_answer(tg, ADMIN, before, "cookies sent in a group")  # in the private chat, not the group
    finally:
        tg.no_delete_rights.discard(GROUP)
    assert ("I deleted the message." if can_delete else "Please delete the message (I could not).") in answer
    assert (tg.message(GROUP, sent) is None) == can_delete
    assert tg.messages(GROUP) == []  # the bot said nothing in the group
    assert_unchanged(old_file)


def test_telegram_cookies_alone_shows_the_file(tg: FakeTelegram, tg_bot: BotProcess, old_file: Path) -> None:
    asked = tg.push_message(ADMIN, ADMIN, "/cookies")
    answer = tg_answer(tg, ADMIN, asked, "To replace")
    assert answer.splitlines() == [
        f"{old_file}: 2 cookies, no usable YouTube login cookies",
        "  warning: readable by other users (mode 644); chmod 600 it",
        "  warning: no YouTube login cookies (LOGIN_INFO, SAPISID...): age-restricted videos will fail",
        f"To replace {old_file}: send the new cookies.txt to me in this private chat as a file with the caption "
        "/cookies.",
    ]


# -- Discord

@pytest.fixture(scope="module")
def dc() -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, channel_id=CHANNEL, token=DISCORD_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def dc_bot(dc: FakeDiscord, test_env: dict[str, str], cookie_file: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    env = {**test_env, "DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": dc.api_url,
           "DISCORD_GATEWAY_URL": dc.gateway_url, "DISCORD_GUILD_ID": str(GUILD), "DISCORD_ADMIN_IDS": str(ADMIN)}
    process = start_bot("discord", env, tmp_path_factory.mktemp("discord") / "bot.log", discord_started(dc),
                        cookie_file)
    yield process
    process.stop()
    assert SECRET not in process.log.read_text()
    sent = [json.dumps(call.json) for call in dc.calls() if call.method in ("POST", "PATCH")]
    assert sent and not any(SECRET in text for text in sent)  # no message of the bot holds a value


def dc_answer(fake: FakeDiscord, token: str, containing: str) -> str:
    answer = fake.wait_for(lambda: (m := fake.original(token)) and containing in m["content"] and m,
                           timeout=15, what=f"an answer containing {containing!r}")
    assert answer["flags"] & EPHEMERAL
    return str(answer["content"])


def test_discord_start_warns_about_the_cookie_file(dc_bot: BotProcess, cookie_file: Path) -> None:
    assert_start_warnings(dc_bot, cookie_file)


def test_discord_admin_replaces_the_file(dc: FakeDiscord, dc_bot: BotProcess, old_file: Path) -> None:
    token = dc.slash_command("cookies", {"file": ("cookies.txt", NEW)}, user_id=ADMIN)
    assert_installed(old_file, dc_answer(dc, token, "Installed"))


def test_discord_refuses_others(dc: FakeDiscord, dc_bot: BotProcess, old_file: Path) -> None:
    token = dc.slash_command("cookies", {"file": ("cookies.txt", NEW)}, user_id=STRANGER)
    assert "not allowed" in dc_answer(dc, token, "not allowed")
    assert_unchanged(old_file)


def test_discord_refuses_a_broken_file(dc: FakeDiscord, dc_bot: BotProcess, old_file: Path) -> None:
    token = dc.slash_command("cookies", {"file": ("cookies.json", BROKEN)}, user_id=ADMIN)
    assert "Not installed: the file is JSON, not a Netscape cookie file" in dc_answer(dc, token, "Not installed")
    assert_unchanged(old_file)


def test_discord_cookies_alone_shows_the_file(dc: FakeDiscord, dc_bot: BotProcess, old_file: Path) -> None:
    token = dc.slash_command("cookies", {}, user_id=ADMIN)
    answer = dc_answer(dc, token, "To replace")
    assert f"{old_file}: 2 cookies, no usable YouTube login cookies" in answer
    assert f"To replace {old_file}: /cookies file: with the new cookies.txt" in answer


# -- shared

def test_without_cookies_file_the_answer_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOKIES_FILE", "")
    get_settings.cache_clear()
    try:
        assert admin.install_cookies(NEW, EN) == admin.cookies_text("x", EN) == admin.NO_COOKIES_FILE
    finally:
        get_settings.cache_clear()
    assert admin.NO_COOKIES_FILE.startswith("No COOKIES_FILE is set. Set it to a path the bots and the workers")


def test_an_unwritable_place_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cookies.txt").mkdir()  # a folder where the file should be
    monkeypatch.setenv("COOKIES_FILE", str(tmp_path / "cookies.txt"))
    get_settings.cache_clear()
    try:
        answer = admin.install_cookies(NEW, EN)
    finally:
        get_settings.cache_clear()
    assert answer == f"Could not write {tmp_path / 'cookies.txt'} (Is a directory); nothing was changed."
