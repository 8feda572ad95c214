"""One user's choices on one platform (/settings, /bitrate, /language): one Redis hash, read tolerantly.

Each choice travels with the user's requests (bots/core.py `Core.new_request`) into their jobs: the
bitrate, chapter splitting, the loudness target, and whether a large album waits for a yes.

Defaults come from the deployment's settings; a field that is missing, unknown or garbled reads as
its default, so a record written by another version never stops a request. Before /settings the
bitrate lived in a key of its own ('bitrate'): it is still read when the hash has none, and the
first save moves it into the hash.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from common import i18n
from common.i18n import N_
from common.keys import Keys
from common.redisio import Batch, Plan, text
from common.settings import Settings, loudness_target

BITRATES = (128, 192, 320)
LOUDNESS_TARGETS = (-14.0, -16.0, -23.0)  # LUFS: streaming services, a quieter master, EBU R128 broadcast
RECORD = "settings"  # keys.user(platform, user, RECORD): the hash
OLD_BITRATE = "bitrate"  # keys.user(platform, user, OLD_BITRATE): the string /bitrate wrote before


@dataclass(frozen=True)
class UserSettings:
    bitrate: int
    split_chapters: bool  # a source with chapters comes as one MP3 per chapter without asking
    loudness: float | None = None  # the MP3s' LUFS target; None: as loud as the source
    confirm_albums: bool = True  # an album of more than ALBUM_CONFIRM tracks waits for the user's Start
    language: str = ""  # chosen with /language (common/i18n.py code); "": the client's, else DEFAULT_LANGUAGE

    @classmethod
    def defaults(cls, settings: Settings) -> UserSettings:
        return cls(bitrate=settings.mp3_bitrate, split_chapters=settings.split_chapters, loudness=settings.loudness,
                   confirm_albums=settings.album_confirm > 0)

    def changed(self, name: str, value: str) -> UserSettings:
        """This record with one field set from text (a button's or a command's); ValueError if not allowed."""
        if name == "bitrate" and value.isdigit() and int(value) in BITRATES:
            return replace(self, bitrate=int(value))
        if name == "split_chapters" and value in ("on", "off"):
            return replace(self, split_chapters=value == "on")
        if name == "confirm_albums" and value in ("on", "off"):
            return replace(self, confirm_albums=value == "on")
        if name == "loudness":  # "off" or any target LOUDNESS could be (the deployment's may not be a button)
            return replace(self, loudness=loudness_target(value))
        if name == "language" and (value in ("", AUTOMATIC) or value in i18n.LANGUAGES):
            return replace(self, language="" if value == AUTOMATIC else value)
        raise ValueError(f"{name}={value!r} is not a setting")


TITLE = N_("Your settings (tap to change):")
AUTOMATIC = "auto"  # /language's word (and button value) for "follow the app's language", stored as ""
# i18n: /language's button (and Discord choice) for answering in the language the user's app is set to
AUTOMATIC_LABEL = N_("Automatic")
WORD_LIMIT = 32  # characters of an unknown language's name said back
LANGUAGES_PER_ROW = 2  # a language's own name can be long ("Português (Brasil)"): two fit a phone's row


def _tick(on: bool, label: str) -> str:
    return f"✓ {label}" if on else label


def choices(record: UserSettings, settings: Settings, lang: i18n.Lang) -> list[list[tuple[str, str, str]]]:
    """The settings view both bots show, as rows of (field, value, label) in `lang`; the current choice is
    ticked.

    The loudness row offers the deployment's LOUDNESS too; the album row shows only where large albums
    ask at all.
    """
    def toggle(name: str, on: bool, label: str) -> list[tuple[str, str, str]]:
        return [(name, "off" if on else "on", label)]

    bitrates = [("bitrate", str(b), _tick(record.bitrate == b, lang.gettext("%(rate)s kbit/s", rate=b)))
                for b in BITRATES]
    # One more target at most (Discord: 5 buttons a row): the user's own if unusual, else the deployment's.
    extra = record.loudness if record.loudness not in LOUDNESS_TARGETS else settings.loudness
    targets = sorted({*LOUDNESS_TARGETS, *([extra] if extra is not None else [])}, reverse=True)
    levels = [("loudness", "off", _tick(record.loudness is None, lang.gettext("Loudness off")))]
    levels += [("loudness", f"{t:g}", _tick(record.loudness == t, lang.gettext("%(lufs)s LUFS", lufs=format(t, "g"))))
               for t in targets]
    split = record.split_chapters
    rows = [bitrates, levels, toggle("split_chapters", split, lang.gettext("Split chapters automatically: on") if split
                                     else lang.gettext("Split chapters automatically: off"))]
    if settings.playlist == "album" and settings.album_confirm > 0:
        asks, count = record.confirm_albums, settings.album_confirm
        rows.append(toggle("confirm_albums", asks, lang.ngettext(
            "Ask before albums of over %(n)s track: on", "Ask before albums of over %(n)s tracks: on", count)
            if asks else lang.ngettext(
            "Ask before albums of over %(n)s track: off", "Ask before albums of over %(n)s tracks: off", count)))
    return rows


def language_title(record: UserSettings, lang: i18n.Lang) -> str:
    """What /language says above its buttons: the language the user is answered in now (`lang`)."""
    name = lang.ltr(i18n.LANGUAGES[lang.code])
    if record.language:
        return lang.gettext("I answer you in %(language)s. Choose another:", language=name)
    return lang.gettext("I answer you in your app's language (now %(language)s). Choose one:", language=name)


def language_saved(record: UserSettings, lang: i18n.Lang) -> str:
    """The answer to a new choice, in the language now chosen (`lang`)."""
    name = lang.ltr(i18n.LANGUAGES[lang.code])
    if record.language:
        return lang.gettext("Done: I'll answer you in %(language)s.", language=name)
    return lang.gettext("Done: I'll answer you in your app's language (now %(language)s).", language=name)


def language_unknown(word: str, lang: i18n.Lang) -> str:
    """The answer to a language we don't speak: what we do."""
    codes = ", ".join([*i18n.LANGUAGES, AUTOMATIC])
    return lang.gettext("I don't know the language “%(language)s”. Send /language alone to pick one from a "
                        "list, or /language with one of: %(codes)s.", language=word[:WORD_LIMIT],
                        codes=lang.ltr(codes))


