"""The job-status and error path in the requester's language: a job's failure is stored once (English for logs,
Msg JSON beside it) and said by each requester's bot in their own language; refusals and range errors likewise;
right-to-left statuses keep their left-to-right parts (titles, the bar with its percent, links) isolated.

No real catalog exists yet: the languages here are catalogs compiled from small .po texts written below.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from common import context, i18n, limits
from common.clip import RangeError, parse_range
from common.errors import TEXT, Code, JobError, limit_hint, sentences
from common.i18n import FSI, PDI, Msg
from common.jobs import Job, State, new_job_id
from common.render import Button, HtmlMarkup, MarkdownMarkup, caption, render
from common.textlimits import DISCORD_CONTENT, DISCORD_MENTION, TELEGRAM_CAPTION, TELEGRAM_MESSAGE, part_suffix
from tasks import lifecycle
from tests.conftest import origin
from tests.fake_telegram import parse_html, u16

PO_HEADER = """
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: {plural}\\n"
"""
RU_PLURAL = ("nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : "
             "2);")

RU_PO = (PO_HEADER.format(plural=RU_PLURAL) + f"""
msgid "{TEXT[Code.TOO_LARGE]}"
msgstr "Файл слишком большой."

msgid "{TEXT[Code.NETWORK]}"
msgstr "Сайт недоступен."

msgid "The limit is %(limit)s."
msgstr "Предел: %(limit)s."

msgid "It failed after %(n)s try."
msgid_plural "It failed after %(n)s tries."
msgstr[0] "Не вышло за %(n)s попытку."
msgstr[1] "Не вышло за %(n)s попытки."
msgstr[2] "Не вышло за %(n)s попыток."

msgid "Retry"
msgstr "Повторить"

msgid "Your link"
msgstr "Ваша ссылка"

msgid "You've reached %(n)s conversion this hour."
msgid_plural "You've reached %(n)s conversions this hour."
msgstr[0] "Вы сделали %(n)s конвертацию за час."
msgstr[1] "Вы сделали %(n)s конвертации за час."
msgstr[2] "Вы сделали %(n)s конвертаций за час."

msgid "Try again in %(n)s minute."
msgid_plural "Try again in %(n)s minutes."
msgstr[0] "Попробуйте через %(n)s минуту."
msgstr[1] "Попробуйте через %(n)s минуты."
msgstr[2] "Попробуйте через %(n)s минут."

msgid "That range ends (%(end)s) before it starts (%(start)s)."
msgstr "Отрезок кончается (%(end)s) раньше, чем начинается (%(start)s)."
""").encode()

FA_PO = (PO_HEADER.format(plural="nplurals=2; plural=(n > 1);") + """
msgid "Downloading"
msgstr "در حال دانلود"

msgid "%(time)s left"
msgstr "%(time)s مانده"

msgid "Cancel"
msgstr "لغو"

msgid "(%(number)s of %(count)s)"
msgstr "(%(number)s از %(count)s)"
""").encode()


@pytest.fixture(scope="module")
def ru() -> i18n.Lang:
    return i18n.Lang("ru", i18n.compile_po(RU_PO, "ru"))


@pytest.fixture(scope="module")
def fa() -> i18n.Lang:
    return i18n.Lang("fa", i18n.compile_po(FA_PO, "fa"))


def failed(error: JobError, retries: int = 0) -> Job:
    """A job failed through the worker's own path (tasks.lifecycle.fail), read back from Redis."""
    job = Job(id=new_job_id(), url="https://example.com/v", state=State.DOWNLOADING)
    context.store().create(job, origin())
    lifecycle.fail(job.id, error, "tasks.download", retries=retries)
    stored = context.store().get(job.id)
    assert stored is not None and stored.state == State.FAILED
    return stored


def test_a_failure_with_a_hint_is_said_in_each_requesters_language(test_env: dict[str, str],
                                                                    ru: i18n.Lang) -> None:
    job = failed(JobError(Code.TOO_LARGE, "61 MB and counting", hint=limit_hint(i18n.size(50 * 1024 * 1024))))
    assert job.error_text == "This file is too large. The limit is 50 MB."  # logs, the CLI, admins
    shown, _ = parse_html(render(job, HtmlMarkup(), ru).text)
    assert shown == "❌ Ваша ссылка\nФайл слишком большой. Предел: 50 МБ."  # Russian words, Russian units
    english, _ = parse_html(render(job, HtmlMarkup(), i18n.get("en")).text)
    assert english == "❌ Your link\nThis file is too large. The limit is 50 MB."
    # A record from a version that kept only the English text is still shown, in English.
    older = replace(job, error_text_i18n=[])
    assert parse_html(render(older, HtmlMarkup(), ru).text)[0].endswith("This file is too large. The limit is 50 MB.")


