"""Languages on Discord and for admins: the commands' localised names and descriptions in the sync Discord
receives, an admin's answers and alerts in that admin's language (/cookies with its findings and dates too), the
doctor's report in an admin's language (its problems too).

The catalogs are made here from the project's own extraction (common/catalogs.py, with its keywords), every
message translated as "[ru] <English>" and so on, and read by the real discord.py bot running in this
process (the catalog folder is monkeypatched), against the fake Discord and a Redis key prefix of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.dates import format_date
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bots import discord_i18n
from bots.discord_bot import DiscordBot
from common import alerts, catalogs, context, i18n, usersettings
from common.redisio import run
from common.settings import get_settings
from common.usersettings import UserSettings
from tasks import doctor
from tests.conftest import use_redis
from tests.cookiefiles import write_cookies
from tests.fake_discord import FakeDiscord

GUILD, CHANNEL = 930, 931
RU_ADMIN, OTHER_ADMIN = 61, 62  # the first chose Russian with /language; the other chose nothing
TOKEN = "MTAwMg.discord-i18n-token.abcdefghijklmnopqrstuvwxyz"
# Discord's locales we speak, and the catalog each one reads.
SPOKEN = {"ru": "ru", "es-ES": "es", "es-419": "es", "pt-BR": "pt_BR", "id": "id", "tr": "tr"}
# Names the catalogs translate against Discord's rules (a space and capitals; a name another command has):
# the sync leaves them out, and it is accepted.
BAD_NAMES = {("ru", "stats"): "Статистика бота", ("tr", "retry"): "iptal", ("tr", "cancel"): "iptal"}
NAME = re.compile(r"[-_\w]{1,32}")  # Discord's ^[-_\p{L}\p{N}]{1,32}$: Python's \w is letters, digits and _


def name_in(code: str, name: str) -> str:
    if (code, name) in BAD_NAMES:
        return BAD_NAMES[code, name]
    return f"{name} ({code})" if " " in name else f"{name}-{code.lower()}"


def write_catalogs(folder: Path) -> None:
    """A catalog per language of what the project's extraction finds (common/catalogs.py, its keywords): every
    message "[code] English", every command name "name-code" (a menu's "Name (code)"), but for BAD_NAMES."""
    messages = catalogs.code_messages().values()
    for code in set(SPOKEN.values()):
        catalog = Catalog(locale=code, domain=i18n.DOMAIN)
        for message in messages:
            if isinstance(message.id, tuple | list):
                string: str | tuple[str, ...] = tuple(f"[{code}] {message.id[min(form, 1)]}"
                                                      for form in range(catalog.num_plurals))
            elif message.context == discord_i18n.CONTEXT:
                string = name_in(code, message.id)
            else:
                string = f"[{code}] {message.id}"
            catalog.add(message.id, string, context=message.context)
        target = folder / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
        target.parent.mkdir(parents=True)
        with target.open("wb") as file:
            write_po(file, catalog)


@pytest.fixture(scope="module")
def locales(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("locale")
    write_catalogs(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(i18n, "LOCALE_DIR", folder)
        i18n.get.cache_clear()
        yield folder
    i18n.get.cache_clear()


@pytest.fixture(scope="module")
def cookie_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file with a warning or two: readable by others, its sign-in expired two days ago."""
    return write_cookies(tmp_path_factory.mktemp("cookies") / "cookies.txt", expires=time.time() - 2 * 86400,
                         mode=0o644)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, channel_id=CHANNEL, token=TOKEN) as server, server.patch_discord_py():
        yield server


class InProcessBot:
    """The real DiscordBot on an event loop of its own, in this process (so it reads the monkeypatched catalogs)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="discord-bot", daemon=True)
        self.bot: DiscordBot | None = None
        self.running: Any = None

    def start(self) -> None:
        self.thread.start()
        self.bot = self.call(self._make())
        self.running = asyncio.run_coroutine_threadsafe(self.bot.start(TOKEN), self.loop)

    async def _make(self) -> DiscordBot:
        return DiscordBot(get_settings())

    async def _rest(self) -> None:
        """What a closed client leaves behind (discord.py's own waiters) ends before the loop does."""
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def call(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.bot is not None:
            self.call(self.bot.close())
            self.running.result(20)
        self.call(self._rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def bot(locales: Path, fake: FakeDiscord, test_env: dict[str, str], cookie_file: Path) -> Iterator[InProcessBot]:
    """Admins RU_ADMIN and OTHER_ADMIN; DEFAULT_LANGUAGE Turkish; a key prefix of its own (its alerts are ours)."""
    prefix = f"{test_env['KEY_PREFIX']}{uuid.uuid4().hex[:6]}:"
    env = {"DISCORD_TOKEN": TOKEN, "DISCORD_API_URL": fake.api_url, "DISCORD_GATEWAY_URL": fake.gateway_url,
           "DISCORD_GUILD_ID": str(GUILD), "DISCORD_ADMIN_IDS": f"{RU_ADMIN},{OTHER_ADMIN}", "DEFAULT_LANGUAGE": "tr",
           "KEY_PREFIX": prefix, "COOKIES_FILE": str(cookie_file)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        use_redis(test_env["REDIS_URL"], prefix)
        run(context.redis_client(), usersettings.save(context.keys(), "discord", RU_ADMIN, UserSettings(
            bitrate=192, split_chapters=False, language="ru")))
        runner = InProcessBot()
        try:
            runner.start()
            fake.wait_for(lambda: fake.commands and fake.identifies, timeout=20, what="the bot synced and online")
            yield runner
        finally:
            runner.stop()
            client = context.redis_client()
            doomed = list(client.scan_iter(f"{prefix}*"))
            if doomed:
                client.delete(*doomed)
    use_redis(test_env["REDIS_URL"], test_env["KEY_PREFIX"])


def test_every_command_and_option_is_localised_in_each_discord_locale_we_speak(fake: FakeDiscord,
                                                                              bot: InProcessBot) -> None:
    synced = fake.commands
    assert {c["name"] for c in synced} >= {"mp3", "settings", "stats", "cookies", "Convert to MP3"}
    for command in synced:
        expected_names = {locale: name_in(code, command["name"]) for locale, code in SPOKEN.items()
                          if (code, command["name"]) not in BAD_NAMES}
        if command["type"] == 3:  # a message menu: a name, no description
            assert command["name_localizations"] == expected_names
            continue
        assert command["description_localizations"] == {
            locale: f"[{code}] {command['description']}" for locale, code in SPOKEN.items()}, command["name"]
        if command["name"] not in ("retry", "cancel"):
            assert command["name_localizations"] == expected_names, command["name"]
        for option in command["options"]:
            assert option["description_localizations"] == {
                locale: f"[{code}] {option['description']}" for locale, code in SPOKEN.items()}, option["name"]
            assert option["name_localizations"] == {
                locale: name_in(code, option["name"]) for locale, code in SPOKEN.items()}, option["name"]
            for choice in option.get("choices", []):
                if choice["value"] in i18n.LANGUAGES:  # /language's: each language in its own name, everywhere
                    assert not choice.get("name_localizations"), choice
                    continue
                assert choice["name_localizations"] == {
                    locale: f"[{code}] {choice['name']}" for locale, code in SPOKEN.items()}


def test_names_keep_discords_rules_and_every_name_is_in_the_catalogs(fake: FakeDiscord, bot: InProcessBot) -> None:
    synced = fake.commands
    by_name = {c["name"]: c for c in synced}
    assert "ru" not in by_name["stats"]["name_localizations"]  # "Статистика бота": capitals and a space
    assert by_name["stats"]["name_localizations"]["tr"] == "stats-tr"
    # retry and cancel both "iptal" in Turkish: the first keeps it, the second is left in English
    assert [by_name[n]["name_localizations"].get("tr") for n in ("retry", "cancel")].count("iptal") == 1
    names = []
    for command in synced:
        if command["type"] == 1:
            names += [command["name"], *command["name_localizations"].values()]
            names += [n for o in command["options"] for n in (o["name"], *o.get("name_localizations", {}).values())]
    assert all(NAME.fullmatch(name) and name == name.lower() for name in names), names
    used = {c["name"] for c in synced} | {o["name"] for c in synced for o in c["options"]}
    assert used <= set(discord_i18n.NAMES), used - set(discord_i18n.NAMES)


def test_an_admin_gets_the_answers_in_their_own_language(fake: FakeDiscord, bot: InProcessBot) -> None:
    def ask(name: str, user: int, locale: str) -> dict[str, Any]:
        token = fake.slash_command(name, {}, user_id=user, channel_id=CHANNEL, locale=locale)
        return fake.wait_for(lambda: (m := fake.original(token)) and m["content"] and m, timeout=20,
                             what=f"/{name} for {user}")

    russian = ask("stats", RU_ADMIN, "en-US")["content"]  # their /language wins over their client's
    lines = russian.removeprefix("```\n").removesuffix("\n```").splitlines()
    assert lines[0] == "[ru] Workers: 0 online" and "[ru] Queues:" in lines
    assert any(line.startswith("  [ru] download: ") for line in lines)
    assert any(line.startswith("[ru] Disk: temp ") and " Б" in line for line in lines)  # Russian's unit
    spanish = ask("stats", OTHER_ADMIN, "es-ES")["content"]  # no choice of their own: their client's language
    assert "[es] Workers: 0 online" in spanish
    question = ask("purge", RU_ADMIN, "en-US")
    assert question["content"].startswith("[ru] Purge the queues?")
    assert {c["label"] for row in question["components"] for c in row["components"]} == {"[ru] Yes, purge", "[ru] No"}


def test_cookies_findings_in_an_admins_language(fake: FakeDiscord, bot: InProcessBot, cookie_file: Path) -> None:
    """/cookies: the file's summary and warnings in the admin's language, its dates as that language writes them."""
    token = fake.slash_command("cookies", {}, user_id=RU_ADMIN, channel_id=CHANNEL, locale="en-US")
    answer = fake.wait_for(lambda: (m := fake.original(token)) and m["content"] and m, timeout=20, what="/cookies")
    expired = dt.datetime.fromtimestamp(int(time.time() - 2 * 86400), dt.UTC).date()  # the earliest login cookie
    day = format_date(expired, format="medium", locale="ru")
    assert answer["content"].removeprefix("```\n").removesuffix("\n```").splitlines() == [
        f"[ru] {cookie_file}: 12 cookies, no usable YouTube login cookies, earliest expiry {day}",
        "  [ru] warning: [ru] readable by other users (mode 644); chmod 600 it",
        f"  [ru] warning: [ru] YouTube login cookies expired on {day}: refresh them with /cookies",
        f"[ru] To replace {cookie_file}: /cookies file: with the new cookies.txt (Netscape format).",
    ]
    assert day != format_date(expired, format="medium", locale="en")  # Russian's own date ("5 янв. 2026 г.")


def test_an_alert_reaches_each_admin_in_their_language(fake: FakeDiscord, bot: InProcessBot) -> None:
    assert alerts.raise_alert("bot_check")
    sentence = alerts.TEXT["bot_check"]

    def told(user: int) -> str | None:
        texts = [re.sub(r"\\(.)", r"\1", m["content"]) for m in fake.channel_messages(fake.dm_channel_id(user))]
        return next((t for t in texts if "ytmp3 needs you" in t), None)

    assert fake.wait_for(lambda: told(RU_ADMIN), timeout=20, what="the alert to the Russian admin") == \
        f"⚠️ [ru] ytmp3 needs you: [ru] {sentence}"
    # no /language, no client in a DM: DEFAULT_LANGUAGE
    assert fake.wait_for(lambda: told(OTHER_ADMIN), timeout=20, what="the alert to the other admin") == \
        f"⚠️ [tr] ytmp3 needs you: [tr] {sentence}"


def test_the_doctors_report_in_an_admins_language(locales: Path, test_env: dict[str, str], cookie_file: Path,
                                                  closed_port: int) -> None:
    """Headings, findings and problems translated (commands and settings in them as they are), the findings in one
    column; the terminal's report and the JSON stay English."""
    settings = get_settings().model_copy(update={"cookies_file": [str(cookie_file)],
                                                 "proxy_url": [f"http://127.0.0.1:{closed_port}"]})
    report = doctor.examine(settings, timeout=2, workers=False)
    english = doctor.render(report)
    russian = doctor.render(report, i18n.get("ru")).splitlines()
    assert english.splitlines()[2].startswith("JS runtime  ")  # the terminal's report is as it was
    assert russian[2].startswith("[ru] JS runtime  [ru] ") and russian[0].startswith("yt-dlp")
    column = len("[ru] JS runtime  ")
    assert all(line[column:].startswith("[ru] ") for line in russian if line.split()[0] in ("EJS", "ffmpeg", "Redis"))
    assert f"[ru] cookies{' ' * (column - len('[ru] cookies'))}[ru] {cookie_file}: 12 cookies, no usable" in russian[4]
    told = russian[russian.index(next(line for line in russian if re.fullmatch(r"\[ru\] \d+ problems?:", line))) + 1:]
    assert told and all(line.startswith("- [ru] ") for line in told)
    assert f"- [ru] proxy http://127.0.0.1:{closed_port} does not answer (Connection refused): check it, or take it " \
           "out of PROXY_URL" in told
    assert f"- [ru] cookies {cookie_file}: [ru] readable by other users (mode 644); chmod 600 it" in told
    as_json = report.as_json()
    assert f"proxy http://127.0.0.1:{closed_port} does not answer (Connection refused): check it, or take it out of " \
           "PROXY_URL" in as_json["problems"]
    assert as_json["cookies"][0]["summary"].startswith(f"{cookie_file}: 12 cookies, no usable YouTube login cookies")
