"""The conversion stage: ffmpeg to a tagged CBR MP3 that fits the delivery limit."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import i18n
from common.clip import Clip, parse_range, span_label
from common.errors import Code, JobError, limit_hint
from common.filenames import safe_filename, track_filename
from common.i18n import N_, Msg
from common.jobs import Job
from common.settings import Settings
from common.textlimits import TITLE_CHARS, cut, part_suffix
from tasks import chapters, ffmpeg, images, loudness
from tasks.fit import TAG_ROOM, Plan, plan
from tasks.lifecycle import source_file, thumbnail_file
from tasks.progress import StageReporter
from tasks.tags import write_album_track, write_tags

COVER_NAME = "cover.jpg"

log = logging.getLogger(__name__)


def convert(job: Job, settings: Settings, source_dir: Path, workdir: Path, outdir: Path,
            reporter: StageReporter) -> list[Path]:
    """Encode the source downloaded into source_dir, working in workdir, into outdir; return the MP3s in order.

    The limits hold on what is really decoded, not on what the file's header
    says: a source longer than MAX_DURATION is stopped as it passes the limit,
    one that ends well before its stated length is incomplete (BAD_MEDIA), and
    the MP3 is fitted to the delivery limit on its real length.

    A range (job.clip) is cut here: ffmpeg seeks on its input to the start (decoding only from
    there, accurately, as it re-encodes anyway) and stops at the end, so what is thrown away
    is never decoded; fit, parts, progress and the title go by the range's length.

    Loudness (tasks/loudness.py): a job with a target is measured first ("normalising", the first
    MEASURE_SHARE of the conversion's percent range) and gets one gain in the encode; every MP3 gets
    ReplayGain tags, from that measurement or from one made during the encode.
    """
    source = source_file(source_dir)
    if source is None:
        raise JobError(Code.BAD_MEDIA, "no downloaded source")
    info = ffmpeg.probe(source)
    if not info.has_audio:  # a video without sound; nothing readable at all is bad media
        raise JobError(Code.NO_AUDIO) if info.has_video else JobError(Code.BAD_MEDIA, "no audio or video stream")
    duration = info.duration or ffmpeg.measure_duration(source)
    if not duration:
        raise JobError(Code.BAD_MEDIA, "no duration")
    _check_length(duration, settings)
    span = _span(job, duration)
    length = duration - span.start if span.length is None else span.length
    title, artist = _names(job, info.tags)
    thumbnail = thumbnail_file(source_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    cover = ffmpeg.make_cover(thumbnail, workdir / COVER_NAME, images.MAX_PIXELS) if thumbnail else None
    cover_bytes = cover.stat().st_size if cover else 0
    # A range's MP3 is not split by the source's chapters (nor offered to be): they are the whole's.
    found = [] if job.clip else chapters.clean(job.chapters, duration) or chapters.from_container(source, duration)
    tracks = _tracks(job, found, settings, cover_bytes)
    target = plan(length, job.bitrate, settings.min_bitrate, job.limit_bytes, cover_bytes)
    if tracks:
        target = tracks
    reporter.progress(0.0, title=title + _range_suffix(job, span, length), uploader=artist,
                      duration=round(length, 2), bitrate=target.bitrate, chapters=found)
    reporter.flush()

    encoded = workdir / "audio.mp3"
    level = _level(job, source, span, length, settings, reporter)
    real, gain = _encode(source, encoded, target.bitrate, span, length, settings, reporter, level)
    _check_complete(span.of(info.declared), real)
    if tracks:  # the tracks as really decoded: the files and the job's chapters match one to one
        found = chapters.clean(found, real) or found
        reporter.progress(1.0, duration=round(real, 2), bitrate=target.bitrate, chapters=found, step="",
                          replaygain=_as_list(gain))
        reporter.flush()
        return _publish_tracks(encoded, found, title, artist, cover, outdir, gain)
    if abs(real - length) > _tolerance(length):  # the header was wrong: fit what is really there
        log.info("job %s: source says %.1fs, decodes to %.1fs", job.id, length, real)
        length = real
        refit = plan(length, job.bitrate, settings.min_bitrate, job.limit_bytes, cover_bytes)
        if refit.bitrate != target.bitrate:
            real, gain = _encode(source, encoded, refit.bitrate, span, length, settings, reporter, level)
        target = refit
    suffix = _range_suffix(job, span, length)
    reporter.progress(1.0, title=title + suffix, duration=round(length, 2), bitrate=target.bitrate, step="",
                      replaygain=_as_list(gain))
    reporter.flush()
    return _publish(encoded, target.parts, length, title, artist, cover, outdir, job, suffix, gain,
                    i18n.get(settings.default_language))


def _tracks(job: Job, found: list[chapters.Chapter], settings: Settings, cover_bytes: int) -> Plan | None:
    """For a job that splits by chapters: the encoding every chapter fits at, or None to deliver the whole
    (no chapters, or one so long that even it would need parts)."""
    if not job.split or not found:
        return None
    longest = max(c["end"] - c["start"] for c in found)
    target = plan(longest, job.bitrate, settings.min_bitrate, job.limit_bytes, cover_bytes)
    if target.parts > 1:
        log.info("job %s: a chapter of %.0fs does not fit the limit; delivering the whole", job.id, longest)
        return None
    return target


@dataclass(frozen=True)
class Span:
    """Where the encode starts in the source, and how long it runs (None: to the source's end)."""

    start: float = 0.0
    length: float | None = None

    def of(self, duration: float | None) -> float | None:
        """How much of a source of this length the span holds."""
        if duration is None:
            return None
        return (duration if self.length is None else min(duration, self.start + self.length)) - self.start


def _span(job: Job, duration: float) -> Span:
    """The job's range in a source of this length (all of it without one); BAD_RANGE when it isn't there."""
    clip = parse_range(job.clip) if job.clip else Clip()
    start, end = clip.within(duration)
    return Span(start, end - start if clip.end is not None and clip.end < duration else None)


def _range_suffix(job: Job, span: Span, length: float) -> str:
    """A range's MP3 is named with the range it holds, " (1:30–4:05)" after the title, to the real end
    when it runs to the source's end. Added after any cut of the title, as a part number is."""
    if not job.clip:
        return ""
    end = span.start + span.length if span.length is not None else round(span.start + length)
    return f" ({span_label(span.start, end)})"


@dataclass(frozen=True)
class Level:
    """What the encode does about loudness: one gain from a first pass's measurement, or (without one)
    measure for ReplayGain on the way. `start`: where the encode begins in the conversion's percent range."""

    measured: loudness.Loudness | None = None
    gain: float = 0.0
    start: float = 0.0

    @property
    def audio_filter(self) -> str:
        return f"volume={self.gain:.2f}dB" if self.measured else loudness.MEASURE_WHILE_ENCODING

    def replaygain(self, lines: list[str]) -> loudness.ReplayGain | None:
        """The MP3's ReplayGain: from the first pass and the gain applied, or from the encode's own log."""
        if self.measured:
            return loudness.replaygain(self.measured, self.gain)
        found = loudness.summary(lines)
        return loudness.replaygain(found) if found else None


def _level(job: Job, source: Path, span: Span, duration: float, settings: Settings,
           reporter: StageReporter) -> Level:
    """For a job with a loudness target, the first pass: decode the span once, measure it (EBU R128)."""
    if job.loudness is None:
        return Level()
    reporter.progress(0.0, step=loudness.NORMALISING)
    reporter.flush()
    lines: list[str] = []
    ffmpeg.run_with_progress(source, [*_stop(span, settings), *loudness.MEASURE], duration,
                             _on_progress(reporter, settings, span, duration, 0.0, loudness.MEASURE_SHARE),
                             input_options=_seek(span), info=lines)
    measured = loudness.summary(lines)
    gain = loudness.gain(measured, job.loudness) if measured else 0.0
    log.info("job %s: measured %s, gain %+.2f dB for %g LUFS", job.id, measured, gain, job.loudness)
    reporter.progress(loudness.MEASURE_SHARE, step="")
    reporter.flush()
    return Level(measured, gain, loudness.MEASURE_SHARE)


def _encode(source: Path, encoded: Path, bitrate: int, span: Span, duration: float, settings: Settings,
            reporter: StageReporter, level: Level) -> tuple[float, loudness.ReplayGain | None]:
    """ffmpeg to a CBR MP3 of the span, at the level's gain; returns its real length and ReplayGain,
    stopping as soon as the source passes MAX_DURATION. `duration` is the length expected, for progress."""
    lines: list[str] = []
    length = ffmpeg.run_with_progress(
        source,
        ["-map", "0:a:0", "-vn", "-map_metadata", "-1", "-af", level.audio_filter,
         "-c:a", "libmp3lame", "-b:a", f"{bitrate}k", *_stop(span, settings), str(encoded)],
        duration, _on_progress(reporter, settings, span, duration, level.start, 1.0),
        input_options=_seek(span), info=lines,
    )
    if not length or not encoded.is_file() or encoded.stat().st_size == 0:
        raise JobError(Code.BAD_MEDIA, "no audio could be decoded")
    _check_length(span.start + length, settings)
    return length, level.replaygain(lines)


def _as_list(gain: loudness.ReplayGain | None) -> list[float]:
    return [gain.gain, gain.peak] if gain else []


def _seek(span: Span) -> list[str] | None:
    return ["-ss", f"{span.start:.3f}"] if span.start else None


def _stop(span: Span, settings: Settings) -> list[str]:
    """The end of the span, and a hard stop past MAX_DURATION even if progress reports were to lag."""
    stop = settings.max_duration + 1
    return ["-t", f"{min(span.length, stop) if span.length is not None else stop:.3f}"]


def _on_progress(reporter: StageReporter, settings: Settings, span: Span, duration: float, low: float,
                 high: float) -> Callable[[float, float], None]:
    """A pass's progress as part `low`..`high` of the stage; the source's length checked as it decodes."""
    started = time.monotonic()

    def on_progress(fraction: float, done: float) -> None:
        _check_length(span.start + done, settings)
        elapsed = max(time.monotonic() - started, 1e-3)
        speed = done / elapsed
        reporter.progress(low + (high - low) * fraction, speed=round(speed, 1),
                          eta=round(max(duration - done, 0.0) / speed, 1) if speed else None)

    return on_progress


def _check_length(seconds: float, settings: Settings) -> None:
    if seconds > settings.max_duration:
        raise JobError(Code.TOO_LONG, f"{seconds:.0f}s", hint=limit_hint(i18n.duration(settings.max_duration)))


def _tolerance(seconds: float) -> float:
    """How far a decoded length may fall from a stated one: encoder padding, rounding, start offsets."""
    return 2.0 + 0.01 * seconds


def _check_complete(declared: float | None, length: float) -> None:
    """A file that decodes to much less than its header states is cut: an MP3 of a part is no answer."""
    if declared and length < declared - _tolerance(declared):
        raise JobError(Code.BAD_MEDIA, f"decodes to {length:.1f}s of {declared:.1f}s",
                       hint=Msg(N_("It is incomplete: the audio stops at %(length)s of %(declared)s."),
                                length=i18n.duration(length), declared=i18n.duration(declared)))


def _names(job: Job, tags: dict[str, str]) -> tuple[str, str]:
    """Title and artist: the site's, or for a bare media file, the file's own tags."""
    title, artist = job.title, job.uploader
    if job.direct and not (job.parent and job.title):  # an album's entry named by its playlist keeps that name
        title = cut(tags.get("title") or title, TITLE_CHARS)
        artist = cut(artist or tags.get("artist") or tags.get("album_artist") or "", TITLE_CHARS)
    return title or "audio", artist


def _publish(
    encoded: Path, parts: int, duration: float, title: str, artist: str, cover: Path | None, outdir: Path, job: Job,
    suffix: str = "", gain: loudness.ReplayGain | None = None, lang: i18n.Lang | None = None,
) -> list[Path]:
    """The MP3 (or its parts) tagged and named; `suffix` (a range) follows the title after any cut. Parts
    share the whole's ReplayGain: they are pieces of one track. Their "(1 of 3)" is in `lang` (the files are
    everyone's: DEFAULT_LANGUAGE's)."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    if cover:
        cover = Path(shutil.copy(cover, outdir / COVER_NAME))
    if parts == 1:
        write_tags(encoded, title + suffix, artist, cover, track=f"{job.track}/{job.tracks}" if job.track else "",
                   album=job.album, album_artist=job.album_artist, replaygain=gain)
        final = outdir / safe_filename(title, f"{suffix}.mp3")
        shutil.move(encoded, final)
        return [final]
    pieces = _split_within(encoded, parts, duration, job.limit_bytes or 0, cover)
    files = []
    for number, piece in enumerate(pieces, 1):
        # after any cut: every part keeps a name of its own
        part = suffix + part_suffix(number, len(pieces), lang or i18n.get(i18n.SOURCE))
        write_tags(piece, title + part, artist, cover, track=f"{number}/{len(pieces)}", album=job.album,
                   album_artist=job.album_artist, replaygain=gain)
        final = outdir / safe_filename(title, f"{part}.mp3")
        shutil.move(piece, final)
        files.append(final)
    return files


def _publish_tracks(encoded: Path, found: list[chapters.Chapter], title: str, artist: str, cover: Path | None,
                    outdir: Path, gain: loudness.ReplayGain | None = None) -> list[Path]:
    """One MP3 per chapter, tagged as an album: the video's title, the uploader, track n/N, the cover;
    ReplayGain of each track (measured on it) and of the album (the whole)."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    if cover:
        cover = Path(shutil.copy(cover, outdir / COVER_NAME))
    files = []
    for number, track in enumerate(chapters.cut_tracks(encoded, found, encoded.parent), 1):
        chapter = found[number - 1]["title"]
        write_album_track(track, chapter, title, artist, number, len(found), cover, _replaygain_of(track), gain)
        final = outdir / track_filename(number, len(found), chapter)
        shutil.move(track, final)
        files.append(final)
    encoded.unlink(missing_ok=True)
    return files


def _replaygain_of(mp3: Path) -> loudness.ReplayGain | None:
    """An MP3's own ReplayGain, measured by decoding it (a chapter cut from the whole)."""
    lines: list[str] = []
    ffmpeg.run_with_progress(mp3, ["-map", "0:a:0", "-af", loudness.MEASURE_WHILE_ENCODING, "-f", "null", "-"],
                             None, lambda fraction, done: None, info=lines)
    found = loudness.summary(lines)
    return loudness.replaygain(found) if found else None


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
