"""Status rendering with hostile titles and error texts: never a broken message, always the title as it is."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from common import i18n
from common.errors import human_duration
from common.filenames import safe_filename
from common.jobs import Job, State
from common.render import Button, HtmlMarkup, MarkdownMarkup, QueueInfo, progress_bar, render
from common.textlimits import FILENAME_BYTES
from tests.fake_telegram import parse_html

HOSTILE = st.text(
    alphabet=st.one_of(st.sampled_from(list("<>&\"'*_`~|#[]()-.!:\\@/\n\u200f\u202e")),
                       st.characters(codec="utf-8", exclude_categories=("Cs",))),
    max_size=80,
)
STATES = st.sampled_from(list(State))
EN = i18n.get("en")


def job_with(title: str, state: State, error: str = "", message: str = "") -> Job:
    return Job(id="abc123", url="https://example.com/v", state=state, title=title, percent=42.0, speed=123456.0,
               eta=75.0, error_text=error, retryable=True, message=message)


@settings(max_examples=300, deadline=None)
@given(title=HOSTILE, state=STATES, error=HOSTILE, message=HOSTILE)
def test_telegram_html_always_parses_and_shows_the_title(title: str, state: State, error: str, message: str) -> None:
    view = render(job_with(title, state, error, message), HtmlMarkup(), EN, QueueInfo(ahead=3, workers=1))
    shown, _entities = parse_html(view.text)  # what Telegram would show; raises where Telegram would refuse
    if title:
        assert title in shown
    if state == State.FAILED and error:
        assert error in shown


def unescape_discord(text: str) -> str:
    """What Discord displays for our escaped text (backslash-escapes dropped, the pinged @ kept)."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL).replace("@\u200b", "@")


@settings(max_examples=300, deadline=None)
@given(title=HOSTILE)
def test_discord_markdown_is_neutralised(title: str) -> None:
    escaped = MarkdownMarkup().escape(title)
    assert unescape_discord(escaped) == title
    # no unescaped markdown or mention character survives
    assert not re.search(r"(?<!\\)[*_`~|<>#\[\]]", re.sub(r"\\\\", "", escaped))
    assert "@everyone" not in escaped and "@here" not in escaped


@given(title=HOSTILE)
def test_file_names_stay_in_their_folder(title: str) -> None:
    name = safe_filename(title)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and name.endswith(".mp3")
    assert len(name.encode()) <= FILENAME_BYTES


def test_buttons_follow_the_state() -> None:
    markup = HtmlMarkup()
    assert render(job_with("t", State.DOWNLOADING), markup, EN).buttons == (Button.CANCEL,)
    assert render(job_with("t", State.READY), markup, EN).buttons == ()
    assert render(job_with("t", State.FAILED, "boom"), markup, EN).buttons == (Button.RETRY,)
    assert render(job_with("t", State.CANCELLED), markup, EN).buttons == ()
    assert render(job_with("t", State.DELIVERED), markup, EN).done


def test_status_lines_a_user_reads() -> None:
    markup = HtmlMarkup()
    text = render(job_with("Song", State.DOWNLOADING), markup, EN).text
    assert "Downloading" in text and "42%" in text and "120.6 kB/s" in text and "1:15 left" in text
    queued = render(job_with("Song", State.QUEUED), markup, EN, QueueInfo(ahead=0, workers=0)).text
    assert "No worker is online" in queued and "waits safely" in queued
    assert "2 jobs ahead" in render(job_with("Song", State.QUEUED), markup, EN, QueueInfo(ahead=2, workers=1)).text
    assert progress_bar(50, width=10) == "▰" * 5 + "▱" * 5
    assert human_duration(3725) == "1:02:05"
