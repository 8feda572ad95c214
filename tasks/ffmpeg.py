"""ffprobe and ffmpeg, run with argument lists (never a shell), with progress and cancel.

Everything they read was downloaded from strangers, so every call names its input as a plain
file and allows only real media containers: a "song.mp3" that is really an HLS playlist, a DASH
manifest or an ffconcat list would otherwise make ffmpeg open the files it names on this machine.
Their output is read as it comes, never held whole, and they die with the process that ran them.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from common.errors import Code, JobError
from tasks import interrupt

FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]

# Demuxers of real audio and video containers (a name matches every alias of its demuxer, so "mov"
# is mp4/m4a/3gp too). Left out on purpose: playlists and other formats that open further files or
# URLs (hls, dash, concat/ffconcat, image2 sequences, subtitles, tty, lavfi...).
MEDIA_FORMATS = (
    "aac", "ac3", "aiff", "amr", "ape", "asf", "au", "avi", "caf", "dsf", "dts", "eac3", "flac", "flv",
    "loas", "matroska", "mlp", "mov", "mp3", "mpc", "mpc8", "mpeg", "mpegts", "ogg", "truehd", "tta",
    "w64", "wav", "wv",
)
# A thumbnail is one still image, of the kind its first bytes say (see tasks.images).
IMAGE_DEMUXERS = {".jpg": "jpeg_pipe", ".jpeg": "jpeg_pipe", ".png": "png_pipe", ".webp": "webp_pipe"}
# ffprobe's answer is a few lines; more than this is a file stuffed with tags.
PROBE_OUTPUT_MAX = 1024 * 1024
# Of ffmpeg's log at info level (-loglevel level+info): how much of its end is kept, how errors are marked.
INFO_TAIL = 16 * 1024
ERROR_MARKS = ("[error] ", "[fatal] ", "[panic] ")
# An ffmpeg whose worker process is killed (the OOM killer, a lost worker) dies with it: setpriv
# sets the parent-death signal before it runs ffmpeg, without a preexec_fn in a threaded process.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []


def media_input(path: Path, formats: tuple[str, ...] = MEDIA_FORMATS) -> list[str]:
    """Input options for a downloaded file: a local file only, read only by a media demuxer."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(formats), "-i", f"file:{path}"]


def image_input(path: Path, max_pixels: int) -> list[str]:
    """Input options for a thumbnail: one still image, decoded only up to max_pixels."""
    demuxer = IMAGE_DEMUXERS.get(path.suffix.lower(), "image2pipe")
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(sorted(set(IMAGE_DEMUXERS.values()))),
            "-f", demuxer, "-max_pixels", str(max_pixels), "-i", f"file:{path}"]


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


# Only what we use: never per-frame or per-packet output, and of the tags only the names.
PROBE_ENTRIES = "format=duration:format_tags=title,artist,album_artist:stream=codec_type,duration"


def probe(path: Path) -> Probe:
    """What ffprobe sees in a file; BAD_MEDIA when it is not media at all (or not a media container)."""
    cmd = ["ffprobe", "-v", "warning", *media_input(path), "-print_format", "json", "-show_entries", PROBE_ENTRIES]
    with _running(cmd) as (proc, errors):
        assert proc.stdout is not None
        output = proc.stdout.read(PROBE_OUTPUT_MAX + 1)
        if len(output) > PROBE_OUTPUT_MAX:
            raise JobError(Code.BAD_MEDIA, "ffprobe output over its limit")
        if proc.wait() != 0:
            raise _failure(proc, errors)
        estimated = _contains(errors, ESTIMATED)
    try:
        data = json.loads(output or b"{}")
    except ValueError:
        raise JobError(Code.BAD_MEDIA, "unreadable ffprobe output") from None
    streams = data.get("streams", [])
    fmt = data.get("format", {})
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    audio_duration = _float(audio[0].get("duration")) if audio else None
    duration = _float(fmt.get("duration")) or audio_duration
    tags = {k.lower(): v for k, v in (fmt.get("tags") or {}).items()}
    return Probe(duration=duration, has_audio=bool(audio), tags=tags, audio_duration=audio_duration,
                 estimated=estimated, has_video=any(s.get("codec_type") == "video" for s in streams))


def probe_chapters(path: Path) -> list[Any]:
    """The container's own chapters as ffprobe lists them (raw: tasks.chapters checks them); [] if unreadable."""
    cmd = ["ffprobe", "-v", "error", *media_input(path), "-print_format", "json", "-show_chapters"]
    with _running(cmd) as (proc, _):
        assert proc.stdout is not None
        output = proc.stdout.read(PROBE_OUTPUT_MAX + 1)
        if len(output) > PROBE_OUTPUT_MAX or proc.wait() != 0:
            return []
    try:
        data = json.loads(output or b"{}")
    except ValueError:
        return []
    chapters = data.get("chapters") if isinstance(data, dict) else None
    return chapters if isinstance(chapters, list) else []


