"""Admin slash commands on Discord: the texts of bots/admin.py, answered ephemerally, admins only, in the admin's
language (their /language, else their Discord client's). Descriptions are message ids (N_): bots/discord_i18n.py
gives Discord their translations."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bots import admin
from common import i18n
from common.cookies import MAX_BYTES
from common.i18n import N_
from common.textlimits import DISCORD_CONTENT, cut

if TYPE_CHECKING:
    from bots.discord_bot import DiscordBot

COOKIES_HOW = N_("To replace %(file)s: /cookies file: with the new cookies.txt (Netscape format).")
NOT_ALLOWED = N_("Sorry, you're not allowed to do that: it is for the bot's admins only.")
BLOCK_LIMIT = DISCORD_CONTENT - 8  # a message, less the code fence


def block(text: str) -> str:
    """Plain text shown as it is: a code block that nothing inside can close."""
    text = cut(text.replace("```", "`\u200b``"), BLOCK_LIMIT)
    return f"```\n{text}\n```"


class PurgeButton(discord.ui.DynamicItem[discord.ui.Button], template=r"purge:(?P<answer>yes|no)"):
    """The confirmation under /purge."""

    def __init__(self, yes: bool, lang: i18n.Lang | None = None) -> None:
        """`lang`: the asking admin's, for the label (a press is handled without it)."""
        self.yes = yes
        lang = lang or i18n.get(i18n.SOURCE)
        super().__init__(discord.ui.Button(
            label=lang.gettext("Yes, purge") if yes else lang.gettext("No"),
            custom_id=f"purge:{'yes' if yes else 'no'}",
            style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> PurgeButton:
        return cls(match["answer"] == "yes")

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: DiscordBot = interaction.client  # type: ignore[assignment]
        _, lang = await bot.speaker(interaction)
        if not bot.is_admin(interaction.user.id):
            await interaction.response.send_message(lang.gettext(NOT_ALLOWED), ephemeral=True)
            return
        await interaction.response.defer()
        text = await bot.core.offload(admin.purge, lang) if self.yes else lang.gettext("Nothing was purged.")
        await interaction.edit_original_response(content=block(text), view=None)


class Admin(commands.Cog, name="Admin"):
    """/stats /job /dead /retry /cancel /purge /cookies /health for the IDs in DISCORD_ADMIN_IDS."""

    def __init__(self, bot: DiscordBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every command here: admins only (a refusal becomes CheckFailure, answered "not allowed")."""
        return self.bot.is_admin(interaction.user.id)

    @app_commands.command(name="stats", description=N_("Admins: workers, queues, outcomes, timings, disk, cache"))
    async def stats(self, interaction: discord.Interaction) -> None:
        """/stats."""
        await self._answer(interaction, admin.stats_text)

    @app_commands.command(name="job", description=N_("Admins: one job's record"))
    @app_commands.describe(job_id=N_("the job's id"))
    async def job(self, interaction: discord.Interaction, job_id: str) -> None:
        """/job <id>."""
        await self._answer(interaction, admin.job_text, job_id)

    @app_commands.command(name="dead", description=N_("Admins: the latest dead letters"))
    @app_commands.describe(count=N_("how many (1-50)"))
    async def dead(self, interaction: discord.Interaction, count: app_commands.Range[int, 1, 50] = 10) -> None:
        """/dead [count]."""
        await self._answer(interaction, admin.dead_text, count)

    @app_commands.command(name="retry", description=N_("Admins: run a failed job again"))
    @app_commands.describe(job_id=N_("the job's id"))
    async def retry(self, interaction: discord.Interaction, job_id: str) -> None:
        """/retry <id>."""
        await self._answer(interaction, admin.retry, job_id)

    @app_commands.command(name="cancel", description=N_("Admins: stop any job"))
    @app_commands.describe(job_id=N_("the job's id"))
    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        """/cancel <id>."""
        await self._answer(interaction, admin.cancel, job_id)

    @app_commands.command(name="health", description=N_("Admins: what YouTube downloads need, found or missing"))
    async def health(self, interaction: discord.Interaction) -> None:
        """/health: the doctor's report."""
        await self._answer(interaction, admin.health_text)

    @app_commands.command(name="purge", description=N_("Admins: empty the queues (asks first)"))
    async def purge(self, interaction: discord.Interaction) -> None:
        """/purge: the question, with Yes and No."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, lang = await self.bot.speaker(interaction)
        question = await self.bot.core.offload(admin.purge_question, lang)
        buttons = discord.ui.View(timeout=None)
        buttons.add_item(PurgeButton(True, lang))
        buttons.add_item(PurgeButton(False, lang))
        await interaction.followup.send(question, view=buttons, ephemeral=True)

    @app_commands.command(name="cookies",
                          description=N_("Admins: replace the YouTube cookies (cookies.txt), or see them"))
    @app_commands.describe(file=N_("cookies.txt in Netscape format; leave out to see the cookies in use"))
    async def cookies(self, interaction: discord.Interaction, file: discord.Attachment | None = None) -> None:
        """/cookies [file]: the attachment is only ever visible to the admin; so is the answer."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, lang = await self.bot.speaker(interaction)
        if file is None:
            text = await self.bot.core.offload(admin.cookies_text, COOKIES_HOW, lang)
        elif file.size > MAX_BYTES:  # not downloaded at all
            text = admin.cookies_too_large(lang)
        else:
            text = await self.bot.core.offload(admin.install_cookies, await file.read(), lang)
        await interaction.followup.send(block(text), ephemeral=True)

    async def _answer(self, interaction: discord.Interaction, text_of: Callable[..., str], *args: Any) -> None:
        """Defer at once (the texts read Redis and ask the workers), then answer only to the admin."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, lang = await self.bot.speaker(interaction)
        await interaction.followup.send(block(await self.bot.core.offload(text_of, *args, lang)), ephemeral=True)
