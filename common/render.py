"""Status text of a job: a pure function of its state, shared by both bots.

Each platform passes its own `Markup` (how to escape and emphasise, how long a text may be and
how the platform counts it), so titles and error texts that strangers chose can never break a
message nor make it too long: they are shortened as plain text, before the markup is added.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from common import albums
from common.errors import human_bytes, human_duration
from common.jobs import Job, State
from common.textlimits import (
    DISCORD_CONTENT,
    DISCORD_MENTION,
    TELEGRAM_CAPTION,
    TELEGRAM_MESSAGE,
    fit,
    part_suffix,
    utf16_len,
)

BAR_WIDTH = 12
_TAG = re.compile(r"<[^>]*>")  # only ours: a "<" in user text is escaped


class Markup(Protocol):
    message_limit: int  # a message's text, as `measure` counts it
    caption_limit: int  # the text under a file

    def measure(self, text: str) -> int: ...

    def escape(self, text: str) -> str: ...

    def bold(self, text: str) -> str: ...

    def link(self, url: str) -> str: ...


class HtmlMarkup:
    """Telegram's HTML parse mode."""

    message_limit = TELEGRAM_MESSAGE
    caption_limit = TELEGRAM_CAPTION

    def measure(self, text: str) -> int:
        """What Telegram counts: the visible text (tags gone, entities decoded) in UTF-16 code units."""
        return utf16_len(html.unescape(_TAG.sub("", text)))

    def escape(self, text: str) -> str:
        return html.escape(text, quote=False)

    def bold(self, text: str) -> str:
        return f"<b>{self.escape(text)}</b>"

    def link(self, url: str) -> str:
        return self.escape(url)


class MarkdownMarkup:
    """Discord's markdown: every markdown character and mention in user text is neutralised.

    A backslash makes Discord show any ASCII punctuation as it is; `<` starts mentions of
    channels, commands and timestamps (`<#1>`, `</x:1>`, `<t:0>`), `@` pings (`@everyone`).
    """

    _special = re.compile(r"([\\*_`~|<>#\[\]()\-+.!:])")
    message_limit = caption_limit = DISCORD_CONTENT - DISCORD_MENTION  # room for the requester's mention

    def measure(self, text: str) -> int:
        """What Discord counts: the code points of the content as sent, escapes included."""
        return len(text)

    def escape(self, text: str) -> str:
        text = self._special.sub(r"\\\1", text)
        return text.replace("@", "@\u200b")  # no @everyone, no pings from a title

    def bold(self, text: str) -> str:
        return f"**{self.escape(text)}**"

    def link(self, url: str) -> str:
        """A clickable link without a preview; characters that would end it early are %-encoded."""
        return "<" + re.sub(r"[<>\s]", lambda m: f"%{ord(m.group()):02X}", url) + ">"