def measure_duration(path: Path) -> float | None:
    """Duration from the audio packets themselves, for files whose header has none.

    One line per packet: a file of tiny packets makes many times its own size in lines, so they
    are read one by one and only the last is kept.
    """
    cmd = ["ffprobe", "-v", "error", *media_input(path), "-select_streams", "a:0",
           "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0"]
    end = None
    with _running(cmd) as (proc, _):
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = [_float(p) for p in line.split(b",")[:2]]
            if parts and parts[0] is not None:
                end = parts[0] + (parts[1] or 0.0) if len(parts) > 1 else parts[0]
        proc.wait()
    return end


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


@contextmanager
def _running(cmd: list[str], stdout: int = subprocess.PIPE) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """The process with stdout on a pipe and stderr in a file; however the block ends, it is gone after.

    stderr goes to a file, not a pipe: a flood of decode errors can neither block it nor fill our memory.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([*DIE_WITH_PARENT, *cmd], stdout=stdout, stderr=errors)
        try:
            with interrupt.child(proc):  # a stage stopped from outside (its time limit) kills it first
                yield proc, errors
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _failure(proc: subprocess.Popen[bytes], errors: IO[bytes]) -> JobError:
    """BAD_MEDIA with the last line ffmpeg wrote; OUT_OF_MEMORY when it was killed (the OOM killer's SIGKILL)."""
    if proc.returncode == -signal.SIGKILL:
        return JobError(Code.OUT_OF_MEMORY, "killed by SIGKILL")
    lines = [line for line in _tail(errors, 4000).strip().splitlines() if line.strip()]
    # Logging at info level too, ffmpeg marks each line with its level: the error is the last error line.
    marked = [line.partition(mark)[2] for line in lines for mark in ERROR_MARKS if mark in line]
    last = (marked or lines)[-1] if lines else f"exit status {proc.returncode}"
    return JobError(Code.BAD_MEDIA, last[:200])


def _contains(errors: IO[bytes], text: str) -> bool:
    """Whether what the process wrote to stderr holds text, read in blocks."""
    needle = text.encode()
    errors.seek(0)
    tail = b""
    while block := errors.read(64 * 1024):
        if needle in tail + block:
            return True
        tail = block[-len(needle):]
    return False


def run_with_progress(
    source: Path, args: list[str], duration: float | None, on_progress: Callable[[float, float], None],
    input_options: list[str] | None = None, info: list[str] | None = None,
) -> float | None:
    """Run ffmpeg on source with -progress on stdout; on_progress(fraction, seconds done) may raise to stop it.

    `input_options` go before the input (a seek: `-ss`). With an `info` list, ffmpeg logs at info level
    too (where filters such as ebur128 print their summary) and the last lines it wrote (at most
    INFO_TAIL bytes) are put in the list. Returns the length written, in seconds, as ffmpeg last
    reported it (None if it never did). However it ends, the ffmpeg process is gone when this returns.
    """
    done: float | None = None
    level = ["-loglevel", "level+info"] if info is not None else []  # the later -loglevel wins
    cmd = [*FFMPEG, *level, "-progress", "pipe:1", "-nostats", *(input_options or []), *media_input(source), *args]
    with _running(cmd) as (proc, errors):
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition(b"=")
            if key == b"out_time_us" and value.isdigit():
                done = int(value) / 1e6
                on_progress(min(done / duration, 1.0) if duration else 0.0, done)
        if proc.wait() != 0:
            raise _failure(proc, errors)
        if info is not None:
            info.extend(_tail(errors, INFO_TAIL).splitlines())
    return done


def _tail(errors: IO[bytes], size: int) -> str:
    """The last `size` bytes the process wrote to stderr, as text."""
    errors.seek(0, 2)
    errors.seek(max(0, errors.tell() - size))
    return errors.read().decode(errors="replace")


def run(args: list[str], timeout: float = 600) -> None:
    """ffmpeg with these arguments (the input options among them); BAD_MEDIA when it fails or hangs."""
    with _running([*FFMPEG, *args], stdout=subprocess.DEVNULL) as (proc, errors):
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise JobError(Code.BAD_MEDIA, f"ffmpeg still running after {timeout:g}s") from None
        if status != 0:
            raise _failure(proc, errors)


def make_cover(image: Path, out: Path, max_pixels: int, max_px: int = 320, max_bytes: int = 200_000) -> Path | None:
    """A small JPEG cover, or None when the image can't be read (or is larger than max_pixels)."""
    scale = f"scale='min({max_px},iw)':'min({max_px},ih)':force_original_aspect_ratio=decrease"
    for quality in (3, 6, 10, 16, 24, 31):
        try:
            run([*image_input(image, max_pixels), "-vf", scale, "-frames:v", "1", "-q:v", str(quality), str(out)],
                timeout=60)
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
        *media_input(mp3, ("mp3",)), "-map", "0:a", "-c", "copy", "-f", "segment",
        "-segment_time", f"{segment:.3f}", "-reset_timestamps", "1", str(pattern),
    ])
    return sorted(pattern.parent.glob(pattern.name.replace("%03d", "*")))
