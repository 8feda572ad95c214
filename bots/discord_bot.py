"""The Discord bot: discord.py app commands wired to the shared core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands
from discord.ext import commands

from bots import admin, discord_i18n, startup
from bots.core import BotCore, Request, Where
from bots.discord_adapter import DiscordAdapter, JobButton
from bots.discord_admin import NOT_ALLOWED, Admin, PurgeButton
from bots.discord_settings import SettingButton, SettingsCommand
from bots.filecache import FileCache
from common import cookies, i18n, usersettings
from common.albums import EntriesError, entries_in, picked_entries
from common.clip import RangeError, links_with_ranges, make_clip, parse_time
from common.errors import sentences
from common.i18n import N_
from common.links import find_links
from common.logs import setup_logging
from common.render import Button
from common.settings import Settings, get_settings
from common.usersettings import BITRATES, UserSettings

log = logging.getLogger("bots.discord")

CACHE_FOLDER = "discord-cache"
SORRY = N_("Something went wrong on our side; please try again.")
# Discord (or the way to it) does not answer: worth trying again later.
UNREACHABLE = (OSError, aiohttp.ClientError, asyncio.TimeoutError, discord.GatewayNotFound, discord.DiscordServerError)


def point_at(settings: Settings) -> None:
    """Send discord.py's REST calls (webhooks and interactions too) and its gateway where settings say."""
    discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def where_of(interaction: discord.Interaction, response: Any) -> Where:
    """What the adapter needs to answer this interaction later, also after a restart (JSON)."""
    message_id = getattr(response, "message_id", None) or (await interaction.original_response()).id
    return {"app_id": interaction.application_id, "token": interaction.token, "message_id": message_id,
            "created": interaction.created_at.timestamp()}


class DiscordBot(commands.Bot):
    def __init__(self, settings: Settings) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # never joins voice: no warning
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents(guilds=True),
                         help_command=None,
                         allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True))
        self.settings = settings
        self.files = FileCache(settings.storage_dir / CACHE_FOLDER, settings.discord_cache_bytes)
        self.adapter = DiscordAdapter(self, self.files, settings.discord_admin_ids, settings.default_language)
        self.core = BotCore(self.adapter, settings)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton, PurgeButton, SettingButton)
        await self.add_cog(Links(self))
        await self.add_cog(Admin(self))
        await self.add_cog(SettingsCommand(self))
        self.tree.error(self.command_failed)
        await self.tree.set_translator(discord_i18n.CatalogTranslator())  # localised names and descriptions
        guild = discord.Object(self.settings.discord_guild_id) if self.settings.discord_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        log.info("%d commands synced %s", len(synced), f"to guild {guild.id}" if guild else "globally")
        self.core.start()
        self.core.loops.spawn("cache", self._keep_cache())

    async def _keep_cache(self) -> None:
        """Hold the MP3 cache within its cap (a smaller cap may have been set since the last run)."""
        await asyncio.to_thread(self.files.evict)

    async def close(self) -> None:
        await self.core.stop()
        await super().close()

    def is_admin(self, user_id: int | None) -> bool:
        return admin.is_admin(user_id, self.settings.discord_admin_ids)

    async def speaker(self, interaction: discord.Interaction) -> tuple[UserSettings, i18n.Lang]:
        """Who is asking: their settings, and the language to answer them in (their /language, else their
        Discord's)."""
        record = await self.core.user_settings(interaction.user.id)
        return record, self.lang_of(record, interaction)

    def lang_of(self, record: UserSettings, interaction: discord.Interaction) -> i18n.Lang:
        return i18n.get(self.core.language(record, str(interaction.locale)))

    async def job_button(self, interaction: discord.Interaction, action: Button, job_id: str) -> None:
        """Cancel, Retry and Split on a status message: the requester or an admin, judged from our records."""
        user_id = interaction.user.id
        if action in (Button.CANCEL, Button.START):
            await interaction.response.defer(ephemeral=True, thinking=True)
            req = self._request_on(interaction.message.id if interaction.message else 0)
            act = self.core.cancel if action == Button.CANCEL else self.core.start_album
            answer = await act(req, job_id, user_id, self.is_admin(user_id))
            _, lang = await self.speaker(interaction)
            await interaction.followup.send(lang.gettext(answer), ephemeral=True)
            return

        async def accepted() -> Where:
            return await where_of(interaction, await interaction.response.defer(thinking=True))

        again = self.core.split if action == Button.SPLIT else self.core.retry
        refusal = await again(job_id, user_id, self.is_admin(user_id), interaction.channel_id or 0, accepted,
                              str(interaction.locale))
        if refusal:
            _, lang = await self.speaker(interaction)
            await interaction.response.send_message(lang.gettext(refusal), ephemeral=True)

    def _request_on(self, message_id: int) -> Request | None:
        """The request whose status is (or was) this message."""
        for req in self.core.requests.values():
            if message_id in (req.status.get("message_id"), *req.status.get("earlier", [])):
                return req
        return None

    async def command_failed(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """User mistakes get a sentence; everything else is logged and gets an apology."""
        _, lang = await self.speaker(interaction)
        if isinstance(error, app_commands.CheckFailure):
            text = lang.gettext(NOT_ALLOWED)
        elif isinstance(error, app_commands.TransformerError) and _named(interaction, "language"):
            said = discord.utils.escape_mentions(discord.utils.escape_markdown(str(error.value)))
            text = usersettings.language_unknown(said, lang)  # not one of its choices: said, not logged
        else:
            log.error("command %s failed", interaction.command.name if interaction.command else "?", exc_info=error)
            text = lang.gettext(SORRY)
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)