def language_choices(record: UserSettings, lang: i18n.Lang) -> list[list[tuple[str, str, str]]]:
    """/language's buttons, as `choices` gives them: "Automatic" (follow the app), then every language in
    its own name; the user's choice ticked. Their field is "language", so a press saves like a setting's."""
    options = [(AUTOMATIC, _tick(not record.language, lang.gettext(AUTOMATIC_LABEL)))]
    options += [(code, _tick(record.language == code, name)) for code, name in i18n.LANGUAGES.items()]
    buttons = [("language", value, label) for value, label in options]
    return [buttons[i:i + LANGUAGES_PER_ROW] for i in range(0, len(buttons), LANGUAGES_PER_ROW)]


def language_code(word: str) -> str | None:
    """A language as a user types it after /language ("es", "pt-BR", "Español", "auto"): its code, "" to
    follow the app, None when we don't speak it."""
    word = word.strip()
    if word.casefold() in (AUTOMATIC, "automatic"):
        return ""
    named = next((code for code, name in i18n.LANGUAGES.items() if name.casefold() == word.casefold()), None)
    return named or i18n.pick(word, default="") or None


def _parsed(base: UserSettings, raw: dict[Any, Any], old_bitrate: Any) -> UserSettings:
    fields = {text(k): text(v) for k, v in raw.items()}
    record = base
    if old_bitrate is not None and "bitrate" not in fields:
        fields["bitrate"] = text(old_bitrate)
    for name, value in fields.items():
        try:
            record = record.changed(name, value)
        except ValueError:
            continue  # unknown or garbled: the default stands
    return record


def load(keys: Keys, settings: Settings, platform: str, user_id: int) -> Plan[UserSettings]:
    raw, old = yield Batch(lambda pipe: (pipe.hgetall(keys.user(platform, user_id, RECORD)),
                                         pipe.get(keys.user(platform, user_id, OLD_BITRATE))), atomic=False)
    return _parsed(UserSettings.defaults(settings), raw or {}, old)


def save(keys: Keys, platform: str, user_id: int, record: UserSettings) -> Plan[None]:
    """The whole record into the hash; the old bitrate key is gone from then on."""
    def on(value: bool) -> str:
        return "on" if value else "off"

    mapping = {"bitrate": str(record.bitrate), "split_chapters": on(record.split_chapters),
               "loudness": "off" if record.loudness is None else f"{record.loudness:g}",
               "confirm_albums": on(record.confirm_albums), "language": record.language}

    def queue(pipe: Any) -> None:
        pipe.hset(keys.user(platform, user_id, RECORD), mapping=mapping)
        pipe.delete(keys.user(platform, user_id, OLD_BITRATE))

    yield Batch(queue)


def change(keys: Keys, settings: Settings, platform: str, user_id: int, name: str, value: str) -> Plan[UserSettings]:
    """Set one field (ValueError if it is not a setting) and return the whole record as saved."""
    record = (yield from load(keys, settings, platform, user_id)).changed(name, value)
    yield from save(keys, platform, user_id, record)
    return record

