"""Status text of a job: a pure function of its state and its reader's language, shared by both bots.

Each platform passes its own `Markup` (how to escape and emphasise, how long a text may be and
how the platform counts it), so titles and error texts that strangers chose can never break a
message nor make it too long: they are shortened as plain text, before the markup is added.
Every text of ours is said in the reader's `Lang` (common/i18n.py); in a right-to-left language
the left-to-right parts (titles, the bar with its percent, links) are isolated, so that neither
they nor the sentence around them turn around.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from common import albums, i18n
from common.i18n import N_, Lang
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


# A button's icon and its words (said in the reader's language).
BUTTONS = {Button.CANCEL: ("✖", N_("Cancel")), Button.RETRY: ("↻", N_("Retry")),
           Button.SPLIT: ("✂", N_("Split into tracks")), Button.START: ("▶", N_("Start"))}
LABELS = {button: f"{icon} {words}" for button, (icon, words) in BUTTONS.items()}  # in English


def button_label(button: Button, lang: Lang, tracks: int = 0) -> str:
    icon, words = BUTTONS[button]
    if button == Button.SPLIT and tracks:
        return f"{icon} " + lang.ngettext("Split into %(n)s track", "Split into %(n)s tracks", tracks)
    return f"{icon} {lang.gettext(words)}"


@dataclass(frozen=True)
class StatusView:
    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    done: bool = False  # delivered: a bot may remove the status message instead
    job_id: str = ""  # what the buttons act on
    tracks: int = 0  # chapters a split would make
    labels: tuple[str, ...] = ()  # the buttons' labels, in the reader's language (as `render` made them)

    def label(self, button: Button) -> str:
        if button in self.buttons and len(self.labels) == len(self.buttons):
            return self.labels[self.buttons.index(button)]
        return button_label(button, i18n.get(i18n.SOURCE), self.tracks)


def _view(lang: Lang, text: str, buttons: tuple[Button, ...] = (), *, done: bool = False, job_id: str = "",
          tracks: int = 0) -> StatusView:
    """A view with its buttons labelled in `lang`."""
    return StatusView(text, buttons, done, job_id, tracks, tuple(button_label(b, lang, tracks) for b in buttons))


@dataclass(frozen=True)
class QueueInfo:
    ahead: int | None = None  # jobs waiting before this one
    workers: int | None = None  # workers serving the download queue right now


# Each stage's icon and name, and a named part of a stage (Job.step), shown instead of its stage.
STAGE = {
    State.QUEUED: ("⏳", N_("Queued")),
    State.DOWNLOADING: ("⬇️", N_("Downloading")),
    State.CONVERTING: ("🎛", N_("Converting")),
    State.CLEANING: ("📦", N_("Finishing")),
    State.READY: ("📤", N_("Uploading")),
    State.DELIVERED: ("✅", N_("Done")),
}
STEP = {"normalising": ("🎚", N_("Normalising"))}
# What an album's track in progress is doing, after its title: "3. Song (downloading)".
TRACK_STATE = {
    # i18n: what an album's track is doing, in brackets after its title: "3. Song (queued)"
    State.QUEUED: N_("queued"),
    State.DOWNLOADING: N_("downloading"),
    State.CONVERTING: N_("converting"),
    State.CLEANING: N_("finishing"),
}


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(width * min(max(percent, 0.0), 100.0) / 100)
    return "▰" * filled + "▱" * (width - filled)


def _bar(percent: float, lang: Lang) -> str:
    """The bar and its percent, kept together left to right."""
    return lang.ltr(f"{progress_bar(percent)} {lang.percent(percent)}")


def render(job: Job, markup: Markup, lang: Lang, queue: QueueInfo | None = None) -> StatusView:
    """What the status message says now, in `lang`, and which buttons it has."""
    def title(text: str) -> str:
        return markup.bold(lang.ltr(text)) if text else markup.escape(lang.gettext("Your link"))

    def fitted(compose: Callable[..., str], *pieces: str) -> str:
        return fit(compose, pieces, markup.measure, markup.message_limit)

    def ending(icon: str, words: str) -> str:
        return fitted(lambda t: f"{icon} {title(t)}\n{markup.escape(words)}", job.title)

    if job.state == State.FAILED:
        buttons = (Button.RETRY,) if job.retryable else ()
        text = fitted(lambda t, e: f"❌ {title(t)}\n{markup.escape(e)}", job.title,
                      job.said("error_text", lang) or lang.gettext("Something went wrong."))
        return _view(lang, text, buttons, job_id=job.id)
    if job.state == State.CANCELLED:
        return _view(lang, ending("🚫", lang.gettext("Cancelled.")))
    if job.state == State.DELIVERED:
        if job.split and len(job.chapters) == len(job.files) > 1:
            done = lang.ngettext("Done: %(n)s track.", "Done: %(n)s tracks.", len(job.files))
            return _view(lang, ending("✅", done), done=True)
        splits = split_tracks(job)
        return _view(lang, ending("✅", lang.gettext("Done.")), (Button.SPLIT,) if splits else (), done=True,
                     job_id=job.id, tracks=splits)
    details = _details(job, queue, lang)
    icon, name = STEP[job.step] if job.state == State.CONVERTING and job.step in STEP else STAGE[job.state]

    def running(t: str, message: str) -> str:
        stage = f"{icon} {markup.escape(lang.gettext(name))}  {markup.escape(_bar(job.percent, lang))}"
        lines = [f"🎵 {title(t)}", stage]
        lines += [markup.escape(line) for line in (details, message) if line]
        return "\n".join(lines)

    buttons = () if job.state == State.READY else (Button.CANCEL,)
    return _view(lang, fitted(running, job.title, job.said("message", lang)), buttons, job_id=job.id)


def split_tracks(job: Job) -> int:
    """The tracks "Split into N tracks" would make of this job's MP3: 0 when it is split already or has no
    chapters to split by."""
    return len(job.chapters) if not job.split and len(job.chapters) > 1 else 0


def split_offer(ref: str, tracks: int, lang: Lang) -> StatusView:
    """The split button alone (labelled in `lang`), under an MP3 sent from the cache: `ref` is its offer
    (common.cache.offer)."""
    return _view(lang, "", (Button.SPLIT,), job_id=ref, tracks=tracks)


def render_album(album: Job, tracks: list[Job | None], markup: Markup, lang: Lang, delivered: int = 0) -> StatusView:
    """An album's one status message, in `lang`: tracks done of all, a bar, the track in progress, what was skipped.

    `delivered`: tracks already sent to this chat (or skipped), in playlist order; all of them: the album is done.
    """
    p = albums.progress(tracks, album.tracks or len(tracks))
    skipped = albums.skipped_text(p, lang)
    name = album.album or album.title or lang.gettext("Album")

    def fitted(compose: Callable[..., str], *pieces: str) -> str:
        return fit(compose, pieces, markup.measure, markup.message_limit)

    def head(icon: str, t: str) -> str:
        return f"{icon} {markup.bold(lang.ltr(t))}"

    if delivered >= p.total and p.total:
        sent = lang.ngettext("%(n)s track delivered", "%(n)s tracks delivered", p.done)
        summary = " · ".join(x for x in (sent, skipped) if x)
        return _view(lang, fitted(lambda t: f"{head('✅', t)}\n{markup.escape(summary)}", name), done=not skipped)
    if album.confirm:
        ask = lang.ngettext("%(n)s track: it counts as %(n)s conversion. Start?",
                            "%(n)s tracks: they count as %(n)s conversions. Start?", p.total)
        return _view(lang, fitted(lambda t: f"{head('💿', t)}\n{markup.escape(ask)}", name),
                     (Button.START, Button.CANCEL), job_id=album.id)
    now = p.current
    done = lang.gettext("%(done)s of %(total)s done", done=p.done, total=p.total)

    def running(t: str, current: str) -> str:
        lines = [head("💿", t), f"{markup.escape(done)}  {markup.escape(_bar(p.percent, lang))}"]
        if now is not None:
            state = lang.gettext(TRACK_STATE.get(now.state, N_("queued")))
            lines.append(f"▶ {lang.number(now.track)}. {markup.escape(lang.ltr(current))} ({markup.escape(state)})")
        if skipped:
            lines.append(markup.escape(skipped))
        return "\n".join(lines)

    current = (now.title or lang.gettext("track")) if now is not None else ""
    return _view(lang, fitted(running, name, current), (Button.CANCEL,), job_id=album.id)


def _details(job: Job, queue: QueueInfo | None, lang: Lang) -> str:
    if job.state == State.QUEUED:
        return _queue_line(queue, lang)
    parts = []
    if job.state == State.DOWNLOADING and job.speed:
        parts.append(lang.speed(job.speed))
    if job.state == State.CONVERTING and job.speed:
        # i18n: how fast ffmpeg converts: "30× realtime" is 30 seconds of audio a second
        parts.append(lang.gettext("%(times)s× realtime", times=round(job.speed)))
    if job.eta is not None and job.state in (State.DOWNLOADING, State.CONVERTING):
        parts.append(lang.gettext("%(time)s left", time=i18n.duration(job.eta)))
    return " · ".join(parts)


def _queue_line(queue: QueueInfo | None, lang: Lang) -> str:
    if queue is None:
        return ""
    if queue.workers == 0:
        return lang.gettext("No worker is online right now: your job waits safely and starts as soon as one is.")
    if queue.ahead:
        return lang.ngettext("%(n)s job ahead of yours.", "%(n)s jobs ahead of yours.", queue.ahead)
    return lang.gettext("Starting soon.")


def track(job: Job, part: int, lang: Lang) -> tuple[str, str, float | None]:
    """What a delivered file is called (title, and a part suffix in `lang` kept whole) and how long it is: a
    chapter's own title and length, or the job's title with "(2 of 3)" and an equal share."""
    if job.split and len(job.chapters) == len(job.files):
        chapter = job.chapters[part]
        return str(chapter.get("title", "")), "", float(chapter["end"]) - float(chapter["start"])
    share = job.duration / len(job.files) if job.duration and job.files else None
    return job.title, part_suffix(part + 1, len(job.files), lang), share


def caption(title: str, url: str, markup: Markup, lang: Lang, suffix: str = "") -> str:
    """The caption under a delivered MP3: its title (and part `suffix`, kept whole) and where it came from
    (both isolated in a right-to-left language)."""
    return fit(lambda t, u: f"{markup.bold(lang.ltr(t + suffix))}\n{lang.ltr(markup.link(u))}", (title, url),
               markup.measure, markup.caption_limit)


def captions(files: list[tuple[str, str, str]], markup: Markup, lang: Lang) -> str:
    """The text of one message carrying several MP3s: a line per file (title, part suffix kept whole, and
    where it came from), held within the caption limit as `caption` is. `files`: (title, url, suffix)."""
    suffixes = [suffix for _, _, suffix in files]

    def compose(*pieces: str) -> str:
        return "\n".join(f"{markup.bold(lang.ltr(title + suffix))} {lang.ltr(markup.link(url))}"
                         for title, url, suffix in zip(pieces[::2], pieces[1::2], suffixes, strict=True))

    return fit(compose, [piece for title, url, _ in files for piece in (title, url)], markup.measure,
               markup.caption_limit)
