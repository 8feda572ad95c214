"""One user's choices on one platform (/settings, /bitrate): one Redis hash, read tolerantly.

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
from common.settings import Settings

BITRATES = (128, 192, 320)
RECORD = "settings"  # keys.user(platform, user, RECORD): the hash
OLD_BITRATE = "bitrate"  # keys.user(platform, user, OLD_BITRATE): the string /bitrate wrote before


@dataclass(frozen=True)
class UserSettings:
    bitrate: int
    split_chapters: bool  # a source with chapters comes as one MP3 per chapter without asking
    language: str = ""  # chosen with /language (common/i18n.py code); "": the client's, else DEFAULT_LANGUAGE

    @classmethod
    def defaults(cls, settings: Settings) -> UserSettings:
        return cls(bitrate=settings.mp3_bitrate, split_chapters=settings.split_chapters)

    def changed(self, name: str, value: str) -> UserSettings:
        """This record with one field set from text (a button's or a command's); ValueError if not allowed."""
        if name == "bitrate" and value.isdigit() and int(value) in BITRATES:
            return replace(self, bitrate=int(value))
        if name == "split_chapters" and value in ("on", "off"):
            return replace(self, split_chapters=value == "on")
        if name == "language" and (value == "" or value in i18n.LANGUAGES):
            return replace(self, language=value)
        raise ValueError(f"{name}={value!r} is not a setting")


TITLE = "Your settings (tap to change):"


def choices(record: UserSettings) -> list[list[tuple[str, str, str]]]:
    """The settings view both bots show, as rows of (field, value, label); the current choice is ticked."""
    def tick(on: bool, label: str) -> str:
        return f"✓ {label}" if on else label

    bitrates = [("bitrate", str(b), tick(record.bitrate == b, f"{b} kbit/s")) for b in BITRATES]
    split = record.split_chapters
    return [bitrates, [("split_chapters", "off" if split else "on",
                        f"Split chapters automatically: {'on' if split else 'off'}")]]


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
    mapping = {"bitrate": str(record.bitrate), "split_chapters": "on" if record.split_chapters else "off",
               "language": record.language}

    def queue(pipe: Any) -> None:
        pipe.hset(keys.user(platform, user_id, RECORD), mapping=mapping)
        pipe.delete(keys.user(platform, user_id, OLD_BITRATE))

    yield Batch(queue)


def change(keys: Keys, settings: Settings, platform: str, user_id: int, name: str, value: str) -> Plan[UserSettings]:
    """Set one field (ValueError if it is not a setting) and return the whole record as saved."""
    record = (yield from load(keys, settings, platform, user_id)).changed(name, value)
    yield from save(keys, platform, user_id, record)
    return record

