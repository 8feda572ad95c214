"""/settings on Discord: an ephemeral message of buttons, edited in place as they are pressed."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from common import usersettings
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
        core = interaction.client.core  # type: ignore[attr-defined]
        answer, record = await core.press_setting(str(self.owner), interaction.user.id, self.name, self.value)
        if record is None:
            await interaction.response.send_message(answer, ephemeral=True)
        else:
            await interaction.response.edit_message(content=usersettings.TITLE,
                                                    view=view_of(interaction.user.id, record, core.settings))


def view_of(user_id: int, record: UserSettings, settings: Settings) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for row, choices in enumerate(usersettings.choices(record, settings)):
        for name, value, label in choices:
            item = SettingButton(user_id, name, value, label)
            item.item.row = row
            view.add_item(item)
    return view


class SettingsCommand(commands.Cog, name="Settings"):
    def __init__(self, bot: Any) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description=N_("Your MP3 quality, loudness, chapters and albums"))
    async def settings(self, interaction: discord.Interaction) -> None:
        """/settings: only the user sees them (ephemeral), only the user can press them."""
        record = await self.bot.core.user_settings(interaction.user.id)
        view = view_of(interaction.user.id, record, self.bot.core.settings)
        await interaction.response.send_message(usersettings.TITLE, view=view, ephemeral=True)