class Button(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"
    SPLIT = "split"
    START = "start"


LABELS = {Button.CANCEL: "✖ Cancel", Button.RETRY: "↻ Retry", Button.SPLIT: "✂ Split into tracks",
          Button.START: "▶ Start"}


@dataclass(frozen=True)
class StatusView:
    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    done: bool = False  # delivered: a bot may remove the status message instead
    job_id: str = ""  # what the buttons act on
    tracks: int = 0  # chapters a split would make

    def label(self, button: Button) -> str:
        return f"✂ Split into {self.tracks} tracks" if button == Button.SPLIT and self.tracks else LABELS[button]


@dataclass(frozen=True)
class QueueInfo:
    ahead: int | None = None  # jobs waiting before this one
    workers: int | None = None  # workers serving the download queue right now


STAGE_LABEL = {
    State.QUEUED: "⏳ Queued",
    State.DOWNLOADING: "⬇️ Downloading",
    State.CONVERTING: "🎛 Converting",
    State.CLEANING: "📦 Finishing",
    State.READY: "📤 Uploading",
    State.DELIVERED: "✅ Done",
}


# A named part of a stage (Job.step) shows instead of the stage.
STEP_LABEL = {"normalising": "🎚 Normalising"}


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(width * min(max(percent, 0.0), 100.0) / 100)
    return "▰" * filled + "▱" * (width - filled)


def render(job: Job, markup: Markup, queue: QueueInfo | None = None) -> StatusView:
    """What the status message says now, and which buttons it has."""
    def title(text: str) -> str:
        return markup.bold(text) if text else markup.escape("Your link")

    def fitted(compose: Callable[..., str], *pieces: str) -> str:
        return fit(compose, pieces, markup.measure, markup.message_limit)

    if job.state == State.FAILED:
        buttons = (Button.RETRY,) if job.retryable else ()
        text = fitted(lambda t, e: f"❌ {title(t)}\n{markup.escape(e)}", job.title,
                      job.error_text or "Something went wrong.")
        return StatusView(text, buttons, job_id=job.id)
    if job.state == State.CANCELLED:
        return StatusView(fitted(lambda t: f"🚫 {title(t)}\nCancelled.", job.title))
    if job.state == State.DELIVERED:
        if job.split and len(job.chapters) == len(job.files) > 1:
            return StatusView(fitted(lambda t: f"✅ {title(t)}\nDone: {len(job.files)} tracks.", job.title), done=True)
        splits = split_tracks(job)
        return StatusView(fitted(lambda t: f"✅ {title(t)}\nDone.", job.title), (Button.SPLIT,) if splits else (),
                          done=True, job_id=job.id, tracks=splits)
    details = _details(job, queue)

    def running(t: str, message: str) -> str:
        stage = STEP_LABEL.get(job.step) if job.state == State.CONVERTING else None
        lines = [f"🎵 {title(t)}", f"{stage or STAGE_LABEL[job.state]}  {progress_bar(job.percent)} {job.percent:.0f}%"]
        lines += [markup.escape(line) for line in (details, message) if line]
        return "\n".join(lines)

    buttons = () if job.state == State.READY else (Button.CANCEL,)
    return StatusView(fitted(running, job.title, job.message), buttons, job_id=job.id)


def split_tracks(job: Job) -> int:
    """The tracks "Split into N tracks" would make of this job's MP3: 0 when it is split already or has no
    chapters to split by."""
    return len(job.chapters) if not job.split and len(job.chapters) > 1 else 0


def split_offer(ref: str, tracks: int) -> StatusView:
    """The split button alone, under an MP3 sent from the cache: `ref` is its offer (common.cache.offer)."""
    return StatusView("", (Button.SPLIT,), job_id=ref, tracks=tracks)


def render_album(album: Job, tracks: list[Job | None], markup: Markup, delivered: int = 0) -> StatusView:
    """An album's one status message: tracks done of all, a bar, the track in progress, what was skipped.

    `delivered`: tracks already sent to this chat (or skipped), in playlist order; all of them: the album is done.
    """
    p = albums.progress(tracks, album.tracks or len(tracks))
    skipped = albums.skipped_text(p)
    name = album.album or album.title or "Album"
    if delivered >= p.total and p.total:
        sent = f"{p.done} track{'s' if p.done != 1 else ''}"
        text = fit(lambda t, s: f"✅ {markup.bold(t)}\n{markup.escape(s)}", (name, " · ".join(
            x for x in (f"{sent} delivered", skipped) if x)), markup.measure, markup.message_limit)
        return StatusView(text, done=not skipped)

    def running(t: str, current: str) -> str:
        lines = [f"💿 {markup.bold(t)}", f"{p.done} of {p.total} done  {progress_bar(p.percent)} {p.percent:.0f}%"]
        if current:
            lines.append(f"▶ {markup.escape(current)}")
        if skipped:
            lines.append(markup.escape(skipped))
        return "\n".join(lines)

    if album.confirm:
        ask = f"{p.total} tracks: they count as {p.total} conversions. Start?"
        return StatusView(fit(lambda t, a: f"💿 {markup.bold(t)}\n{markup.escape(a)}", (name, ask), markup.measure,
                              markup.message_limit), (Button.START, Button.CANCEL), job_id=album.id)
    now = p.current
    current = f"{now.track}. {now.title or 'track'} ({STAGE_LABEL[now.state].split(' ', 1)[1].lower()})" if now else ""
    return StatusView(fit(running, (name, current), markup.measure, markup.message_limit), (Button.CANCEL,),
                      job_id=album.id)


def _details(job: Job, queue: QueueInfo | None) -> str:
    if job.state == State.QUEUED:
        return _queue_line(queue)
    parts = []
    if job.state == State.DOWNLOADING and job.speed:
        parts.append(f"{human_bytes(job.speed)}/s")
    if job.state == State.CONVERTING and job.speed:
        parts.append(f"{job.speed:.0f}× realtime")
    if job.eta is not None and job.state in (State.DOWNLOADING, State.CONVERTING):
        parts.append(f"{human_duration(job.eta)} left")
    return " · ".join(parts)


def _queue_line(queue: QueueInfo | None) -> str:
    if queue is None:
        return ""
    if queue.workers == 0:
        return "No worker is online right now: your job waits safely and starts as soon as one is."
    if queue.ahead:
        return f"{queue.ahead} job{'s' if queue.ahead != 1 else ''} ahead of yours."
    return "Starting soon."


def track(job: Job, part: int) -> tuple[str, str, float | None]:
    """What a delivered file is called (title, and a part suffix kept whole) and how long it is: a chapter's
    own title and length, or the job's title with "(2 of 3)" and an equal share."""
    if job.split and len(job.chapters) == len(job.files):
        chapter = job.chapters[part]
        return str(chapter.get("title", "")), "", float(chapter["end"]) - float(chapter["start"])
    share = job.duration / len(job.files) if job.duration and job.files else None
    return job.title, part_suffix(part + 1, len(job.files)), share


def caption(title: str, url: str, markup: Markup, suffix: str = "") -> str:
    """The caption under a delivered MP3: its title (and part `suffix`, kept whole) and where it came from."""
    return fit(lambda t, u: f"{markup.bold(t + suffix)}\n{markup.link(u)}", (title, url), markup.measure,
               markup.caption_limit)


def captions(files: list[tuple[str, str, str]], markup: Markup) -> str:
    """The text of one message carrying several MP3s: a line per file (title, part suffix kept whole, and
    where it came from), held within the caption limit as `caption` is. `files`: (title, url, suffix)."""
    suffixes = [suffix for _, _, suffix in files]

    def compose(*pieces: str) -> str:
        return "\n".join(f"{markup.bold(title + suffix)} {markup.link(url)}"
                         for title, url, suffix in zip(pieces[::2], pieces[1::2], suffixes, strict=True))

    return fit(compose, [piece for title, url, _ in files for piece in (title, url)], markup.measure,
               markup.caption_limit)
