"""The terminal side: a worker launcher and `convert` with a live progress bar."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from celery.concurrency import get_implementation
from celery.utils.nodenames import default_nodename, host_format
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from common import albums, context, i18n, stats
from common.albums import entry_range
from common.clip import parse_range
from common.delivery import mark_delivered
from common.filenames import safe_filename, track_filename
from common.jobs import Job, State
from common.settings import get_settings, loudness_target
from common.textlimits import part_suffix
from tasks import pipeline
from tasks.celery_app import QUEUES, app

EN = i18n.get(i18n.SOURCE)  # the terminal speaks English, the catalogs' source; said through it for pybabel

# Every queue's tasks wait, on the network, the disk or an ffmpeg child, so the threads of one process
# serve them: yt-dlp and the rest are loaded once, and a running task costs a thread, not a process.
# Time limits, the pace check and cancel hold there too (tasks.interrupt); a worker killed whole is
# taken up by the heartbeat lease (tasks.watchdog). Prefork remains for those who want a process each.
POOL = "threads"


def worker(queues: str, concurrency: int | None, hostname: str | None, loglevel: str, pool: str | None = None) -> int:
    """A Celery worker; the threads pool unless asked otherwise (see POOL)."""
    settings = get_settings()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(names) - set(QUEUES)
    if unknown:
        print(f"unknown queue(s): {', '.join(sorted(unknown))}; choose from {', '.join(QUEUES)}", file=sys.stderr)
        return 2
    per_queue = {
        "download": settings.download_concurrency,
        "conversion": settings.conversion_concurrency,
        "cleanup": settings.cleanup_concurrency,
    }
    # Celery's Worker itself, as `celery worker` makes it, without loading Celery's whole command line (click
    # and every subcommand: MBs in each worker).
    started = app.Worker(hostname=host_format(default_nodename(hostname)), pool_cls=get_implementation(pool or POOL),
                         loglevel=loglevel, queues=names, concurrency=concurrency or max(per_queue[q] for q in names))
    started.start()
    return int(started.exitcode or 0)


def convert(url: str, out: str, bitrate: int | None, limit: int | None, clip: str | None = None,
            loudness: str | None = None, split: bool = False, tracks: str | None = None) -> int:
    """Submit a link, draw its progress from the job's events, copy the MP3s to `out` and print their paths.

    An album (a playlist or feed) goes into a folder named after it, a chapter split into one named after
    the video, their tracks numbered ("01 Title.mp3").
    """
    store = context.store()
    try:
        wanted, level, items = _options(clip, loudness, tracks)
    except ValueError as error:  # a RangeError is its own sentence; the others are said in _options
        print(error, file=sys.stderr)
        return 2
    origin = {"id": f"cli:{uuid.uuid4().hex[:8]}", "platform": "cli"}
    job_id, _ = pipeline.submit(url, bitrate=bitrate, limit_bytes=limit, origin=origin, items=items, split=split,
                                clip=wanted, loudness=level)
    try:
        job, entries = _follow(job_id)
    except KeyboardInterrupt:
        pipeline.cancel(job_id)  # an album's tracks too
        print("cancelled", file=sys.stderr)
        return 130
    if job.entries and job.state not in (State.FAILED, State.CANCELLED):
        return _write_album(job, entries, Path(out), origin["id"])
    if job.state != State.READY:
        print(job.error_text or f"job {job.state}", file=sys.stderr)
        return 1
    target = Path(out)
    if job.split and len(job.chapters) == len(job.files) > 1:  # one MP3 per chapter (common.render says alike)
        target /= safe_filename(job.title, "", "chapters")
    elif job.split:
        print(EN.gettext("No chapters to split by: the whole video as one MP3."), file=sys.stderr)
    target.mkdir(parents=True, exist_ok=True)
    for file in job.files:
        print(shutil.copy(file, target / Path(file).name))
    mark_delivered(store, job, origin["id"])
    return 0


def _options(clip: str | None, loudness: str | None, tracks: str | None) -> tuple[str, float | None, str]:
    """--range, --loudness and --tracks as the job takes them; ValueError with the sentence to print."""
    wanted = parse_range(clip).key if clip else ""
    try:
        level = get_settings().loudness if loudness is None else loudness_target(loudness)
    except ValueError as error:
        raise ValueError(f"--loudness {error}") from None
    items = entry_range(tracks) if tracks else ""
    if items is None:
        raise ValueError(EN.gettext("--tracks %(given)s: write the playlist's entries to take as FIRST-LAST, such as "
                                    "2-5 (the first entry is 1).", given=repr(tracks)))
    return wanted, level, items


def _write_album(album: Job, tracks: list[Job | None], out: Path, origin_id: str) -> int:
    """The album's finished tracks into a folder named after it, numbered; non-zero when any is missing."""
    store = context.store()
    folder = out / safe_filename(album.album or album.title, "", "album")
    folder.mkdir(parents=True, exist_ok=True)
    total = len(tracks)
    for number, track in enumerate(tracks, 1):
        if track is None or track.state != State.READY:
            continue
        title = track.title or Path(track.files[0]).stem
        for part, file in enumerate(track.files, 1):
            name = track_filename(number, total, title, part_suffix(part, len(track.files), EN))
            print(shutil.copy(file, folder / name))
        mark_delivered(store, track, origin_id)
    mark_delivered(store, album, origin_id)
    outcome = albums.progress(tracks, total)
    if outcome.done == total:
        return 0
    skipped = albums.skipped_text(outcome, EN) or EN.gettext("%(n)s not done", n=total - outcome.done)
    said = EN.gettext("%(done)s of %(total)s tracks written to %(folder)s; %(skipped)s", done=outcome.done,
                      total=total, folder=str(folder), skipped=skipped)
    failed = next(((n, t.error_text) for n, t in enumerate(tracks, 1)
                   if t is not None and t.state == State.FAILED and t.error_text), None)
    if failed:  # the first one's reason, on the same line
        said += " (" + EN.gettext("track %(number)s: %(error)s", number=failed[0], error=failed[1]) + ")"
    print(said, file=sys.stderr)
    return 1


