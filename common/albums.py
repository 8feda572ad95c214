"""Playlists and feeds delivered as albums: the user's entry range and the album's progress, pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import Code
from common.i18n import N_, Lang, Msg
from common.jobs import Job, State

# A track's step (Job.step, state CLEANING) once its MP3 is done: it waits for its album's other tracks, then
# gets the album's ReplayGain and is ready with them all (tasks/albumgain.py).
WAITING = "album"
_RANGE = re.compile(r"\s*(\d{1,4})\s*-\s*(\d{1,4})\s*")
# A track that failed for one of these is "unavailable"; any other failure is counted as failed.
_UNAVAILABLE = {Code.NOT_FOUND, Code.UNAVAILABLE, Code.PRIVATE, Code.GEO_BLOCKED, Code.LOGIN_REQUIRED,
                Code.UPCOMING, Code.LIVE, Code.NOT_ALLOWED, Code.UNSUPPORTED}


def entry_range(text: str) -> str | None:
    """A playlist range as the user writes it ("1-10": entries 1 to 10), as yt-dlp's playlist_items; None if
    the text is no such range (a trim such as "1:30-4:05" has colons, and is not one)."""
    match = _RANGE.fullmatch(text or "")
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    if first < 1 or last < first:
        return None
    return f"{first}-{last}"


def entries_in(words: list[str]) -> str:
    """The entries asked for among a message's words (the first word that is such a range), or ""."""
    return next((r for r in map(entry_range, words) if r), "")


class EntriesError(ValueError):
    """What the user wrote is no entry range; `msg` says how to write one (in the reader's language)."""

    def __init__(self, msg: Msg) -> None:
        super().__init__(msg.english())
        self.msg = msg


def picked_entries(text: str) -> str:
    """Entries asked for in a field of their own (Discord's `tracks:`): entry_range's answer, refused with the
    sentence to reply when it is none."""
    items = entry_range(text)
    if items is None:
        raise EntriesError(Msg(N_("I couldn't read “%(text)s” as tracks: write the playlist's entries as "
                                  "first-last, such as 2-5 or 1-10 (counting from 1)."), text=text.strip()[:40]))
    return items


def capped(items: str, most: int) -> str:
    """The range the user picked (or all), never more than `most` entries."""
    if not items:
        return f"1-{most}"
    first, last = (int(n) for n in items.split("-"))
    return f"{first}-{min(last, first + most - 1)}"


@dataclass(frozen=True)
class Progress:
    """Where an album is: its tracks by outcome, and the one in progress."""

    total: int
    done: int  # ready or delivered
    unavailable: int
    failed: int
    cancelled: int
    current: Job | None  # the first track still running

    @property
    def finished(self) -> bool:
        return self.done + self.unavailable + self.failed + self.cancelled >= self.total

    @property
    def percent(self) -> float:
        running = self.current.percent if self.current is not None else 0.0
        settled = self.done + self.unavailable + self.failed + self.cancelled
        return round(100 * (settled + running / 100) / self.total, 1) if self.total else 0.0


def waiting(track: Job) -> bool:
    """The track's MP3 is done and waits for its album's other tracks."""
    return track.state == State.CLEANING and track.step == WAITING


def settled(track: Job) -> bool:
    """Nothing of the track is at work any more: it has finished, or waits for its album."""
    return track.state.finished or waiting(track)


def progress(tracks: list[Job | None], total: int) -> Progress:
    """The album's progress from its tracks (None: not read yet, counted as waiting)."""
    done = sum(1 for t in tracks if t is not None and (t.state in (State.READY, State.DELIVERED) or waiting(t)))
    unavailable = sum(1 for t in tracks if t is not None and t.state == State.FAILED and t.error_code in _UNAVAILABLE)
    failed = sum(1 for t in tracks if t is not None and t.state == State.FAILED) - unavailable
    cancelled = sum(1 for t in tracks if t is not None and t.state == State.CANCELLED)
    current = next((t for t in tracks if t is not None and not settled(t) and t.state != State.QUEUED), None)
    return Progress(total, done, unavailable, failed, cancelled, current)


def skipped_text(p: Progress, lang: Lang) -> str:
    """ "2 unavailable, skipped" and the like, in `lang`; "" when nothing was skipped."""
    if p.unavailable and p.failed:
        return lang.gettext("%(unavailable)s unavailable, %(failed)s failed, skipped", unavailable=p.unavailable,
                            failed=p.failed)
    if p.unavailable:
        return lang.ngettext("%(n)s unavailable, skipped", "%(n)s unavailable, skipped", p.unavailable)
    if p.failed:
        return lang.ngettext("%(n)s failed, skipped", "%(n)s failed, skipped", p.failed)
    return ""
