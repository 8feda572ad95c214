"""The range parser: every form a user types, the canonical key, and the words for a bad one."""

from __future__ import annotations

import pytest

from common.clip import Clip, RangeError, clock, links_with_ranges, parse_range


@pytest.mark.parametrize(
    ("text", "start", "end", "key"),
    [
        ("1:30-4:05", 90, 245, "90-245"),
        ("90-245", 90, 245, "90-245"),
        ("-4:05", None, 245, "-245"),
        ("1:30-", 90, None, "90-"),
        ("1:02:03-1:02:04.5", 3723, 3724.5, "3723-3724.5"),
        ("90:00-", 5400, None, "5400-"),
        ("1:30–4:05", 90, 245, "90-245"),  # the dash a phone makes of "-"
        ("0-4:05", None, 245, "-245"),  # from 0 is from the start: the same key
        (" 1:30-4:05 ", 90, 245, "90-245"),
    ],
)
def test_the_forms_of_a_range(text: str, start: float | None, end: float | None, key: str) -> None:
    clip = parse_range(text)
    assert (clip.start, clip.end, clip.key) == (start, end, key)
    assert parse_range(clip.key) == clip  # a job's key reads back as the same range


def test_from_the_start_to_the_end_is_no_range() -> None:
    assert parse_range("0-").key == Clip().key == ""


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("1:70-2:00", "In “1:70”, 70 seconds is more than 59."),
        ("1:60:00-", "In “1:60:00”, 60 is more than 59."),
        ("abc", "I couldn't read “abc” as a range."),
        ("1-2-3", "I couldn't read “1-2-3” as a range."),
        ("-", "A range needs a start, an end or both."),
        ("4:05-1:30", "That range ends (1:30) before it starts (4:05)."),
        ("1:30-1:30", "That range starts and ends at 1:30: it holds nothing."),
        ("x-1:30", "“x” isn't a time."),
        ("99999999-", "“99999999” is later than any video I take."),
        ("1" * 50, "That range is too long to be one."),
    ],
)
def test_a_bad_range_is_told_in_words(text: str, said: str) -> None:
    with pytest.raises(RangeError) as caught:
        parse_range(text)
    assert str(caught.value).startswith(said)


def test_links_each_take_the_range_after_them() -> None:
    text = "look https://a.example/x 1:30 - 4:05 and https://b.example/y, nice https://c.example/z -0:20"
    assert [(link, clip.key if clip else None) for link, clip in links_with_ranges(text)] == [
        ("https://a.example/x", "90-245"), ("https://b.example/y", None), ("https://c.example/z", "-20")]


def test_a_range_with_spaces_never_takes_a_link_ending_in_a_digit() -> None:
    assert links_with_ranges("https://a.example/v/12 -0:20") == [("https://a.example/v/12", parse_range("-0:20"))]
    assert links_with_ranges("https://a.example/v/12 - 0:20") == [("https://a.example/v/12", parse_range("-0:20"))]
    assert links_with_ranges("https://a.example/v/12 1:30 -2:00") == [
        ("https://a.example/v/12", parse_range("1:30-2:00"))]


def test_a_chat_message_ignores_words_that_are_no_range_but_not_bad_ones() -> None:
    assert links_with_ranges("https://a.example/x cool song") == [("https://a.example/x", None)]
    with pytest.raises(RangeError):
        links_with_ranges("https://a.example/x 1:70-2:00")


def test_after_mp3_every_word_after_the_link_must_be_a_range() -> None:
    with pytest.raises(RangeError, match="“soon”"):
        links_with_ranges("https://a.example/x soon", strict=True)
    with pytest.raises(RangeError, match="after the link"):
        links_with_ranges("https://a.example/x 1:30- soon", strict=True)


def test_the_same_link_and_range_once() -> None:
    assert len(links_with_ranges("https://a.example/x 1-2 https://a.example/x 1-2 https://a.example/x")) == 2


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0:00"), (90, "1:30"), (3723.5, "1:02:03.5"),
                                                (244.9999, "4:05"), (59.25, "0:59.25")])
def test_clock(seconds: float, shown: str) -> None:
    assert clock(seconds) == shown
