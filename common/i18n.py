"""The user's language: gettext catalogs (managed with Babel), plural forms, numbers and sizes by locale.

Every text a chat user (or an admin, in chat) reads is an English message id, marked where it is written:
`lang.gettext("…")` / `lang.ngettext("…", "…", n)` where the reader's language is at hand, `N_("…")` for a
text named now and said later (a constant, an error code's sentence), `Msg(N_("…"), name=value)` for a text
with values that travels as JSON (a job's error hint, written by a worker, read by every requester's bot in
their own language). Placeholders are Python's `%(name)s`, which Babel checks in every translation.

The catalogs are the `.po` files under common/locale, compiled in memory the first time a language is
used (no compiled files in the repository, nothing to build before starting). English is the source.
README "Translations" says how to extract, update and check them with pybabel.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.units import format_compound_unit, format_unit

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"
SOURCE = "en"
# Language code -> its own name (what /language lists). Codes as gettext names them (pt_BR, not pt-BR).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "ru": "Русский",
    "es": "Español",
    "pt_BR": "Português (Brasil)",
    "id": "Bahasa Indonesia",
    "tr": "Türkçe",
    "fa": "فارسی",
}
RTL = frozenset({"fa"})
# Unicode isolates: a left-to-right run (a title, a link, a bar with its percent) inside right-to-left text
# keeps its own order and does not reorder what is around it (UAX #9).
FSI, PDI = "\u2068", "\u2069"


def N_(message: str) -> str:
    """Mark a text for the catalogs; it is translated later, where the reader is known."""
    return message


def NC_(context: str, message: str) -> str:
    """N_ under a message context (`lang.pgettext(context, message)` says it): the same English word used as
    something else, e.g. a Discord command's name, which has rules of its own. pybabel needs `-k NC_:1c,2`."""
    return message


def pick(*wanted: str | None, default: str = SOURCE) -> str:
    """The first of `wanted` that we speak, each as a user or a client names it ("pt-BR", "pt_br", "pt",
    "es-419", "en-US", "RU"); else `default`. A language we have only in one form (Portuguese as Brazil's)
    stands for all of its forms."""
    for code in wanted:
        if not code:
            continue
        base, _, region = code.replace("-", "_").partition("_")
        full = f"{base.lower()}_{region.upper()}" if region else base.lower()
        if full in LANGUAGES:
            return full
        forms = [known for known in LANGUAGES if known.split("_")[0] == base.lower()]
        if forms:
            return forms[0]
    return default


# A Msg: a clause said in the same language; a list: clauses said one after another ("a; b; c")
Arg: TypeAlias = "str | int | float | dict[str, float] | dict[str, str] | Msg | list[Msg]"


def size(count: float) -> dict[str, float]:
    """A byte count as a `Msg` argument: shown as "1.5 MB" in the reader's own way."""
    return {"bytes": float(count)}


def duration(seconds: float) -> dict[str, float]:
    """Seconds as a `Msg` argument: shown as a clock, "4:05" or "1:02:03"."""
    return {"seconds": float(seconds)}


def speed(rate: float) -> dict[str, float]:
    """Bytes per second as a `Msg` argument: shown as "1.5 MB/s" in the reader's own way."""
    return {"bytes_per_second": float(rate)}


def ltr(text: str) -> dict[str, str]:
    """Left-to-right text as a `Msg` argument (a range, what a user typed): isolated in right-to-left languages."""
    return {"ltr": text}


def date(day: dt.date) -> dict[str, float]:
    """A calendar day as a `Msg` argument: shown as the reader's language writes dates ("Jan 5, 2026")."""
    return {"day": float(day.toordinal())}


