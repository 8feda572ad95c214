"""Upkeep of the message catalogs, with Babel's own commands: `python -m common.catalogs extract|update|check`
(and `init LANG` for a new language; `check LANG` for one). README "Translations" walks through it.

`check` is what the tests hold every catalog to: each message the code marks is there, translated (every
plural form), not fuzzy, with the same placeholders, markup and line breaks as the English.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import CommandLineInterface, parse_keywords, parse_mapping_cfg
from babel.messages.pofile import read_po

from common.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, SOURCE, placeholders

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
MAPPING = ROOT / "babel.cfg"
# Keywords beyond Babel's own (N_, gettext, ngettext, pgettext...): NC_ is N_ under a message context (i18n.NC_).
# babel.cfg cannot hold them; a pybabel command line needs them as -k flags.
KEYWORDS = ["NC_:1c,2"]
EXTRACT = ["extract", "-F", str(MAPPING), *(f"-k{keyword}" for keyword in KEYWORDS), "--no-location", "--sort-output",
           "--no-wrap", "-c", "i18n:", "--project", "ytmp3-bot", "-o", str(TEMPLATE), str(ROOT)]
UPDATE = ["update", "-i", str(TEMPLATE), "-d", str(LOCALE_DIR), "-D", DOMAIN, "--no-wrap", "--ignore-obsolete"]
# What must read the same in a translation: the HTML tags Telegram knows (not a "<link>" in a usage text: a word the
# translator may translate), markdown bold, line breaks
_MARKUP = re.compile(r"</?(?:b|strong|i|em|u|ins|s|strike|del|a|code|pre|blockquote|tg-spoiler)\b[^>]*>|\*\*|\n")


def translated_languages() -> list[str]:
    return [code for code in LANGUAGES if code != SOURCE]


def path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def code_messages() -> dict[tuple[str, str | None], Message]:
    """Every message the code marks, as pybabel extract finds it (keyed by id and context)."""
    with MAPPING.open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found: dict[tuple[str, str | None], Message] = {}
    for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords={**DEFAULT_KEYWORDS, **parse_keywords(KEYWORDS)}):
        msgid = message if isinstance(message, str) else tuple(message)
        key = msgid if isinstance(msgid, str) else msgid[0]
        found[(key, context)] = Message(msgid, context=context)
    return found


def load(code: str) -> Catalog:
    with path(code).open("rb") as po:
        return read_po(po, locale=code, domain=DOMAIN)


def problems(code: str, wanted: dict[tuple[str, str | None], Message] | None = None) -> list[str]:
    """What is wrong with one language's catalog; [] when it is complete and sound."""
    if not path(code).is_file():
        return [f"{code}: no catalog at {path(code).relative_to(ROOT)}"]
    catalog = load(code)
    found = []
    for (msgid, context), source in sorted((wanted or code_messages()).items(), key=lambda kv: kv[0][0]):
        entry = catalog.get(msgid, context=context)
        name = f"{code}: {msgid!r}" + (f" ({context})" if context else "")
        if entry is None:
            found.append(f"{name}: missing")
            continue
        if entry.fuzzy:
            found.append(f"{name}: fuzzy")
        forms = [str(f or "") for f in (entry.string if isinstance(entry.string, tuple | list) else [entry.string])]
        if not all(forms) or (source.pluralizable and len(forms) != catalog.num_plurals):
            found.append(f"{name}: not translated (every plural form)")
            continue
        found += [f"{name}: {issue}" for issue in _differences(source, forms)]
    found += [f"{code}: {msg.id!r}: {error}" for msg, errors in catalog.check() for error in errors]
    return found


def _differences(source: Message, forms: list[str]) -> Iterator[str]:
    ids = [source.id] if isinstance(source.id, str) else list(source.id)
    english = set(placeholders(" ".join(ids)))
    for form in forms:
        if set(placeholders(form)) - english:
            yield f"a placeholder the English has not: {form!r}"
        if sorted(_MARKUP.findall(form)) != sorted(_MARKUP.findall(ids[0])):
            yield f"markup or line breaks differ: {form!r}"
    missing = english - set(placeholders(" ".join(forms)))
    if missing - {"n"}:  # a plural form may leave the count out ("one track"): the rest must be there
        yield f"placeholders left out: {sorted(missing)}"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    cli = CommandLineInterface()
    if command == "extract":
        cli.run(["pybabel", *EXTRACT])
    elif command == "update":
        cli.run(["pybabel", *UPDATE])
    elif command == "init" and len(argv) == 2:
        cli.run(["pybabel", "init", "-i", str(TEMPLATE), "-d", str(LOCALE_DIR), "-D", DOMAIN, "-l", argv[1]])
    elif command == "check":
        wanted, languages = code_messages(), argv[1:] or translated_languages()
        issues = [issue for code in languages for issue in problems(code, wanted)]
        print("\n".join(issues) or f"{len(wanted)} messages, translated in {len(languages)} languages")
        return 1 if issues else 0
    else:
        print("usage: python -m common.catalogs extract|update|init LANG|check [LANG ...]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

