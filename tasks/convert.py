"""The conversion stage: ffmpeg to a tagged CBR MP3 that fits the delivery limit."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from common.errors import Code, JobError, human_duration
from common.filenames import safe_filename
from common.jobs import Job
from common.settings import Settings
from tasks import ffmpeg
from tasks.download import source_file, thumbnail_file
from tasks.fit import TAG_ROOM, plan
from tasks.progress import StageReporter
from tasks.tags import write_tags

COVER_NAME = "cover.jpg"


def convert(job: Job, settings: Settings, workdir: Path, outdir: Path, reporter: StageReporter) -> list[Path]:
    """Encode the downloaded source into outdir; return the MP3 files in order."""
    source = source_file(workdir)
    if source is None:
        raise JobError(Code.BAD_MEDIA, "no downloaded source")
    info = ffmpeg.probe(source)
    if not info.has_audio:
        raise JobError(Code.NO_AUDIO)
    duration = info.duration or ffmpeg.measure_duration(source)
    if not duration:
        raise JobError(Code.BAD_MEDIA, "no duration")
    if duration > settings.max_duration:
        raise JobError(Code.TOO_LONG, hint=f"The limit is {human_duration(settings.max_duration)}.")
    title, artist = _names(job, info.tags)
    thumbnail = thumbnail_file(workdir)
    cover = ffmpeg.make_cover(thumbnail, workdir / COVER_NAME) if thumbnail else None
    target = plan(duration, job.bitrate, settings.min_bitrate, job.limit_bytes, cover.stat().st_size if cover else 0)
    reporter.progress(0.0, title=title, uploader=artist, duration=round(duration, 2), bitrate=target.bitrate)
    reporter.flush()

    encoded = workdir / "audio.mp3"
    started = time.monotonic()

    def on_progress(fraction: float, done: float) -> None:
        elapsed = max(time.monotonic() - started, 1e-3)
        speed = done / elapsed
        reporter.progress(fraction, speed=round(speed, 1), eta=round((duration - done) / speed, 1) if speed else None)

    ffmpeg.run_with_progress(
        ["-i", str(source), "-map", "0:a:0", "-vn", "-map_metadata", "-1",
         "-c:a", "libmp3lame", "-b:a", f"{target.bitrate}k", str(encoded)],
        duration, on_progress,
    )
    reporter.progress(1.0)
    reporter.flush()
    return _publish(encoded, target.parts, duration, title, artist, cover, outdir, job.limit_bytes)


def _names(job: Job, tags: dict[str, str]) -> tuple[str, str]:
    """Title and artist: the site's, or for a bare media file, the file's own tags."""
    title, artist = job.title, job.uploader
    if job.direct:
        title = tags.get("title") or title
        artist = artist or tags.get("artist") or tags.get("album_artist") or ""
    return title or "audio", artist


def _publish(
    encoded: Path, parts: int, duration: float, title: str, artist: str, cover: Path | None, outdir: Path,
    limit: int | None,
) -> list[Path]:
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    if cover:
        cover = Path(shutil.copy(cover, outdir / COVER_NAME))
    if parts == 1:
        write_tags(encoded, title, artist, cover)
        final = outdir / safe_filename(title)
        shutil.move(encoded, final)
        return [final]
    pieces = _split_within(encoded, parts, duration, limit or 0, cover)
    files = []
    for number, piece in enumerate(pieces, 1):
        part_title = f"{title} ({number} of {len(pieces)})"
        write_tags(piece, part_title, artist, cover, track=f"{number}/{len(pieces)}")
        final = outdir / safe_filename(part_title)
        shutil.move(piece, final)
        files.append(final)
    return files


def _split_within(encoded: Path, parts: int, duration: float, limit: int, cover: Path | None) -> list[Path]:
    """Split into parts, one more each time a piece comes out over the limit."""
    room = limit - TAG_ROOM - (cover.stat().st_size if cover else 0)
    for count in range(parts, parts + 4):
        for old in encoded.parent.glob("part*.mp3"):
            old.unlink()
        pieces = ffmpeg.split(encoded, count, duration, encoded.with_name("part%03d.mp3"))
        if all(p.stat().st_size <= room for p in pieces):
            return pieces
    raise JobError(Code.TOO_LARGE, "could not split under the delivery limit")