@dataclass(frozen=True)
class Msg:
    """A text to be said later, in whoever reads it's language; JSON-safe (a job stores it)."""

    id: str
    args: Mapping[str, Arg] = field(default_factory=dict)
    plural: str = ""  # a text with plural forms: its plural id; args["n"] picks the form

    def __init__(self, id: str, **args: Arg) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "plural", "")

    @classmethod
    def ngettext(cls, singular: str, plural: str, n: int, **args: Arg) -> Msg:
        """A text with plural forms ("%(n)s try" / "%(n)s tries"), said later; pybabel finds it by this name."""
        msg = cls(singular, n=n, **args)
        object.__setattr__(msg, "plural", plural)
        return msg

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Arg) -> Any:
            if isinstance(value, list):
                return [item.to_dict() for item in value]
            return value.to_dict() if isinstance(value, Msg) else value

        args = {name: plain(value) for name, value in self.args.items()}
        return {"id": self.id, "args": args, **({"plural": self.plural} if self.plural else {})}

    @classmethod
    def load(cls, data: Any) -> Msg | None:
        """A stored Msg, read tolerantly: None when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return None
        args = data.get("args")
        args = {name: _loaded(value) for name, value in args.items()} if isinstance(args, dict) else {}
        plural = data.get("plural")
        if isinstance(plural, str) and plural and isinstance(args.get("n"), int):
            return cls.ngettext(data["id"], plural, **args)
        return cls(data["id"], **args)

    def english(self) -> str:
        """For logs, the dead-letter list and the terminal."""
        return get(SOURCE).say(self)


def _loaded(value: Any) -> Any:
    """A stored argument: clauses back into Msgs (what is not one is left out), the rest as it is."""
    if isinstance(value, list):
        return [msg for msg in map(Msg.load, value) if msg is not None]
    return Msg.load(value) or value if isinstance(value, dict) and "id" in value else value


class Lang:
    """One language: its catalog, its plural rule, its numbers; `rtl` and `ltr()` for right-to-left ones."""

    def __init__(self, code: str, translations: gettext.NullTranslations) -> None:
        self.code = code
        self.locale = Locale.parse(code)
        self.rtl = code in RTL
        self._t = translations
        self.messages = len([key for key in getattr(translations, "_catalog", {}) if key])  # translated ids

    def gettext(self, message: str, **args: Arg) -> str:
        """`message` in this language, with `args` put in (numbers and sizes as this language writes them)."""
        return self._fill(self._t.gettext(message), args)

    def ngettext(self, singular: str, plural: str, n: int, **args: Arg) -> str:
        """The form for `n` ("1 track", "5 tracks", and the languages with more forms); `%(n)s` is n."""
        return self._fill(self._t.ngettext(singular, plural, n), {"n": n, **args})

    def pgettext(self, context: str, message: str, **args: Arg) -> str:
        """`message` as meant in `context` (see NC_)."""
        return self._fill(self._t.pgettext(context, message), args)

    def say(self, msg: Msg) -> str:
        if msg.plural:
            args = dict(msg.args)
            n = args.pop("n")
            return self.ngettext(msg.id, msg.plural, int(n) if isinstance(n, int | float | str) else 0, **args)
        return self.gettext(msg.id, **msg.args)

    def _fill(self, text: str, args: Mapping[str, Arg]) -> str:
        if not args:
            return text
        return text % {name: self.format(value) for name, value in args.items()}

    def format(self, value: Arg) -> str:
        if isinstance(value, Msg):
            return self.say(value)
        if isinstance(value, list):
            return "; ".join(self.say(msg) for msg in value)
        if isinstance(value, dict):
            if "ltr" in value:
                return self.ltr(str(value["ltr"]))
            if "bytes" in value:
                return self.size(float(value["bytes"]))
            if "seconds" in value:
                return self.duration(float(value["seconds"]))
            if "bytes_per_second" in value:
                return self.speed(float(value["bytes_per_second"]))
            if "day" in value:
                return self.date(dt.date.fromordinal(int(value["day"])))
            return ""
        if isinstance(value, str):
            return str(value)
        return self.number(value)

    def number(self, value: float, digits: int = 0) -> str:
        return format_decimal(round(value, digits), format=f"#,##0.{'0' * digits}" if digits else "#,##0",
                              locale=self.locale)

    def size(self, count: float) -> str:
        """Bytes in B, KB, MB or GB (binary steps, as the bot has always counted)."""
        unit, amount = _unit(count)
        return format_unit(round(amount, 1 if unit != "byte" else 0), f"digital-{unit}", length="short",
                           locale=self.locale, format="#,##0.#")

    def speed(self, rate: float) -> str:
        """Bytes per second, as "1.5 MB/s"."""
        unit, amount = _unit(rate)
        text = format_compound_unit(round(amount, 1), f"digital-{unit}", denominator_unit="duration-second",
                                    length="short", locale=self.locale, format="#,##0.#")
        return text or self.size(rate) + "/s"

    def duration(self, seconds: float) -> str:
        """A clock, "4:05" or "1:02:03": the same in every language we speak."""
        seconds = int(seconds)
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

    def date(self, day: dt.date) -> str:
        """A calendar day as this language writes it: "Jan 5, 2026", "5 янв. 2026 г."."""
        return format_date(day, format="medium", locale=self.locale)

    def percent(self, percent: float) -> str:
        """A whole percent, "42%" ("%42" in Turkish, "42 %" in Russian and Spanish)."""
        return format_percent(round(percent) / 100, locale=self.locale)

    def ltr(self, text: str) -> str:
        """Left-to-right text (a title, a link, a file name, a bar) kept whole inside a right-to-left message.

        First-strong isolation: a Latin title reads left to right, a Persian one right to left, and neither
        turns the sentence around it."""
        return f"{FSI}{text}{PDI}" if self.rtl and text else text


def _unit(count: float) -> tuple[str, float]:
    for unit in ("byte", "kilobyte", "megabyte"):
        if count < 1024:
            return unit, count
        count /= 1024
    return "gigabyte", count


@cache
def get(code: str) -> Lang:
    """The language `code` (one of LANGUAGES; anything else is English), its catalog compiled on first use."""
    code = pick(code)
    path = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if code == SOURCE or not path.is_file():
        return Lang(code, gettext.NullTranslations())
    return Lang(code, compile_po(path.read_bytes(), code))


def load_all() -> dict[str, int]:
    """Compile every catalog now (a bot's start): the messages each language has; ValueError naming a catalog
    that can't be read, so a broken translation stops the start, not a user's request later."""
    counts = {}
    for code in LANGUAGES:
        try:
            lang = get(code)
        except Exception as error:  # read_po's and gettext's errors: a syntax error, a bad plural header
            raise ValueError(f"the {code} catalog can't be read: {error}") from error
        counts[code] = lang.messages
    return counts


def compile_po(data: bytes, code: str) -> gettext.GNUTranslations:
    """A .po file compiled in memory, as `pybabel compile` would write it (fuzzy entries left out)."""
    catalog = read_po(io.BytesIO(data), locale=code, domain=DOMAIN, abort_invalid=True)
    mo = io.BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def placeholders(text: str) -> list[str]:
    """The `%(name)s` placeholders of a text, sorted (a translation must have the same)."""
    return sorted(_PLACEHOLDER.findall(text))
