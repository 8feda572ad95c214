"""A part of a video to convert: the range a user gives ("1:30-4:05", "90-245", "-4:05", "1:30-").

One parser for every way a range arrives (a chat message, /mp3's arguments, Discord's start and
end options, the CLI); its errors are sentences a user can act on.  A job carries the range in its
canonical form (`Clip.key`), which is itself a valid range, and part of its cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common import i18n
from common.errors import Code, JobError, english, human_duration
from common.i18n import N_, Msg
from common.links import find_links

EXAMPLES = Msg(N_("Write a range like %(a)s, %(b)s, %(c)s or %(d)s."), a=i18n.ltr("1:30-4:05"), b=i18n.ltr("90-245"),
              c=i18n.ltr("-4:05"), d=i18n.ltr("1:30-"))
TIMES = Msg(N_("Times look like 1:30, 1:02:03 or 90 (seconds)."))
MAX_TEXT = 40  # characters of one range; anything longer is no range
MAX_SECONDS = 1_000_000.0  # longer than any video a bot takes: bounds what a typo can ask for
_DASHES = "-–—"  # a phone turns "-" into a dash as often as not
_TIME = re.compile(r"\d+(?::\d+){0,2}(?:\.\d+)?")
_RANGE_LIKE = re.compile(rf"[\d:.]*[{_DASHES}][\d:.]*")
_TIMEISH = re.compile(rf"[{_DASHES}\d:.]+")  # the dashes first: "-" is no range there


class RangeError(ValueError):
    """A range that can't be used: `said`, the sentences for the user (errors.sentences says them in the user's
    language); str() is them in English."""

    def __init__(self, *said: Msg) -> None:
        super().__init__(english(said))
        self.said = list(said)


@dataclass(frozen=True)
class Clip:
    """From `start` to `end` seconds of the source; None: from its start, to its end."""

    start: float | None = None
    end: float | None = None

    @property
    def key(self) -> str:
        """Canonical text ("90-245.5", "-245", "90-"; "" for all of it, "0-" say): the same range always
        reads the same."""
        return f"{_number(self.start)}-{_number(self.end)}" if self.start or self.end is not None else ""

    def within(self, duration: float) -> tuple[float, float]:
        """(start, end) in a source of this length: a start at or past its end fails the job (BAD_RANGE);
        an end past its end is taken as its end (what a user means by it; the title shows the real end)."""
        start = self.start or 0.0
        if start >= duration:
            raise JobError(Code.BAD_RANGE, f"{self.key} in {duration:.1f}s",
                           hint=Msg(N_("It starts at %(start)s; the video is %(length)s long."),
                                    start=clock(start), length=clock(duration)))
        return start, min(self.end, duration) if self.end is not None else duration


def span_label(start: float, end: float) -> str:
    """A range as a title shows it: "1:30–4:05"."""
    return f"{clock(start)}–{clock(end)}"


def clock(seconds: float) -> str:
    """1:30, 1:02:03, 1:30.5: a time as people write it."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return human_duration(whole) + (f".{millis:03d}".rstrip("0") if millis else "")


def parse_range(text: str) -> Clip:
    """A range as typed: START-END, either side may be left out ("-4:05", "1:30-")."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise RangeError(Msg(N_("That range is too long to be one.")), EXAMPLES)
    parts = re.split(f"[{_DASHES}]", text)
    if len(parts) != 2:
        raise RangeError(Msg(N_("I couldn't read “%(text)s” as a range."), text=i18n.ltr(text)), EXAMPLES)
    start, end = (parse_time(part) if part.strip() else None for part in parts)
    return make_clip(start, end)


def make_clip(start: float | None, end: float | None) -> Clip:
    """A range from its two ends (either may be None), checked."""
    if start is None and end is None:
        raise RangeError(Msg(N_("A range needs a start, an end or both.")), EXAMPLES)
    if start is not None and start == end:
        raise RangeError(Msg(N_("That range starts and ends at %(time)s: it holds nothing."), time=clock(start)))
    if start is not None and end is not None and end < start:
        raise RangeError(Msg(N_("That range ends (%(end)s) before it starts (%(start)s)."), end=clock(end),
                             start=clock(start)))
    if end == 0:
        raise RangeError(Msg(N_("That range ends at 0:00: it holds nothing.")))
    return Clip(start or None, end)


def parse_time(text: str) -> float:
    """Seconds from "90", "1:30", "1:02:03" (a fraction on the last part: "1:30.5")."""
    text = text.strip()
    if not _TIME.fullmatch(text):
        raise RangeError(Msg(N_("“%(text)s” isn't a time."), text=text[:MAX_TEXT]), TIMES)
    *bigger, last = text.split(":")
    seconds = float(last)
    for number in bigger[1:]:  # the first part may be as large as it likes ("90:00"), the others are < 60
        if int(number) >= 60:
            raise RangeError(Msg(N_("In “%(text)s”, %(number)s is more than 59."), text=text, number=number), TIMES)
    if bigger and seconds >= 60:
        raise RangeError(Msg(N_("In “%(text)s”, %(seconds)s seconds is more than 59."), text=text, seconds=last),
                         TIMES)
    for power, number in enumerate(reversed(bigger), 1):
        seconds += int(number) * 60**power
    if seconds > MAX_SECONDS:
        raise RangeError(Msg(N_("“%(text)s” is later than any video I take."), text=text))
    return round(seconds, 3)


def links_with_ranges(text: str, strict: bool = False) -> list[tuple[str, Clip | None]]:
    """The links in a message, each with the range written right after it ("<link> 1:30-4:05").

    Not strict (a chat message): a word after a link is a range only if it looks like one, and
    then it must be a good one. Strict (/mp3's arguments): every word after a link must be a range.
    """
    asked: list[tuple[str, Clip | None]] = []
    taken = True  # the last link has its range already (or there is no link yet)
    for word in _words(text or ""):
        links = find_links(word)
        if links:
            asked += [(link, None) for link in links]
            taken = False
        elif not taken and (strict or (_RANGE_LIKE.fullmatch(word) and any(c.isdigit() for c in word))):
            link, _ = asked.pop()
            asked.append((link, parse_range(word)))
            taken = True
        elif strict and asked:
            unread = Msg(N_("I couldn't read “%(word)s” after the link."), word=i18n.ltr(word[:MAX_TEXT]))
            raise RangeError(unread, EXAMPLES)
    return list(dict.fromkeys(asked))  # the same link with the same range once


def _words(text: str) -> list[str]:
    """The message's words, with a range typed with spaces ("1:30 - 4:05", "1:30 -4:05") as one word."""
    words: list[str] = []
    for word in text.split():
        last = words[-1] if words else ""
        if (_TIMEISH.fullmatch(last) and _TIMEISH.fullmatch(word)
                and (last[-1] in _DASHES or word[0] in _DASHES)):
            words[-1] += word
        else:
            words.append(word)
    return words


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")
