"""One user's choices on one platform (/settings, /bitrate): one Redis hash, read tolerantly.

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
        if name == "language" and (value == "" or value in i18n.LANGUAGES):
            return replace(self, language=value)
        raise ValueError(f"{name}={value!r} is not a setting")


TITLE = "Your settings (tap to change):"
LOUDNESS_OFF = i18n.N_("Loudness off")
ASK_ALBUMS = i18n.N_("Ask before albums of over %(count)s tracks")  # ALBUM_CONFIRM


def choices(record: UserSettings, settings: Settings) -> list[list[tuple[str, str, str]]]:
    """The settings view both bots show, as rows of (field, value, label); the current choice is ticked.

    The loudness row offers the deployment's LOUDNESS too; the album row shows only where large albums
    ask at all.
    """
    def tick(on: bool, label: str) -> str:
        return f"✓ {label}" if on else label

    def toggle(name: str, on: bool, label: str) -> list[tuple[str, str, str]]:
        return [(name, "off" if on else "on", f"{label}: {'on' if on else 'off'}")]

    bitrates = [("bitrate", str(b), tick(record.bitrate == b, f"{b} kbit/s")) for b in BITRATES]
    # One more target at most (Discord: 5 buttons a row): the user's own if unusual, else the deployment's.
    extra = record.loudness if record.loudness not in LOUDNESS_TARGETS else settings.loudness
    targets = sorted({*LOUDNESS_TARGETS, *([extra] if extra is not None else [])}, reverse=True)
    levels = [("loudness", "off", tick(record.loudness is None, LOUDNESS_OFF))]
    levels += [("loudness", f"{t:g}", tick(record.loudness == t, f"{t:g} LUFS")) for t in targets]
    rows = [bitrates, levels, toggle("split_chapters", record.split_chapters, "Split chapters automatically")]
    if settings.playlist == "album" and settings.album_confirm > 0:
        rows.append(toggle("confirm_albums", record.confirm_albums,
                           ASK_ALBUMS % {"count": settings.album_confirm}))
    return rows


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

