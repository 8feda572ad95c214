"""Texts cut to the platforms' limits, as a stranger's title would try to break them."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import i18n
from common.filenames import safe_filename
from common.jobs import Job, State
from common.render import HtmlMarkup, MarkdownMarkup, QueueInfo, caption, render
from common.textlimits import (
    DISCORD_CONTENT,
    DISCORD_MENTION,
    ELLIPSIS,
    FILENAME_BYTES,
    TELEGRAM_CAPTION,
    TELEGRAM_MESSAGE,
    boundary,
    cut,
    part_suffix,
    utf8_len,
    utf16_len,
)
from tests.fake_telegram import parse_html, u16
from tests.media import TITLE_SCRIPTS

FLAG, FAMILY, ACCENTED = "🇺🇦", "👨\u200d👩\u200d👧", "e\u0301"
SCRIPTS = {**TITLE_SCRIPTS, "combining": "Ame\u0301lie " + ACCENTED * 3}
EN = i18n.get("en")
TEXT = st.lists(st.one_of(
    st.sampled_from(["<", ">", "&", "*", "_", "\\", "@", "\n", "\u0301", "\u200d", "\ufe0f", "🏽", "🇺", "🇦",
                     "😀", "я", "非", "ع", FAMILY, ACCENTED]),
    st.characters(codec="utf-8", exclude_categories=("Cs",))), max_size=200).map("".join)


def long_title(script: str, chars: int = 1500) -> str:
    return (SCRIPTS[script] * chars)[:chars]


def splits_a_character(text: str, index: int) -> bool:
    """Would cutting at `index` separate what a reader sees as one character?"""
    if not 0 < index < len(text):
        return False
    joined = unicodedata.category(text[index]).startswith("M") or "\u200d" in text[index - 1: index + 1]
    regional = [0x1F1E6 <= ord(c) <= 0x1F1FF for c in text]
    run = index
    while run > 0 and regional[run - 1]:
        run -= 1
    return joined or (regional[index] and (index - run) % 2 == 1)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, limit=st.integers(min_value=0, max_value=500),
       measure=st.sampled_from([len, utf8_len, utf16_len]))
def test_cut_fits_and_keeps_whole_characters(text: str, limit: int, measure: object) -> None:
    cut_text = cut(text, limit, measure)  # type: ignore[arg-type]
    assert measure(cut_text) <= limit  # type: ignore[operator]
    if measure(text) <= limit:  # type: ignore[operator]
        assert cut_text == text
    elif cut_text:
        kept = cut_text.removesuffix(ELLIPSIS)
        assert cut_text.endswith(ELLIPSIS) and text.startswith(kept)
        assert not splits_a_character(text, len(kept))


@given(text=TEXT, index=st.integers(min_value=0, max_value=400))
def test_boundary_never_splits_a_character(text: str, index: int) -> None:
    at = boundary(text, index)
    assert at <= max(index, 0) and not splits_a_character(text, at)


def test_cut_keeps_flags_emoji_sequences_and_accents_whole() -> None:
    for unit in (FLAG, FAMILY, ACCENTED, "👍🏽"):
        text = unit * 10
        for limit in range(len(text)):
            kept = cut(text, limit).removesuffix(ELLIPSIS)
            assert kept == unit * (len(kept) // len(unit)), (unit, limit, kept)


def job_with(title: str, state: State, error: str = "", message: str = "") -> Job:
    return Job(id="abc123def456", url="https://example.com/v", state=state, title=title, percent=42.0,
               speed=123456.0, eta=75.0, error_text=error, retryable=True, message=message)


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("state", list(State))
def test_status_of_a_long_title_fits_both_platforms(script: str, state: State) -> None:
    title = long_title(script, 5000)
    job = job_with(title, state, error=long_title(script, 3000), message="Retrying soon.")
    shown, _ = parse_html(render(job, HtmlMarkup(), EN, QueueInfo(ahead=3, workers=1)).text)
    assert u16(shown) <= TELEGRAM_MESSAGE
    assert title[:50] in shown  # the start of the title is there, not replaced by something else
    discord = render(job, MarkdownMarkup(), EN, QueueInfo(ahead=3, workers=1)).text
    assert len(discord) + DISCORD_MENTION <= DISCORD_CONTENT


@settings(max_examples=200, deadline=None)
@given(title=TEXT, error=TEXT, state=st.sampled_from(list(State)), repeat=st.integers(1, 40))
def test_status_always_parses_and_fits(title: str, error: str, state: State, repeat: int) -> None:
    job = job_with(title * repeat, state, error * repeat)
    shown, _ = parse_html(render(job, HtmlMarkup(), EN).text)  # raises where Telegram would refuse
    assert u16(shown) <= TELEGRAM_MESSAGE
    discord = render(job, MarkdownMarkup(), EN).text
    assert len(discord) <= DISCORD_CONTENT - DISCORD_MENTION
    assert not re.search(r"(?<!\\)(\\\\)*\\$", discord.split("\n")[0].removesuffix("**"))  # no dangling escape


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_captions_of_parts_fit_and_stay_distinct(script: str) -> None:
    title, url = long_title(script), "https://example.com/watch?v=" + "x" * 300
    for markup in (HtmlMarkup(), MarkdownMarkup()):
        texts = [caption(title, url, markup, EN, part_suffix(n, 8, EN)) for n in range(1, 9)]
        assert len(set(texts)) == 8
        for n, text in enumerate(texts, 1):
            if isinstance(markup, HtmlMarkup):
                shown, _ = parse_html(text)
                assert u16(shown) <= TELEGRAM_CAPTION
            else:
                shown = re.sub(r"\\(.)", r"\1", text)
                assert len(text) + DISCORD_MENTION <= DISCORD_CONTENT
            first, link = shown.split("\n")
            assert first.removesuffix("**").endswith(f"({n} of 8)") and url in link  # kept whole


def test_a_link_longer_than_the_caption_is_cut_too() -> None:
    shown, _ = parse_html(caption("Song", "https://example.com/" + "a" * 3000, HtmlMarkup(), EN))
    assert u16(shown) <= TELEGRAM_CAPTION and shown.startswith("Song\nhttps://example.com/aaa")


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_file_names_of_parts_fit_and_stay_distinct(script: str) -> None:
    title = long_title(script)
    names = [safe_filename(title, f"{part_suffix(n, 8, EN)}.mp3") for n in range(1, 9)]
    assert len(set(names)) == 8
    for n, name in enumerate(names, 1):
        assert utf8_len(name) <= FILENAME_BYTES and name.endswith(f" ({n} of 8).mp3")
        assert "/" not in name and not name.startswith(".")
    assert utf8_len(safe_filename(title)) <= FILENAME_BYTES


@given(title=TEXT, repeat=st.integers(1, 20), count=st.integers(2, 30))
def test_file_names_fit_for_any_title(title: str, repeat: int, count: int) -> None:
    names = {safe_filename(title * repeat, f"{part_suffix(n, count, EN)}.mp3") for n in range(1, count + 1)}
    assert len(names) == count and all(utf8_len(n) <= FILENAME_BYTES for n in names)