def _follow(job_id: str) -> tuple[Job, list[Job | None]]:
    """The job followed to its end on a progress bar; an album to the end of its tracks (returned too)."""
    store = context.store()
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    cursors: dict[str, str] = {}
    # On stderr, and only to a terminal: stdout holds the MP3s' paths and stderr what went wrong, for scripts.
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, redirect_stdout=False,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("queued", total=100)
        while True:
            job = store.get(job_id)
            if job is None:
                raise SystemExit(f"job {job_id} vanished")
            watched = job_id
            if job.entries and not job.state.finished:  # an album: its tracks are the work
                if job.confirm:  # a large album waits for a yes; asked for at a terminal, it has it
                    pipeline.start_album(job_id)
                tracks = [store.get(t) for t in job.entries]
                album = albums.progress(tracks, len(tracks))
                bar.update(task, completed=album.percent, description=EN.gettext(
                    "%(album)s: %(done)s of %(total)s tracks", album=job.title, done=album.done, total=album.total))
                # Done tracks wait for the album's ReplayGain (tasks/albumgain.py), then are ready all at once.
                if all(t is not None and t.state.finished for t in tracks):
                    return job, tracks
                # Woken by the first track not finished; the others are read again at least every second.
                watched = next(t for t, j in zip(job.entries, tracks, strict=True) if j is None or not j.state.finished)
            else:
                label = f"{job.state}: {job.title}" if job.title else str(job.state)
                if job.state == State.QUEUED and not stats.workers_for("download"):
                    label = "queued: no worker is online; start one with `python -m tasks worker`"
                bar.update(task, completed=job.percent, description=label)
                if job.state.finished:
                    return job, []
            _, cursors[watched] = store.job_events(watched, cursors.get(watched, "0-0"), block_ms=1000)
