"""A source's chapters, and one MP3 per chapter cut from the converted whole.

Chapters come from yt-dlp's info (the site's list) or, when it has none, from the container
itself (ffprobe -show_chapters, with the same protocol and format allow-list as every call on
downloaded input). Both are strangers' data: at most MAX_CHAPTERS, titles cut, times checked.

Splitting runs as a job of its own (the original request plus "chapters": its own fingerprint,
cache entry and de-duplication), because the whole MP3 of the first job is removed once it is
delivered and a press may come much later. Within that job the source is encoded once and the
tracks are cut from the MP3 with `-c copy` (accurate to an MP3 frame, ~26 ms): no second encode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import Code, JobError
from common.textlimits import TITLE_CHARS, cut
from tasks import ffmpeg

MAX_CHAPTERS = 100
MIN_SECONDS = 0.5  # a shorter chapter is a marker, not a track

Chapter = dict[str, Any]  # {"title": str, "start": float, "end": float}


def clean(raw: Any, duration: float | None = None) -> list[Chapter]:
    """Chapters as we keep them: in order, non-overlapping, within the duration, titled; [] for fewer than 2."""
    found: list[Chapter] = []
    for number, item in enumerate(raw if isinstance(raw, list) else [], 1):
        if len(found) >= MAX_CHAPTERS:
            break
        if not isinstance(item, dict):
            continue
        start = _seconds(item.get("start_time", item.get("start")))
        end = _seconds(item.get("end_time", item.get("end")))
        if start is None or end is None:
            continue
        if duration:
            end = min(end, duration)
        if found:
            start = max(start, found[-1]["end"])
        if end - start < MIN_SECONDS:
            continue
        title = item.get("title")
        if not isinstance(title, str) and isinstance(item.get("tags"), dict):
            title = item["tags"].get("title")
        title = " ".join(title.split()) if isinstance(title, str) else ""
        found.append({"title": cut(title or f"Chapter {number}", TITLE_CHARS), "start": start, "end": end})
    return found if len(found) >= 2 else []


def _seconds(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def from_container(source: Path, duration: float | None) -> list[Chapter]:
    """The container's own chapters; [] when it has none or they can't be read."""
    return clean(ffmpeg.probe_chapters(source), duration)


def cut_tracks(mp3: Path, chapters: list[Chapter], folder: Path) -> list[Path]:
    """One MP3 per chapter, cut from the converted whole without re-encoding, in order; distinct names."""
    tracks = []
    for number, chapter in enumerate(chapters, 1):
        out = folder / f"track{number:03d}.mp3"
        ffmpeg.run([*ffmpeg.media_input(mp3, ("mp3",)), "-ss", f"{chapter['start']:.3f}", "-to",
                    f"{chapter['end']:.3f}", "-map", "0:a", "-c", "copy", str(out)])
        if not out.is_file() or out.stat().st_size == 0:
            raise JobError(Code.BAD_MEDIA, f"chapter {number} came out empty")
        tracks.append(out)
    return tracks