@pytest.mark.parametrize(("retries", "tries"), [(2, "3 попытки"), (4, "5 попыток"), (20, "21 попытку")])
def test_how_often_a_job_was_tried_takes_the_readers_plural_form(test_env: dict[str, str], ru: i18n.Lang,
                                                                 retries: int, tries: str) -> None:
    job = failed(JobError(Code.NETWORK, "connection refused"), retries=retries)
    assert job.error_text == f"The site couldn't be reached. It failed after {retries + 1} tries."
    view = render(job, HtmlMarkup(), ru)
    assert view.text.endswith(f"Сайт недоступен. Не вышло за {tries}.")
    assert view.buttons == (Button.RETRY,) and view.label(Button.RETRY) == "↻ Повторить"
    assert render(job, HtmlMarkup(), i18n.get("en")).label(Button.RETRY) == "↻ Retry"


def test_the_stored_sentences_are_json_that_survives_unknown_shapes(ru: i18n.Lang) -> None:
    tried = Msg.ngettext("It failed after %(n)s try.", "It failed after %(n)s tries.", 2)
    stored = json.loads(json.dumps([Msg(TEXT[Code.NETWORK]).to_dict(), tried.to_dict(), {"no": "id"}, "junk"]))
    job = Job(id="a" * 12, url="u", state=State.FAILED, error_text="English", error_text_i18n=stored)
    assert Msg.load(stored[1]) == tried
    assert job.said("error_text", ru) == "Сайт недоступен. Не вышло за 2 попытки."  # what is not a Msg is left out
    assert replace(job, error_text_i18n="not a list").said("error_text", ru) == "English"  # type: ignore[arg-type]


def test_refusals_and_range_errors_are_said_in_the_users_language(ru: i18n.Lang) -> None:
    refusal = limits.Refusal((Msg.ngettext("You've reached %(n)s conversion this hour.",
                                           "You've reached %(n)s conversions this hour.", 5),
                              Msg.ngettext("Try again in %(n)s minute.", "Try again in %(n)s minutes.", 22)))
    assert sentences(ru, refusal.said) == "Вы сделали 5 конвертаций за час. Попробуйте через 22 минуты."
    assert refusal.text == "You've reached 5 conversions this hour. Try again in 22 minutes."
    with pytest.raises(RangeError) as caught:
        parse_range("4:05-1:30")
    assert str(caught.value) == "That range ends (1:30) before it starts (4:05)."
    assert sentences(ru, caught.value.said) == "Отрезок кончается (1:30) раньше, чем начинается (4:05)."


def test_a_persian_status_isolates_its_latin_title_its_bar_and_its_link(fa: i18n.Lang) -> None:
    job = Job(id="b" * 12, url="https://example.com/watch?v=1", state=State.DOWNLOADING, title="Song (Live) <1>",
              percent=42.0, eta=75.0)
    view = render(job, HtmlMarkup(), fa)
    shown, _ = parse_html(view.text)  # the fake Telegram's markup check
    assert u16(shown) <= TELEGRAM_MESSAGE
    title, stage, details = shown.split("\n")
    assert title == f"🎵 {FSI}Song (Live) <1>{PDI}"
    assert stage == f"⬇️ در حال دانلود  {FSI}▰▰▰▰▰▱▱▱▱▱▱▱ 42%{PDI}"
    assert details == "1:15 مانده"
    assert view.label(Button.CANCEL) == "✖ لغو"
    discord = render(job, MarkdownMarkup(), fa).text
    assert f"**{FSI}Song \\(Live\\) \\<1\\>{PDI}**" in discord and len(discord) + DISCORD_MENTION <= DISCORD_CONTENT
    text = caption(job.title, job.url, HtmlMarkup(), fa, part_suffix(1, 2, fa))
    shown, _ = parse_html(text)
    assert shown == f"{FSI}Song (Live) <1> (1 از 2){PDI}\n{FSI}https://example.com/watch?v=1{PDI}"
    assert u16(shown) <= TELEGRAM_CAPTION
    # A left-to-right language needs no isolates: none is added.
    english = render(job, HtmlMarkup(), i18n.get("en")).text + caption(job.title, job.url, HtmlMarkup(),
                                                                        i18n.get("en"))
    assert FSI not in english and PDI not in english


def test_a_range_error_in_persian_keeps_its_examples_and_the_typed_text_left_to_right() -> None:
    """"-4:05" or "1:30-" in right-to-left text would show its dash on the wrong side without an isolate."""
    with pytest.raises(RangeError) as caught:
        parse_range("1:30-4:05-9")
    fa = i18n.get("fa")
    said = sentences(fa, caught.value.said)
    for example in ("1:30-4:05", "90-245", "-4:05", "1:30-", "1:30-4:05-9"):
        assert f"{FSI}{example}{PDI}" in said
    assert FSI not in sentences(i18n.get("ru"), caught.value.said)
    assert str(caught.value) == "I couldn't read “1:30-4:05-9” as a range. Write a range like 1:30-4:05, 90-245, " \
        "-4:05 or 1:30-."
