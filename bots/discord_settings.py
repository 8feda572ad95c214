"""/settings and /language on Discord: ephemeral messages of buttons, edited in place as they are pressed."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from common import i18n, usersettings
from common.i18n import N_
from common.settings import Settings
from common.usersettings import UserSettings


class SettingButton(discord.ui.DynamicItem[discord.ui.Button],
                    template=r"set:(?P<owner>\d+):(?P<name>\w+):(?P<value>[\w.-]+)"):
    """One choice of one user's settings; the owner is in the custom id, so it works across restarts."""

    def __init__(self, owner: int, name: str, value: str, label: str = "") -> None:
        self.owner, self.name, self.value = owner, name, value
        style = discord.ButtonStyle.primary if label.startswith("✓") else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label or value, style=style,
                                           custom_id=f"set:{owner}:{name}:{value}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> SettingButton:
        return cls(int(match["owner"]), match["name"], match["value"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        core = bot.core  # type: ignore[attr-defined]
        answer, record = await core.press_setting(str(self.owner), interaction.user.id, self.name, self.value)
        if record is None:
            _, lang = await bot.speaker(interaction)  # type: ignore[attr-defined]
            await interaction.response.send_message(lang.gettext(answer), ephemeral=True)
            return
        lang = bot.lang_of(record, interaction)  # type: ignore[attr-defined]  # a new language speaks at once
        if self.name == "language":
            await interaction.response.edit_message(content=usersettings.language_title(record, lang),
                                                    view=languages_view(interaction.user.id, record, lang))
        else:
            await interaction.response.edit_message(content=lang.gettext(usersettings.TITLE),
                                                    view=settings_view(interaction.user.id, record, core.settings,
                                                                       lang))


def view_of(user_id: int, rows: list[list[tuple[str, str, str]]]) -> discord.ui.View:
    """usersettings' rows of (field, value, label) as buttons that name their owner."""
    view = discord.ui.View(timeout=None)
    for row, choices in enumerate(rows):
        for name, value, label in choices:
            item = SettingButton(user_id, name, value, label)
            item.item.row = row
            view.add_item(item)
    return view


def settings_view(user_id: int, record: UserSettings, settings: Settings, lang: i18n.Lang) -> discord.ui.View:
    return view_of(user_id, usersettings.choices(record, settings, lang))


def languages_view(user_id: int, record: UserSettings, lang: i18n.Lang) -> discord.ui.View:
    return view_of(user_id, usersettings.language_choices(record, lang))


LANGUAGE_CHOICES = [app_commands.Choice(name=usersettings.AUTOMATIC_LABEL, value=usersettings.AUTOMATIC),
                    *(app_commands.Choice(name=name, value=code) for code, name in i18n.LANGUAGES.items())]


class SettingsCommand(commands.Cog, name="Settings"):
    def __init__(self, bot: Any) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description=N_("Your MP3 quality, loudness, chapters and albums"))
    async def settings(self, interaction: discord.Interaction) -> None:
        """/settings: only the user sees them (ephemeral), only the user can press them."""
        record, lang = await self.bot.speaker(interaction)
        view = settings_view(interaction.user.id, record, self.bot.core.settings, lang)
        await interaction.response.send_message(lang.gettext(usersettings.TITLE), view=view, ephemeral=True)

    @app_commands.command(name="language", description=N_("The language I answer you in"))
    @app_commands.describe(language=N_("Automatic follows your Discord's language"))
    @app_commands.choices(language=LANGUAGE_CHOICES)
    async def language(self, interaction: discord.Interaction,
                       language: app_commands.Choice[str] | None = None) -> None:
        """/language language:<one>: set at once. Alone: the language now and every choice as buttons
        (ephemeral, like /settings)."""
        record, lang = await self.bot.speaker(interaction)
        if language is None:
            await interaction.response.send_message(usersettings.language_title(record, lang),
                                                    view=languages_view(interaction.user.id, record, lang),
                                                    ephemeral=True)
            return
        record = await self.bot.core.change_setting(interaction.user.id, "language", language.value)
        saved = usersettings.language_saved(record, self.bot.lang_of(record, interaction))
        await interaction.response.send_message(saved, ephemeral=True)
