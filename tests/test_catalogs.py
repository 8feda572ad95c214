"""The message catalogs: every text the code marks is translated in every language, with the same placeholders
and markup as the English, and the texts a chat sees, rendered in each language, pass Telegram's markup check
and both platforms' length limits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from common import catalogs, i18n
from common.errors import TEXT, Code, limit_hint
from common.i18n import Msg
from common.jobs import Job, State
from common.render import HtmlMarkup, MarkdownMarkup, QueueInfo, caption, render, render_album
from common.textlimits import DISCORD_CONTENT, DISCORD_MENTION, TELEGRAM_CAPTION, TELEGRAM_MESSAGE, part_suffix
from tests.fake_telegram import parse_html, u16

LANGUAGES = catalogs.translated_languages()


@pytest.fixture(scope="module")
def wanted() -> dict:
    return catalogs.code_messages()


def test_the_code_marks_its_texts_for_translation(wanted: dict) -> None:
    """The extraction really finds the chat's texts (a broken mapping would make every check below pass)."""
    ids = {msgid for msgid, _ in wanted}
    assert len(ids) > 100
    assert "Cancelled." in ids


def test_the_template_is_current(wanted: dict) -> None:
    """messages.pot holds what the code marks: `python -m common.catalogs extract` was run after the last change."""
    with catalogs.TEMPLATE.open("rb") as pot:
        template = {(m.id if isinstance(m.id, str) else m.id[0], m.context) for m in read_po(pot) if m.id}
    assert template == set(wanted)


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_message_is_translated_with_the_same_placeholders_and_markup(code: str, wanted: dict) -> None:
    assert catalogs.problems(code, wanted) == []


@pytest.mark.parametrize("code", LANGUAGES)
def test_plural_forms_are_the_languages_own(code: str) -> None:
    """The catalog's Plural-Forms is gettext's for the language as Babel knows it (Russian three forms,
    Indonesian one), so every ngettext text picks the right form: "1 трек", "3 трека", "5 треков"."""
    catalog = catalogs.load(code)
    assert (catalog.num_plurals, catalog.plural_expr) == tuple(get_plural(code))
    lang = i18n.get(code)
    texts = {n: lang.ngettext("%(n)s track delivered", "%(n)s tracks delivered", n) for n in (1, 3, 5, 21)}
    assert all(lang.number(n) in text for n, text in texts.items())
    assert len(set(texts.values())) == 4
    if code == "ru":  # one, few, many
        assert len({text.replace(lang.number(n), "") for n, text in texts.items()}) == 3


TITLE = "Rock & <Roll> **live** @everyone — " + "x" * 3000  # markup in it, and longer than any message
URL = "https://example.com/watch?v=1&list=2"


def statuses() -> list[tuple[Job, QueueInfo | None]]:
    """A job in every state a chat can see, failures with every error code and a hint."""
    base = Job(id="a" * 12, url=URL, title=TITLE, percent=42.0, eta=75.0)
    shown = [(replace(base, state=State.QUEUED), QueueInfo(ahead=3, workers=2)),
             (replace(base, state=State.QUEUED), QueueInfo(ahead=0, workers=0)),
             (replace(base, state=State.DOWNLOADING, speed=1.5e6), None),
             (replace(base, state=State.CONVERTING, speed=140.0, step="normalising"), None),
             (replace(base, state=State.CLEANING), None), (replace(base, state=State.READY), None),
             (replace(base, state=State.CANCELLED), None),
             (replace(base, state=State.DELIVERED, chapters=[{"title": "a", "start": 0, "end": 1}] * 3), None)]
    for code in Code:
        said = [Msg(TEXT[code]).to_dict(), limit_hint(i18n.size(50 * 1024 * 1024)).to_dict()]
        shown.append((replace(base, state=State.FAILED, error_code=code.value, error_text_i18n=said,
                              retryable=True), None))
    return shown


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_status_and_error_in_every_language_passes_telegrams_markup_check_and_both_limits(code: str) -> None:
    lang = i18n.get(code)
    album = Job(id="b" * 12, url=URL, state=State.DOWNLOADING, album=TITLE, tracks=12)
    tracks: list[Job | None] = [replace(album, id=f"t{n}", state=State.READY if n < 5 else State.DOWNLOADING,
                                        track=n + 1, title=TITLE) for n in range(12)]
    html, markdown = HtmlMarkup(), MarkdownMarkup()
    views = [(markup, render(job, markup, lang, queue)) for job, queue in statuses() for markup in (html, markdown)]
    views += [(markup, render_album(replace(album, confirm=confirm), tracks, markup, lang, delivered))
              for confirm in (False, True) for delivered in (0, 12) for markup in (html, markdown)]
    english = {render(job, html, i18n.get("en"), queue).text for job, queue in statuses()}
    for markup, view in views:
        if markup is html:
            shown, _ = parse_html(view.text)  # raises as Telegram does on broken markup
            assert u16(shown) <= TELEGRAM_MESSAGE
        else:
            assert len(view.text) + DISCORD_MENTION <= DISCORD_CONTENT
        assert all(0 < len(view.label(button)) <= 80 for button in view.buttons)  # Discord's button limit
    translated = [render(job, HtmlMarkup(), lang, queue).text for job, queue in statuses()]
    assert not english & set(translated), "a status left in English"
    caption_text = caption(TITLE, URL, HtmlMarkup(), lang, part_suffix(1, 3, lang))
    assert u16(parse_html(caption_text)[0]) <= TELEGRAM_CAPTION


BROKEN_RU = """
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : "
"2);\\n"

msgid "The limit is %(limit)s."
msgstr "Предел: %(limt)s."

msgid "%(n)s track delivered"
msgid_plural "%(n)s tracks delivered"
msgstr[0] "Доставлен %(n)s трек"
msgstr[1] "Доставлено %(n)s трека"
msgstr[2] ""

#, fuzzy
msgid "Cancelled."
msgstr "Отменено."

msgid "<b>Bold</b> then\\na line"
msgstr "<b>Жирный</b> и строка"
"""


def test_the_check_names_each_fault_of_a_bad_translation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the catalog tests above rely on: a misspelt placeholder, an empty plural form, a fuzzy guess, lost
    markup or line breaks and a missing id are each reported."""
    po = tmp_path / "ru" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    po.write_text(BROKEN_RU)
    monkeypatch.setattr(catalogs, "LOCALE_DIR", tmp_path)
    wanted = {(m.id if isinstance(m.id, str) else m.id[0], None): m for m in (
        Message("The limit is %(limit)s.", flags=["python-format"]),
        Message(("%(n)s track delivered", "%(n)s tracks delivered"), flags=["python-format"]),
        Message("Cancelled."), Message("<b>Bold</b> then\na line"), Message("Not there"))}
    found = "\n".join(catalogs.problems("ru", wanted))
    assert "'The limit is %(limit)s.': a placeholder the English has not" in found
    assert "'The limit is %(limit)s.': placeholders left out: ['limit']" in found
    assert "'%(n)s track delivered': not translated (every plural form)" in found
    assert "'Cancelled.': fuzzy" in found
    assert "'<b>Bold</b> then\\na line': markup or line breaks differ" in found
    assert "'Not there': missing" in found
