"""Discord's own localisation of our slash commands: their names, descriptions and choices from our catalogs.

When the commands are synced, discord.py asks the tree's Translator for every name, description and choice
in every Discord locale; we answer for the locales we have a catalog for. A description or a choice is the
catalog's translation of its English text (marked N_ where the command is written; a choice made from a
value carries its message id and values as `locale_str` extras). A name is looked up under the message
context "discord command" (NAMES below), so a command's name and the same word in a sentence can differ.

Discord refuses the whole sync over one bad entry, and then no command works: a translation that breaks
Discord's rules (or repeats a name already used beside it) is left out, and that locale sees the English.
"""

from __future__ import annotations

import logging
import unicodedata

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where
from discord.app_commands import TranslationContextTypes, locale_str

from common import i18n
from common.i18n import NC_

log = logging.getLogger(__name__)

CONTEXT = "discord command"
# The Discord locales we speak, and our catalog for each (Discord has no Persian).
LOCALES: dict[discord.Locale, str] = {
    discord.Locale.russian: "ru",
    discord.Locale.spain_spanish: "es",
    discord.Locale.latin_american_spanish: "es",
    discord.Locale.brazil_portuguese: "pt_BR",
    discord.Locale.indonesian: "id",
    discord.Locale.turkish: "tr",
}
NAME_MAX = 32
TEXT_MAX = 100  # a description or a choice's name
NAMES_AT = (Where.command_name, Where.group_name, Where.parameter_name)

# Every command's and option's name, for the catalogs: option names are Python parameters, which pybabel cannot
# see (tests/test_discord_i18n.py checks that every synced name is here). A translation must keep Discord's
# rules: lower case, letters, digits, - and _ only, at most 32; a message menu's name may have capitals and spaces.
NAMES = (
    NC_("discord command", "mp3"), NC_("discord command", "url"), NC_("discord command", "start"),
    NC_("discord command", "end"), NC_("discord command", "bitrate"), NC_("discord command", "split"),
    NC_("discord command", "tracks"),
    NC_("discord command", "Convert to MP3"),
    NC_("discord command", "settings"), NC_("discord command", "language"),
    NC_("discord command", "stats"), NC_("discord command", "job"), NC_("discord command", "job_id"),
    NC_("discord command", "dead"), NC_("discord command", "count"), NC_("discord command", "retry"),
    NC_("discord command", "cancel"), NC_("discord command", "health"), NC_("discord command", "purge"),
    NC_("discord command", "cookies"), NC_("discord command", "file"),
)


def valid_name(name: str) -> bool:
    """Discord's rule for a slash command's or an option's name (^[-_\\p{L}\\p{N}]{1,32}$, lower case)."""
    return 0 < len(name) <= NAME_MAX and name == name.lower() and all(
        char in "-_" or unicodedata.category(char)[0] in "LN" for char in name)


def valid_menu_name(name: str) -> bool:
    """A context menu's name: any case, spaces inside, at most 32."""
    return 0 < len(name) <= NAME_MAX and name == name.strip()


class CatalogTranslator(app_commands.Translator):
    """Names, descriptions and choices in the Discord locales we have a catalog for (`tree.set_translator`)."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str, str], str] = {}  # (locale, among, translated name) -> the English one

    async def translate(self, string: locale_str, locale: discord.Locale,
                        context: TranslationContextTypes) -> str | None:
        code = LOCALES.get(locale)
        if code is None:
            return None
        lang = i18n.get(code)
        if context.location in NAMES_AT:
            return self._name(lang, locale, string.message, context)
        msgid = string.extras.get("msgid", string.message)
        args = {name: value for name, value in string.extras.items() if name != "msgid"}
        text = lang.gettext(msgid, **args)
        if text == i18n.get(i18n.SOURCE).gettext(msgid, **args):  # not translated: Discord shows the English
            return None
        if not 0 < len(text) <= TEXT_MAX:
            log.warning("the %s translation of %r is longer than Discord's %d characters: left out", code, msgid,
                        TEXT_MAX)
            return None
        return text

    def _name(self, lang: i18n.Lang, locale: discord.Locale, name: str, context: TranslationContextTypes
              ) -> str | None:
        text = lang.pgettext(CONTEXT, name)
        if text == name:
            return None
        menu = isinstance(context.data, app_commands.ContextMenu)
        if not (valid_menu_name(text) if menu else valid_name(text)):
            log.warning("the %s name %r for %r breaks Discord's rules for names: left out", lang.code, text, name)
            return None
        # Names must differ among the commands (menus apart) and among one command's options, in every locale.
        among = f"options of /{context.data.command.qualified_name}" if context.location is Where.parameter_name \
            else "menus" if menu else "commands"
        owner = self._names.setdefault((locale.value, among, text), name)
        if owner != name:
            log.warning("the %s name %r for %r is %r's already, among the %s: left out", lang.code, text, name,
                        owner, among)
            return None
        return text
