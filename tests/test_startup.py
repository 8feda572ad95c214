"""Start-up that explains itself: a refused token is one line and an exit that `up` does not restart; an API that
does not answer is one line per try with its delay, never a traceback."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bots import up
from common.settings import get_settings
from tests.conftest import ROOT, BotProcess, wait_until
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram

TELEGRAM_TOKEN = "123456789:TEST-token-abcdefghijklmnopqrstuvwxyz"
WRONG_TELEGRAM = "987654321:WRONG-token-abcdefghijklmnopqrstuvwxy"
DISCORD_TOKEN = "MTAwMA.discord-test-token.abcdefghijklmnopqrstuvwxyz"
WRONG_DISCORD = "MTAwMQ.wrong-discord-token.abcdefghijklmnopqrstuvwxyz"


def run_bot(platform: str, env: dict[str, str]) -> tuple[int, list[str]]:
    result = subprocess.run([sys.executable, "-m", "bots", platform], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).splitlines()


def test_a_refused_telegram_token_is_one_line_and_a_stop(test_env: dict[str, str]) -> None:
    with FakeTelegram(token=TELEGRAM_TOKEN) as fake:
        code, lines = run_bot("telegram", {**test_env, "TELEGRAM_TOKEN": WRONG_TELEGRAM,
                                           "TELEGRAM_API_URL": fake.api_url, "TELEGRAM_FILE_URL": fake.file_url})
        assert [call.method for call in fake.calls()] == ["getMe"]  # asked once, never again
    assert code == os.EX_CONFIG
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"ERROR bots.telegram: the Telegram Bot API at {fake.api_url} refused the token "
                             "(InvalidToken: The token `***` was rejected by the server.): put the token "
                             "@BotFather gave you into TELEGRAM_TOKEN. Not trying again.")


def test_a_refused_discord_token_is_one_line_and_a_stop(test_env: dict[str, str]) -> None:
    with FakeDiscord(token=DISCORD_TOKEN) as fake:
        code, lines = run_bot("discord", {**test_env, "DISCORD_TOKEN": WRONG_DISCORD, "DISCORD_API_URL": fake.api_url,
                                          "DISCORD_GATEWAY_URL": fake.gateway_url})
        assert not fake.identifies  # it never went on to the gateway
    assert code == os.EX_CONFIG
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"ERROR bots.discord: Discord at {fake.api_url} refused the token (LoginFailure: "
                             "Improper token has been passed.): copy the bot token from the Discord developer portal "
                             "into DISCORD_TOKEN. Not trying again.")
    assert WRONG_DISCORD not in lines[0]


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_an_api_that_does_not_answer_is_one_line_per_try(test_env: dict[str, str], closed_port: int, platform: str,
                                                         tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    env = {"telegram": {"TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": f"{base}/bot",
                        "TELEGRAM_FILE_URL": f"{base}/file/bot"},
           "discord": {"DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": f"{base}/api/v10",
                       "DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{closed_port}/"}}[platform]
    bot = BotProcess(platform, {**test_env, **env}, tmp_path / "bot.log")
    bot.start(lambda: "trying again in 4 s" in bot.log.read_text(), timeout=60)
    bot.stop()
    lines = bot.log.read_text().splitlines()
    what = f"the Telegram Bot API at {base}/bot" if platform == "telegram" else f"Discord at {base}/api/v10"
    tries = [line for line in lines if f"WARNING bots.{platform}: {what} does not answer (" in line]
    assert [re.search(r"trying again in (\d+) s$", line).group(1) for line in tries][:3] == ["1", "2", "4"]
    assert not [line for line in lines if line not in tries and line.strip()], lines  # nothing else: no traceback


def test_a_lost_discord_gateway_is_one_line_per_reconnection(test_env: dict[str, str], tmp_path: Path) -> None:
    with FakeDiscord(token=DISCORD_TOKEN) as fake:
        # Keys of its own: a bot on the run's keys would take up the requests other tests' Discord bots left behind.
        bot = BotProcess("discord", {**test_env, "KEY_PREFIX": f"{test_env['KEY_PREFIX']}{tmp_path.name}:",
                                     "DISCORD_TOKEN": DISCORD_TOKEN, "DISCORD_API_URL": fake.api_url,
                                     "DISCORD_GATEWAY_URL": fake.gateway_url}, tmp_path / "bot.log")
        try:
            bot.start(lambda: fake.identifies, timeout=60)
            connects = len(fake.gateway_connects)
            fake.inject_error(r"^/(gateway/?)?$", 503, times=2)  # the gateway is down for two tries
            fake.drop_gateway()
            wait_until(lambda: len(fake.gateway_connects) > connects, timeout=60, what="the reconnection")
        finally:
            bot.stop()
    tries = re.findall(r"ERROR discord.client: Attempting a reconnect in \d+\.\d\ds \((\w+): .+\)$",
                       bot.log.read_text(), re.M)
    assert tries == ["WSServerHandshakeError", "WSServerHandshakeError"]
    assert "Traceback" not in bot.log.read_text()


def test_a_lost_telegram_api_is_one_line_per_poll(test_env: dict[str, str], tmp_path: Path) -> None:
    fake = FakeTelegram().start()
    bot = BotProcess("telegram", {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_URL": fake.api_url,
                                  "TELEGRAM_FILE_URL": fake.file_url}, tmp_path / "bot.log")
    try:
        bot.start(lambda: fake.calls("getUpdates"), timeout=60)
        fake.stop()
        growing = "(polling again with a growing delay, up to 30 s)"
        wait_until(lambda: bot.log.read_text().count(growing) >= 2, timeout=60,
                   what=lambda: f"two failed polls:\n{bot.log.read_text()}")
    finally:
        bot.stop()
    assert "Traceback" not in bot.log.read_text()


def test_up_does_not_start_again_a_bot_whose_token_was_refused(test_env: dict[str, str]) -> None:
    out = io.StringIO()
    launcher = up.Launcher(dict(os.environ), get_settings(), up.Output(out))
    part = up.Part("telegram", [sys.executable, "-c", f"raise SystemExit({os.EX_CONFIG})"])
    launcher.parts = [part]
    launcher.start(part)
    assert part.proc is not None
    part.proc.wait(30)
    for _ in range(3):
        launcher.look_after(part)
    assert part.proc is None
    assert out.getvalue().splitlines() == [
        "[up] telegram stopped: it refused its configuration (its last line says why); fix it, then start again"]


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_a_broken_catalog_stops_the_start_in_one_line(test_env: dict[str, str], tmp_path: Path, platform: str) -> None:
    """The catalogs are compiled as a bot starts: a translation that can't be read stops it before any link."""
    po = tmp_path / "ru" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid "Cancelled."\nmsgid "Done."\nmsgstr "Готово."\n')  # a msgstr lost in an edit
    env = {**test_env, "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "DISCORD_TOKEN": DISCORD_TOKEN,
           "TELEGRAM_API_URL": "http://127.0.0.1:9/bot", "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
           # the test-only shim: the bot reads its catalogs from this folder (tests/localedir/sitecustomize.py)
           "TEST_LOCALE_DIR": str(tmp_path), "PYTHONPATH": f"{ROOT / 'tests' / 'localedir'}{os.pathsep}{ROOT}"}
    code, lines = run_bot(platform, env)
    assert code == os.EX_CONFIG
    assert len(lines) == 1, lines
    assert re.search(rf"ERROR bots\.{platform}: the ru catalog can't be read: .+\. Not starting\.$", lines[0])