class Links(commands.Cog, name="Links"):
    """/mp3 and the message menu "Convert to MP3": each one small, the core does the work."""

    def __init__(self, bot: DiscordBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Convert to MP3", callback=self.convert_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="mp3", description=N_("Turn a video link into an MP3"))
    @app_commands.describe(url=N_("a link to a video (YouTube and many other sites)"), bitrate=N_("MP3 quality"),
                           split=N_("one MP3 per chapter, when the video has chapters"),
                           start=N_("only from here: 1:30, 1:02:03 or seconds (90)"),
                           end=N_("only up to here: 4:05, 1:02:03 or seconds (245)"),
                           tracks=N_("of a playlist, only these entries: 2-5, 1-10"))
    @app_commands.choices(bitrate=[app_commands.Choice(name=app_commands.locale_str(
        f"{b} kbit/s", msgid=N_("%(bitrate)s kbit/s"), bitrate=b), value=b) for b in BITRATES])
    async def mp3(self, interaction: discord.Interaction, url: str, start: str | None = None,
                  end: str | None = None, bitrate: app_commands.Choice[int] | None = None,
                  split: bool | None = None, tracks: str | None = None) -> None:
        """/mp3 url:<link> [start] [end] [bitrate] [split] [tracks] (a range after the link in url: works too,
        and picks a playlist's entries as on Telegram)."""
        try:
            asked = links_with_ranges(url, strict=True) or [(link, None) for link in find_links(_schemeless(url))]
            if start or end:
                asked = [(link, make_clip(parse_time(start) if start else None, parse_time(end) if end else None))
                         for link, _ in asked]
            items = picked_entries(tracks) if tracks is not None else entries_in(url.split())
        except RangeError as error:
            _, lang = await self.bot.speaker(interaction)
            await interaction.response.send_message(sentences(lang, error.said), ephemeral=True)
            return
        except EntriesError as error:
            _, lang = await self.bot.speaker(interaction)
            await interaction.response.send_message(lang.say(error.msg), ephemeral=True)
            return
        if not asked:
            _, lang = await self.bot.speaker(interaction)
            await interaction.response.send_message(lang.gettext("That doesn't look like a link; try /mp3 "
                                                                 "url:https://…"), ephemeral=True)
            return
        link, wanted = asked[0]
        await self._take(interaction, link, bitrate.value if bitrate else None, split, wanted.key if wanted else "",
                         items)

    async def convert_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Convert to MP3 (message menu): the first link in the message."""
        text = " ".join([message.content, *(embed.url or "" for embed in message.embeds)])
        links = find_links(text)
        if not links:
            _, lang = await self.bot.speaker(interaction)
            await interaction.response.send_message(lang.gettext("I found no link in that message."), ephemeral=True)
            return
        await self._take(interaction, links[0], None, None)

    async def _take(self, interaction: discord.Interaction, url: str, bitrate: int | None,
                    split: bool | None, clip: str = "", items: str = "") -> None:
        """The options given win over the user's /settings; `items`: a playlist's entries ("2-5")."""
        response = await interaction.response.defer(thinking=True)  # at once: Discord waits 3 s
        chosen, lang = await self.bot.speaker(interaction)
        req = self.bot.core.new_request(url, interaction.user.id, interaction.channel_id or 0, chosen,
                                        interaction.filesize_limit, await where_of(interaction, response), clip,
                                        bitrate=bitrate, split=split, lang=lang.code)
        req.items = items
        await self.bot.core.take(req)


def _named(interaction: discord.Interaction, name: str) -> bool:
    return interaction.command is not None and interaction.command.name == name


def _schemeless(text: str) -> str:
    """`youtu.be/x` as typed: the link with https:// in front; anything else: nothing."""
    text = text.strip()
    return f"https://{text}" if "." in text and not any(c.isspace() for c in text) else ""


def main() -> int:
    settings = get_settings()
    setup_logging("discord", secrets=[settings.discord_token])
    if not settings.discord_token:
        log.error("DISCORD_TOKEN is not set")
        return 2
    cookies.log_problems(settings.cookies_file, log)
    if broken := startup.languages(log):
        return broken
    point_at(settings)
    logging.getLogger("discord.client").addFilter(startup.OneLine((*UNREACHABLE, discord.ConnectionClosed)))
    token = settings.discord_token.get_secret_value()
    return startup.keep_trying(
        lambda: DiscordBot(settings).run(token, log_handler=None),  # a closed client cannot start again: a new one
        refused=(discord.LoginFailure,), unreachable=UNREACHABLE,
        what=f"Discord at {settings.discord_api_url}",
        fix="copy the bot token from the Discord developer portal into DISCORD_TOKEN", log=log)
