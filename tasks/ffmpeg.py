"""ffprobe and ffmpeg, run with argument lists (never a shell), with progress and cancel."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import Code, JobError

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]


ESTIMATED = "Estimating duration from bitrate"  # libavformat's warning when a header has no real duration


@dataclass
class Probe:
    duration: float | None
    has_audio: bool
    tags: dict[str, str]
    audio_duration: float | None = None
    estimated: bool = False  # duration guessed from size and bitrate (MP3 without a Xing header, ...)
    has_video: bool = False

    @property
    def declared(self) -> float | None:
        """The length the file's header states for its audio, when it states one rather than a guess.

        A container's own duration speaks for the audio only when there is no video: in a muxed
        file the audio may well end before the picture does.
        """
        if self.estimated:
            return None
        if self.audio_duration:
            return self.audio_duration
        return None if self.has_video else self.duration


def probe(path: Path) -> Probe:
    """What ffprobe sees in a file; BAD_MEDIA when it is not media at all."""
    cmd = ["ffprobe", "-v", "warning", "-print_format", "json", "-show_format", "-show_streams", "--", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise JobError(Code.BAD_MEDIA, _last_line(result.stderr))
    data = json.loads(result.stdout or "{}")
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    audio_duration = _float(audio[0].get("duration")) if audio else None
    duration = _float(fmt.get("duration")) or audio_duration
    tags = {k.lower(): v for k, v in (fmt.get("tags") or {}).items()}
    return Probe(duration=duration, has_audio=bool(audio), tags=tags, audio_duration=audio_duration,
                 estimated=ESTIMATED in result.stderr, has_video=any(s.get("codec_type") == "video" for s in streams))


def measure_duration(path: Path) -> float | None:
    """Duration from the audio packets themselves, for files whose header has none."""
    cmd = [
        "ffprobe", "-v", "error", "-select_streams", "a:0",
        "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", "--", str(path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    end = None
    for line in result.stdout.splitlines():
        parts = [_float(p) for p in line.split(",")[:2]]
        if parts and parts[0] is not None:
            end = parts[0] + (parts[1] or 0.0) if len(parts) > 1 else parts[0]
    return end


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def run_with_progress(
    args: list[str], duration: float | None, on_progress: Callable[[float, float], None]
) -> float | None:
    """Run ffmpeg with -progress on stdout; on_progress(fraction, seconds done) may raise to stop it.

    Returns the length written, in seconds, as ffmpeg last reported it (None if it never did).
    However it ends, the ffmpeg process is gone when this returns.
    """
    cmd = [*FFMPEG, "-progress", "pipe:1", "-nostats", *args]
    done: float | None = None
    # stderr goes to a file, not a pipe: a flood of decode errors can't block ffmpeg
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                key, _, value = line.strip().partition("=")
                if key == "out_time_us" and value.isdigit():
                    done = int(value) / 1e6
                    on_progress(min(done / duration, 1.0) if duration else 0.0, done)
            if proc.wait() != 0:
                errors.seek(0)
                raise JobError(Code.BAD_MEDIA, _last_line(errors.read()[-4000:]))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def run(args: list[str], timeout: float = 600) -> None:
    result = subprocess.run([*FFMPEG, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise JobError(Code.BAD_MEDIA, _last_line(result.stderr))


def make_cover(image: Path, out: Path, max_px: int = 320, max_bytes: int = 200_000) -> Path | None:
    """A small JPEG cover, or None when the image can't be read."""
    scale = f"scale='min({max_px},iw)':'min({max_px},ih)':force_original_aspect_ratio=decrease"
    for quality in (3, 6, 10, 16, 24, 31):
        try:
            run(["-i", str(image), "-vf", scale, "-frames:v", "1", "-q:v", str(quality), str(out)], timeout=60)
        except JobError:
            return None
        if out.stat().st_size <= max_bytes:
            return out
    out.unlink(missing_ok=True)
    return None


def split(mp3: Path, parts: int, duration: float, pattern: Path) -> list[Path]:
    """Cut an MP3 into `parts` pieces of equal length without re-encoding."""
    segment = duration / parts + 0.05
    run([
        "-i", str(mp3), "-map", "0:a", "-c", "copy", "-f", "segment",
        "-segment_time", f"{segment:.3f}", "-reset_timestamps", "1", str(pattern),
    ])
    return sorted(pattern.parent.glob(pattern.name.replace("%03d", "*")))
