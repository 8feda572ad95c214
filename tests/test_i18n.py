"""common/i18n.py: which language a user gets, plural forms through a real catalog, numbers and sizes by
locale, texts that travel as JSON, isolates in right-to-left text."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from common import i18n
from common.i18n import Msg

RU_PO = b"""
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : "
"n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);\\n"

msgid "%(n)s track"
msgid_plural "%(n)s tracks"
msgstr[0] "%(n)s \xd1\x82\xd1\x80\xd0\xb5\xd0\xba"
msgstr[1] "%(n)s \xd1\x82\xd1\x80\xd0\xb5\xd0\xba\xd0\xb0"
msgstr[2] "%(n)s \xd1\x82\xd1\x80\xd0\xb5\xd0\xba\xd0\xbe\xd0\xb2"

msgid "The limit is %(limit)s."
msgstr "\xd0\x9f\xd1\x80\xd0\xb5\xd0\xb4\xd0\xb5\xd0\xbb: %(limit)s."

#, fuzzy
msgid "Cancelled."
msgstr "\xd0\xbd\xd0\xb5 \xd1\x82\xd0\xb0\xd0\xba"
"""


@pytest.mark.parametrize(("wanted", "expected"), [
    (("ru",), "ru"), (("pt-BR",), "pt_BR"), (("pt",), "pt_BR"), (("PT_br",), "pt_BR"), (("es-419",), "es"),
    (("en-US",), "en"), (("de", "tr"), "tr"), ((None, "", "fa"), "fa"), (("de",), "en"), (("zz-ZZ",), "en"),
])
def test_pick_takes_the_first_language_we_speak(wanted: tuple[str | None, ...], expected: str) -> None:
    assert i18n.pick(*wanted) == expected


def test_pick_falls_back_to_the_default_given() -> None:
    assert i18n.pick("de", default="es") == "es"
    assert i18n.pick("de", default="") == ""


def test_a_catalog_compiled_in_memory_gives_every_plural_form_and_skips_fuzzy_entries() -> None:
    lang = i18n.Lang("ru", i18n.compile_po(RU_PO, "ru"))
    forms = {n: lang.ngettext("%(n)s track", "%(n)s tracks", n) for n in (1, 3, 5, 21, 22, 25, 111)}
    assert forms == {1: "1 трек", 3: "3 трека", 5: "5 треков", 21: "21 трек", 22: "22 трека", 25: "25 треков",
                     111: "111 треков"}
    assert lang.gettext("The limit is %(limit)s.", limit=i18n.size(1.5 * 1024 * 1024)) == "Предел: 1,5 МБ."
    assert lang.gettext("Cancelled.") == "Cancelled."  # a fuzzy translation is a guess: never shown


def test_english_is_the_source_and_needs_no_catalog() -> None:
    en = i18n.get("en")
    assert en.ngettext("%(n)s track", "%(n)s tracks", 1) == "1 track"
    assert en.ngettext("%(n)s track", "%(n)s tracks", 12) == "12 tracks"
    assert i18n.get("xx").code == "en"


@pytest.mark.parametrize(("code", "size", "speed", "percent", "number"), [
    ("en", "1.5 MB", "2.5 MB/s", "42%", "12,345"),
    ("ru", "1,5 МБ", "2,5 МБ/c", "42\xa0%", "12\xa0345"),
    ("tr", "1,5 MB", "2,5 MB/sn", "%42", "12.345"),
    ("pt_BR", "1,5 MB", "2,5 MB/s", "42%", "12.345"),
])
def test_numbers_sizes_and_speeds_as_each_language_writes_them(code: str, size: str, speed: str, percent: str,
                                                               number: str) -> None:
    lang = i18n.get(code)
    assert lang.size(1.5 * 1024 * 1024) == size
    assert lang.speed(2.5 * 1024 * 1024) == speed
    assert lang.percent(42.4) == percent
    assert lang.number(12345) == number
    assert lang.duration(3725) == "1:02:05"


def test_a_message_travels_as_json_and_is_said_in_each_readers_language() -> None:
    msg = Msg("The limit is %(limit)s.", limit=i18n.size(2 * 1024 * 1024), name="x")
    again = Msg.load(json.loads(json.dumps(msg.to_dict())))
    assert again == msg
    assert again.english() == "The limit is 2 MB."
    assert Msg.load({"no": "id"}) is None
    assert Msg.load("garbage") is None


def test_a_clause_and_a_date_inside_a_message_travel_and_are_said_in_the_readers_language() -> None:
    """A finding's frame ("cookies FILE: ...") around a clause of its own, its date written as each language does."""
    msg = Msg("cookies %(file)s: %(problem)s", file="c.txt",
              problem=Msg("expired on %(date)s", date=i18n.date(dt.date(2026, 1, 5))))
    again = Msg.load(json.loads(json.dumps(msg.to_dict())))
    assert again == msg
    assert again.english() == "cookies c.txt: expired on Jan 5, 2026"
    assert i18n.get("ru").say(again) == "cookies c.txt: expired on 5 янв. 2026\u202fг."  # Babel's Russian date


def test_left_to_right_parts_are_isolated_only_in_right_to_left_languages() -> None:
    assert i18n.get("fa").ltr("Song (Live)") == "\u2068Song (Live)\u2069"
    assert i18n.get("fa").rtl and not i18n.get("ru").rtl
    assert i18n.get("ru").ltr("Song") == "Song"
    assert i18n.get("fa").ltr("") == ""


def test_clauses_travel_as_json_and_are_said_one_after_another() -> None:
    """A route's story in /health: several clauses in one text, each in the reader's language."""
    msg = Msg("%(route)s: %(facts)s", route="direct", facts=[Msg("last failure %(error)s", error="refused"),
                                                             Msg.ngettext("%(n)s min", "%(n)s min", 3)])
    again = Msg.load(json.loads(json.dumps(msg.to_dict())))
    assert again == msg
    assert again is not None and again.english() == "direct: last failure refused; 3 min"
    stored = msg.to_dict()
    stored["args"]["facts"].append("junk")  # what is not a clause is left out
    assert Msg.load(stored) == msg
