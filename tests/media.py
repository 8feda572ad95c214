"""Test media generated with ffmpeg and a local HTTP server that serves it.

``make_media(dir)`` writes a small set of files (once; existing files are kept),
``MediaServer(dir)`` serves them on 127.0.0.1 like a static web server, plus a
few misbehaving routes for error-path tests. Nothing here touches the network
beyond the loopback interface.

Routes (``<file>`` is a plain file name inside the served folder):

- ``/media/<file>``                static file (HEAD, Range -> 206, optional ``?type=`` override)
- ``/status/<code>/<file>``        always answers ``<code>``
- ``/flaky/<n>/<key>/<file>``      503 for the first ``n`` requests per key, then the file
- ``/page/nomedia``                ordinary HTML page without media
- ``/page/video?file=..&title=..&thumb=..&uploader=..&artist=..&duration=..&markup=jsonld|og|html5``
                                   HTML page the generic yt-dlp extractor turns into a video
- ``/page/<slug>``                 the same for a page set up with ``MediaServer.register_page``
- ``/redirect?to=<url>[&code=302]`` redirect anywhere (other ports and hosts too)
- ``/slow/<bytes_per_sec>/<file>`` file throttled to roughly that rate
- ``/stall/<file>[?fraction=0.3]`` full Content-Length, part of the body, then silence
- ``/liar/<file>[?length=N]``      announces a wrong (default: too small) Content-Length
- ``/feed?count=N[&first=<url>][&file=..][&via=/path]``  podcast RSS feed of N enclosures (``file``, or at ``via``),
                                   the first one ``first`` if given; ``dates``, ``art``, ``art1``: see rss_feed
- ``/paged/<id>/<n>[?pages=N&file=..]``  page n of a long list (JSON ``{"entries": [links]}``, 10 a page, N pages)
- ``/yt/<case>``                   YouTube's answer (JSON) for a case set up with ``MediaServer.register_youtube``,
                                   read by the tests' yt-dlp plugin (tests/ytdlp_plugins); counted per case
- ``/private/<file>``              the file, only to a request that carries the cookie ``PRIVATE_COOKIE`` (else 403)
- ``/endless``                     an HTML page that never ends (chunked, until the client leaves)
- ``/bomb/<gzip|br>[?mib=N]``      a small compressed HTML page that decodes to N MiB (default 1024)
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import html
import http.cookies
import itertools
import json
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Self

import brotli

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"

#: Nominal durations (seconds) of the generated media; ``None`` for non-media.
DURATIONS: dict[str, float | None] = {
    "opus.webm": 8.0,
    "audio.m4a": 7.0,
    "nodur.webm": 6.0,
    "video.mp4": 5.0,
    "noaudio.mp4": 4.0,
    "cover.jpg": None,
    "garbage.webm": None,
    "empty.webm": None,
    "truncated.webm": None,
}

# (name, value) of the cookie /private/<file> asks for; the value holds tests.cookiefiles.SECRET, as every test cookie
PRIVATE_COOKIE = ("ytmp3_session", "s3cr3t-cookie-value-private")

TITLE = "Test Tone"
ARTIST = "Test Artist"
#: What long titles are made of: the scripts, sequences and markup a stranger may use.
TITLE_SCRIPTS = {
    "latin": "A very long title <b>&amp; **_`|@everyone ",
    "cyrillic": "Очень длинное название песни ",
    "cjk": "非常に長いタイトルの曲です",
    "arabic": "عنوان طويل جدا للأغنية ",
    "emoji": "🎵🎶👨\u200d👩\u200d👧🇺🇦👍🏽e\u0301",
}


def long_title(script: str, chars: int = 1500) -> str:
    return (TITLE_SCRIPTS[script] * chars)[:chars]

_FF = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def _tones(seconds: float, first: int = 0, volume: float = 0.5) -> list[str]:
    """ffmpeg args: two sine tones mixed into ``[a]`` (a chord, never silent); inputs ``first``, ``first+1``."""
    return [
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=659.25:sample_rate=48000:duration={seconds}",
        "-filter_complex", f"[{first}:a][{first + 1}:a]amix=inputs=2:normalize=0,volume={volume}[a]",
    ]


def _tags(title: str = TITLE, artist: str = ARTIST) -> list[str]:
    return ["-metadata", f"title={title}", "-metadata", f"artist={artist}"]


def _video_codec() -> list[str]:
    """libx264 when this ffmpeg has it, else the built-in mpeg4 encoder."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], check=False, capture_output=True, text=True).stdout
    if " libx264 " in out:
        return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    return ["-c:v", "mpeg4", "-q:v", "10"]


def _run(args: list[str], stdout_path: Path | None = None) -> None:
    """Run ffmpeg; with ``stdout_path`` its output goes through a pipe into that file."""
    if stdout_path is None:
        proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=600)
    else:
        with stdout_path.open("wb") as out:
            proc = subprocess.run(args, check=False, stdout=out, stderr=subprocess.PIPE, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {args}\n{proc.stderr}")


def _atomic(path: Path, produce: Callable[[Path], None]) -> None:
    """Create ``path`` via a temp file + rename so concurrent generators never see a partial file."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        produce(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_media(dir: Path) -> dict[str, Path]:
    """Generate the small test files in ``dir`` (idempotent) and return name -> path."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    files = {name: dir / name for name in DURATIONS}
    opus = ["-map", "[a]", "-c:a", "libopus", "-b:a", "48k"]

    _atomic(files["opus.webm"], lambda p: _run(
        [*_FF, *_tones(8), *opus, *_tags(), "-f", "webm", str(p)]))
    _atomic(files["audio.m4a"], lambda p: _run(
        [*_FF, *_tones(7), "-map", "[a]", "-c:a", "aac", "-b:a", "64k", *_tags(),
         "-f", "ipod", "-movflags", "+faststart", str(p)]))
    # Written to a pipe: the Matroska muxer cannot seek back to write Duration/Cues.
    _atomic(files["nodur.webm"], lambda p: _run(
        [*_FF, *_tones(6), *opus, *_tags("No Duration"), "-f", "webm", "pipe:1"], stdout_path=p))
    _atomic(files["video.mp4"], lambda p: _run(
        [*_FF, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=5", *_tones(5, first=1),
         "-map", "0:v", "-map", "[a]", *_video_codec(), "-c:a", "aac", "-b:a", "64k",
         *_tags("Test Video"), "-shortest", "-movflags", "+faststart", "-f", "mp4", str(p)]))
    _atomic(files["noaudio.mp4"], lambda p: _run(
        [*_FF, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=15:duration=4", *_video_codec(),
         "-an", "-movflags", "+faststart", "-f", "mp4", str(p)]))
    _atomic(files["cover.jpg"], lambda p: _run(
        [*_FF, "-f", "lavfi", "-i", "testsrc=size=640x360:rate=1", "-frames:v", "1",
         "-q:v", "4", "-f", "image2", "-c:v", "mjpeg", str(p)]))
    _atomic(files["garbage.webm"], lambda p: p.write_bytes(random.Random(20240601).randbytes(64 * 1024)))
    _atomic(files["empty.webm"], lambda p: p.write_bytes(b""))
    _atomic(files["truncated.webm"], lambda p: p.write_bytes(
        (data := files["opus.webm"].read_bytes())[: int(len(data) * 0.3)]))
    return files


def make_tone(path: Path, seconds: float, title: str, artist: str = ARTIST, volume: float = 0.5) -> Path:
    """An Opus/WebM chord of that length, title and volume at ``path`` (kept if it exists)."""
    _atomic(path, lambda p: _run(
        [*_FF, *_tones(seconds, volume=volume), "-map", "[a]", "-c:a", "libopus", "-b:a", "48k",
         *_tags(title, artist), "-f", "webm", str(p)]))
    return path


def make_image(path: Path, width: int, height: int) -> Path:
    """A JPEG test picture of that size at ``path`` (kept if it exists)."""
    _atomic(path, lambda p: _run(
        [*_FF, "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=1", "-frames:v", "1",
         "-q:v", "4", "-f", "image2", "-c:v", "mjpeg", str(p)]))
    return path


def make_long(dir: Path, minutes: float = 10) -> Path:
    """Generate ``long.webm`` (or ``long-<minutes>m.webm``), Opus audio of that length."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    name = "long.webm" if minutes == 10 else f"long-{minutes:g}m.webm"
    path = dir / name
    seconds = minutes * 60
    _atomic(path, lambda p: _run(
        [*_FF, *_tones(seconds), "-map", "[a]", "-c:a", "libopus", "-b:a", "48k",
         *_tags("Long Tone"), "-f", "webm", str(p)]))
    return path


def make_pixel_bomb(dir: Path, side: int = 16000) -> Path:
    """``bomb-<side>.png``: a one-bit PNG of one colour, side × side pixels in a few tens of KB.

    Decoded at full size it costs hundreds of MB (ffmpeg turns it into RGB frames to scale it).
    """
    path = Path(dir) / f"bomb-{side}.png"

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def produce(tmp: Path) -> None:
        packer = zlib.compressobj(9)
        row = b"\x00" + bytes((side + 7) // 8)  # filter byte "none", then the row's bits
        body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
        header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
        tmp.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))

    _atomic(path, produce)
    return path


def make_tiny_frames(dir: Path, seconds: float = 120) -> Path:
    """``tiny-frames.mkv``: PCM audio in packets of one sample, a few bytes each (8 kHz, ~64 KB a second).

    ffprobe prints one line per packet: many times the file's own size.
    """
    path = Path(dir) / "tiny-frames.mkv"
    _atomic(path, lambda p: _run(
        [*_FF, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=8000:duration={seconds}",
         "-af", "asetnsamples=n=1", "-c:a", "pcm_s16le", "-f", "matroska", str(p)]))
    return path


def ffprobe_json(path: Path) -> dict:
    """ffprobe's ``-show_format -show_streams`` output as a dict."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    return json.loads(out)


def probe_duration(path: Path) -> float | None:
    """Container (format) duration in seconds as ffprobe reports it; ``None`` when absent (N/A)."""
    value = ffprobe_json(path).get("format", {}).get("duration")
    return None if value in (None, "N/A") else float(value)


def decoded_duration(path: Path) -> float:
    """Duration by reading every audio (else video) packet: end of the last one, in seconds."""
    info = ffprobe_json(path)
    kinds = {s.get("codec_type") for s in info.get("streams", [])}
    sel = "a:0" if "audio" in kinds else "v:0"
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", sel, "-show_entries",
         "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    end = 0.0
    for line in out.splitlines():
        parts = line.split(",")
        try:
            end = max(end, float(parts[0]) + (float(parts[1]) if len(parts) > 1 and parts[1] else 0.0))
        except ValueError:
            continue
    return end


def probe_durations(files: dict[str, Path]) -> dict[str, float | None]:
    """Format duration of every media file in ``files`` (``None`` when absent or not media)."""
    return {name: probe_duration(p) if DURATIONS.get(name, 0.0) is not None else None
            for name, p in files.items()}


# --------------------------------------------------------------------------- server

CONTENT_TYPES = {
    ".webm": "video/webm",
    ".m4a": "audio/mp4",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int
    headers: dict[str, str]
    bytes_sent: int = 0
    finished: bool = False


class _Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Single ``bytes=`` range -> (start, end inclusive); ``None`` = serve all; raises if unsatisfiable."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None  # multi-range / malformed: ignore and send the whole file (allowed by RFC 9110)
    first, _, last = (s.strip() for s in spec.partition("-"))
    try:
        if first == "":
            if not last or int(last) <= 0:
                raise _Unsatisfiable
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = size - 1 if last == "" else min(int(last), size - 1)
            if int(first) < 0 or (last and int(last) < start):
                return None
    except ValueError:
        return None
    if start >= size or size == 0:
        raise _Unsatisfiable
    return start, end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections do not live forever
    server_version = "ytmp3-test-media/1.0"
    server: _Server

    # -- plumbing
    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self._record = self.server.owner._log(
            RequestRecord(self.command or "?", self.path or "", self.headers.get("Range") if self.headers else None,
                          code, dict(self.headers.items()) if self.headers else {}))
        super().send_response(code, message)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        rec = getattr(self, "_record", None)
        if rec is not None:
            with self.server.owner._lock:
                rec.bytes_sent += len(data)

    def _text(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        body = b"" if code in (204, 304) else text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self._write(body)

    def _file(self, name: str) -> Path | None:
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            return None
        path = self.server.owner.root / name
        return path if path.is_file() else None

    # -- verbs
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _not_allowed(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._text(405, "method not allowed\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _dispatch(self) -> None:
        try:
            self._route()
        except OSError:  # client went away (broken pipe, reset) or the server cut the socket
            self.close_connection = True
        finally:
            rec = getattr(self, "_record", None)
            if rec is not None:
                with self.server.owner._lock:
                    rec.finished = True
                    self.server.owner._cond.notify_all()
            self._record = None

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        head, rest = (parts[0] if parts else ""), parts[1:]
        owner = self.server.owner

        if head == "media" and len(rest) == 1:
            return self._serve(rest[0], ctype=query.get("type"))
        if head == "status" and len(rest) == 2 and rest[0].isdigit() and 200 <= int(rest[0]) <= 599:
            code = int(rest[0])
            return self._text(code, f"status {code} for {rest[1]}\n")
        if head == "flaky" and len(rest) == 3 and rest[0].isdigit():
            count = owner._hit(rest[1])
            if count <= int(rest[0]):
                return self._text(503, "service unavailable, try again\n")
            return self._serve(rest[2])
        one_name: dict[str, Callable[[str], None]] = {
            "page": lambda name: self._page(name, query),
            "stall": lambda name: self._serve(name, stall=float(query.get("fraction", "0.3"))),
            "liar": lambda name: self._serve(name, liar=int(query["length"]) if "length" in query else -1),
            "private": self._private,
            "yt": self._youtube,
        }
        if head in one_name and len(rest) == 1:
            return one_name[head](rest[0])
        if head == "redirect" and not rest and query.get("to"):
            code = int(query["code"]) if query.get("code", "").isdigit() else 302
            return self._text(code, "redirecting\n", extra={"Location": query["to"]})
        if head == "slow" and len(rest) == 2 and rest[0].isdigit() and int(rest[0]) > 0:
            return self._serve(rest[1], rate=int(rest[0]))
        if head in ("feed", "paged", "endless", "bomb"):
            return self._generated(head, rest, query)
        if head == "" and not rest:
            return self._text(200, "<!doctype html><title>media server</title><p>ok</p>\n", "text/html; charset=utf-8")
        return self._text(404, "not found\n")

    def _generated(self, head: str, rest: list[str], query: dict[str, str]) -> None:
        """Documents made on request: playlists (a podcast feed, a page of a long list) and page bombs."""
        base = self.server.owner.base_url
        if head == "endless" and not rest:
            return self._chunked(iter(lambda: b"<p>and there is more</p>" * 1000, b""), "text/html")
        if head == "bomb" and len(rest) == 1 and rest[0] in ("gzip", "br"):
            mib = int(query.get("mib", "1024"))
            return self._chunked(page_bomb(rest[0], mib), "text/html; charset=utf-8", {"Content-Encoding": rest[0]})
        if head == "feed" and not rest:
            return self._text(200, rss_feed(base, query), "application/rss+xml; charset=utf-8")
        if head == "paged" and len(rest) == 2 and rest[1].isdigit():
            pages, file = int(query.get("pages", "300")), query.get("file", "opus.webm")
            page = list_page(base, rest[0], int(rest[1]), pages, file)
            return self._text(200, json.dumps(page), "application/json")
        return self._text(404, "not found\n")

    def _private(self, name: str) -> None:
        jar = http.cookies.SimpleCookie(self.headers.get("Cookie") or "")
        cookie, value = PRIVATE_COOKIE
        if cookie not in jar or jar[cookie].value != value:
            return self._text(403, "sign in first\n")
        return self._serve(name)

    def _chunked(self, chunks: Iterator[bytes], ctype: str, extra: dict[str, str] | None = None) -> None:
        """Send a body of unannounced length, chunk by chunk, until it ends, the client leaves or the server stops."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        for chunk in filter(None, chunks):  # an empty chunk would end the body
            if self.server.owner._stop.is_set():
                return
            self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self._write(b"0\r\n\r\n")

    # -- static files with Range, throttling, stalling, lying
    def _serve(self, name: str, *, ctype: str | None = None, rate: int | None = None,
               stall: float | None = None, liar: int | None = None) -> None:
        path = self._file(name)
        if path is None:
            return self._text(404, f"no such file: {name}\n")
        size = path.stat().st_size
        try:
            rng = parse_range(self.headers.get("Range"), size)
        except _Unsatisfiable:
            return self._text(416, "range not satisfiable\n", extra={"Content-Range": f"bytes */{size}"})
        start, end = rng if rng else (0, size - 1)
        length = end - start + 1 if size else 0
        announced = length
        if liar is not None:
            announced = liar if liar >= 0 else max(1, length // 3)
        mtime = path.stat().st_mtime
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", ctype or CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(announced))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        self.send_header("ETag", f'"{size:x}-{int(mtime):x}"')
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if liar is not None or stall is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = self.close_connection or liar is not None or stall is not None
        if self.command == "HEAD":
            return
        with path.open("rb") as f:
            f.seek(start)
            if stall is None:
                return self._copy(f, length, rate)
            self._write(f.read(int(length * max(0.0, min(1.0, stall)))))
            self.wfile.flush()
            return self._hold()

    def _copy(self, f: BinaryIO, length: int, rate: int | None) -> None:
        """Send ``length`` bytes of ``f``, at about ``rate`` bytes/s if given; quit when the server stops."""
        stop = self.server.owner._stop
        remaining = length
        chunk = max(1, rate // 10) if rate else 64 * 1024
        while remaining > 0:
            if stop.is_set():
                self.close_connection = True
                return
            data = f.read(min(chunk, remaining))
            if not data:
                break
            self._write(data)
            remaining -= len(data)
            if rate and remaining > 0:
                self.wfile.flush()
                if stop.wait(len(data) / rate):
                    self.close_connection = True
                    return

    def _hold(self) -> None:
        """Keep the connection open without sending until the client leaves or the server stops."""
        sock = self.connection
        stop = self.server.owner._stop
        self.close_connection = True
        while not stop.wait(0.05):
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return  # client closed its end
            except (OSError, ValueError):
                return

    def _youtube(self, case: str) -> None:
        owner = self.server.owner
        owner._hit(f"yt:{case}")
        with owner._lock:
            answer = owner._youtube.get(case)
        if answer is None:
            return self._text(404, "no such case\n")
        return self._text(200, json.dumps(answer), "application/json")

    # -- HTML pages
    def _page(self, name: str, q: dict[str, str]) -> None:
        base = self.server.owner.base_url
        if name == "nomedia":
            body = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<title>Just a page</title><meta name=\"description\" content=\"Nothing to see\"></head>"
                    "<body><h1>Just a page</h1><p>No video or audio here, only text and "
                    "<a href=\"/page/nomedia\">a link</a>.</p></body></html>\n")
            return self._text(200, body, "text/html; charset=utf-8")
        with self.server.owner._lock:
            registered = self.server.owner._pages.get(name)
        if registered is not None:
            q = {**registered, **q}
        elif name != "video":
            return self._text(404, "no such page\n")
        return self._text(200, video_page(base, q), "text/html; charset=utf-8")


def video_page(base_url: str, q: dict[str, str]) -> str:
    """HTML for ``/page/video``: JSON-LD VideoObject (default), Open Graph or HTML5 markup."""
    file = q.get("file", "opus.webm")
    title = q.get("title", TITLE)
    uploader = q.get("uploader", ARTIST)
    markup = q.get("markup", "jsonld")
    media_url = file if file.startswith(("http://", "https://")) else f"{base_url}/media/{urllib.parse.quote(file)}"
    thumb = q.get("thumb", "cover.jpg")
    thumb_url = (thumb if thumb.startswith(("http://", "https://")) else
                 f"{base_url}/media/{urllib.parse.quote(thumb)}") if thumb else ""
    duration = q.get("duration") or ""
    if not duration:
        nominal = DURATIONS.get(file)
        duration = f"{nominal:g}" if nominal else ""
    ctype = CONTENT_TYPES.get(Path(file).suffix.lower(), "video/mp4")
    e = html.escape  # quote=True: escapes & < > " '

    head = [f"<meta charset=\"utf-8\"><title>{e(title)}</title>",
            f"<meta property=\"og:title\" content=\"{e(title)}\">",
            "<meta property=\"og:description\" content=\"A generated test page\">"]
    if thumb_url:
        head.append(f"<meta property=\"og:image\" content=\"{e(thumb_url)}\">")
    body = [f"<h1>{e(title)}</h1>", f"<p class=\"uploader\">{e(uploader)}</p>"]
    if markup == "jsonld":
        # yt-dlp runs unescapeHTML() over name, description and thumbnailUrl of JSON-LD (sites often
        # put HTML entities there), so those are HTML-escaped once to come back out verbatim.
        ld: dict[str, object] = {
            "@context": "https://schema.org", "@type": "VideoObject", "name": e(title, quote=False),
            "description": "A generated test page", "contentUrl": media_url,
            "encodingFormat": ctype.split(";")[0], "uploadDate": "2024-06-01",
            "author": {"@type": "Person", "name": uploader},
        }
        if thumb_url:
            ld["thumbnailUrl"] = e(thumb_url, quote=False)
        if q.get("artist"):
            ld["byArtist"] = {"@type": "MusicGroup", "name": q["artist"]}
        if duration:
            ld["duration"] = f"PT{float(duration):g}S"
        text = json.dumps(ld, ensure_ascii=False)
        # Never let the data close the <script> element or open markup.
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        head.append(f"<script type=\"application/ld+json\">{text}</script>")
    elif markup == "og":
        kind = "audio" if ctype.startswith("audio/") else "video"
        head.append(f"<meta property=\"og:{kind}\" content=\"{e(media_url)}\">")
        head.append(f"<meta property=\"og:{kind}:type\" content=\"{e(ctype.split(';')[0])}\">")
    elif markup == "html5":
        tag = "audio" if ctype.startswith("audio/") else "video"
        poster = f" poster=\"{e(thumb_url)}\"" if thumb_url and tag == "video" else ""
        body.append(f"<{tag} controls{poster}><source src=\"{e(media_url)}\" "
                    f"type=\"{e(ctype.split(';')[0])}\"></{tag}>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head>" + "".join(head) + "</head><body>"
            + "".join(body) + "</body></html>\n")


def rss_feed(base_url: str, q: dict[str, str]) -> str:
    """A podcast feed: yt-dlp's generic extractor makes it a playlist of its enclosures.

    ``dates=2,5,1``: each item's pubDate, as days of January 2024; ``art=<url>``: the channel's itunes:image;
    ``art1=<url>``: the first item's own.
    """
    e = html.escape
    days = [int(d) for d in q["dates"].split(",")] if q.get("dates") else []
    items = []
    for i in range(int(q.get("count", "3"))):
        path = q.get("via") or f"/media/{q.get('file', 'opus.webm')}"
        link = q["first"] if i == 0 and q.get("first") else f"{base_url}{path}?item={i}"
        date = f"<pubDate>{days[i]:02d} Jan 2024 10:00:00 +0000</pubDate>" if i < len(days) else ""
        art = f"<itunes:image href=\"{e(q['art1'])}\"/>" if i == 0 and q.get("art1") else ""
        items.append(f"<item><title>Episode {i + 1}</title><guid>episode-{i + 1}</guid>{date}{art}"
                     f"<enclosure url=\"{e(link)}\" type=\"audio/webm\" length=\"1000\"/></item>")
    art = f"<itunes:image href=\"{e(q['art'])}\"/>" if q.get("art") else ""
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" "
            "xmlns:itunes=\"http://www.itunes.com/dtds/podcast-1.0.dtd\"><channel><title>A feed</title>"
            f"<link>{e(base_url)}/</link><description>test feed</description>{art}{''.join(items)}</channel></rss>\n")


_BOMB_MIB = b" " * (1 << 20)


@functools.cache
def _gzip_mib() -> bytes:
    """One MiB of spaces as one gzip member (about 1 KB); a gzip body may be many members one after another."""
    return gzip.compress(_BOMB_MIB, 9)


def page_bomb(encoding: str, mib: int) -> Iterator[bytes]:
    """An HTML page of `mib` MiB, compressed (gzip or brotli) as it is sent: about 1 KB per MiB for gzip, less for
    brotli. The bytes are made once and repeated, so serving it costs next to nothing."""
    head = b"<!DOCTYPE html><html><head><title>A page</title></head><body>"
    if encoding == "gzip":
        yield gzip.compress(head)
        yield from itertools.repeat(_gzip_mib(), mib)
        yield gzip.compress(b"</body></html>")
        return
    packer = brotli.Compressor(quality=5)
    yield packer.process(head) + packer.flush()
    for _ in range(mib):  # the compressor's state repeats: after the first MiB each one compresses alike
        yield packer.process(_BOMB_MIB)
    yield packer.finish()


def list_page(base_url: str, list_id: str, page: int, pages: int, file: str, size: int = 10) -> dict[str, list[str]]:
    """One page of a long list, as a site's API pages through it (the test plugin ``pagedlisttest`` reads it)."""
    first = page * size
    links = [f"{base_url}/media/{file}?list={list_id}&item={i}" for i in range(first, first + size)]
    return {"entries": links if page < pages else []}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MediaServer

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self.owner._lock:
            self.owner._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.owner._lock:
            self.owner._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # client went away etc.; never print tracebacks into test output


class MediaServer:
    """Threaded static + misbehaving HTTP server on 127.0.0.1 for yt-dlp tests.

    Use as a context manager or call ``start()`` / ``stop()``.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self._host, self._port = host, port
        self._lock = threading.RLock()  # RLock: wait_for predicates may call back into the server
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._log_records: list[RequestRecord] = []
        self._hits: dict[str, int] = {}
        self._conns: set[socket.socket] = set()
        self._pages: dict[str, dict[str, str]] = {}
        self._youtube: dict[str, dict] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> MediaServer:
        """Bind a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stop.clear()
        httpd = _Server((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"MediaServer:{httpd.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled/slow/keep-alive connections are cut, never waited on for long."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses
    @property
    def port(self) -> int:
        """Bound TCP port."""
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    def url(self, path: str = "/", **query: str | float) -> str:
        """Absolute URL for ``path`` (e.g. ``/media/opus.webm``), with optional query parameters."""
        if not path.startswith("/"):
            path = "/" + path
        qs = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{self.base_url}{path}{qs}"

    def media_url(self, name: str) -> str:
        """URL of a static file: ``/media/<name>``."""
        return self.url(f"/media/{urllib.parse.quote(name)}")

    def page_url(self, file: str = "opus.webm", title: str = TITLE, thumb: str = "cover.jpg",
                 uploader: str = ARTIST, **extra: str | float) -> str:
        """URL of ``/page/video`` describing ``file`` with that title, thumbnail and uploader."""
        return self.url("/page/video", file=file, title=title, thumb=thumb, uploader=uploader, **extra)

    def register_page(self, slug: str, file: str = "opus.webm", title: str = TITLE, thumb: str = "cover.jpg",
                      uploader: str = ARTIST, **extra: str | float) -> str:
        """Serve a video page at ``/page/<slug>`` (yt-dlp then uses ``slug`` as the id); return its URL."""
        params = {"file": file, "title": title, "thumb": thumb, "uploader": uploader}
        params.update({k: str(v) for k, v in extra.items()})
        with self._lock:
            self._pages[slug] = params
        return self.url(f"/page/{urllib.parse.quote(slug)}")

    def register_youtube(self, case: str, answer: dict) -> str:
        """Serve YouTube's answer for ``case`` at ``/yt/<case>``; return that URL (the link a user sends)."""
        with self._lock:
            self._youtube[case] = answer
        return self.url(f"/yt/{urllib.parse.quote(case)}")

    def redirect_url(self, to: str, code: int = 302) -> str:
        """URL that redirects to ``to`` (any URL)."""
        return self.url("/redirect", to=to, code=code)

    # -- observation
    def _log(self, rec: RequestRecord) -> RequestRecord:
        with self._lock:
            self._log_records.append(rec)
            self._cond.notify_all()
        return rec

    def _hit(self, key: str) -> int:
        with self._lock:
            self._hits[key] = self._hits.get(key, 0) + 1
            return self._hits[key]

    def hits(self, key: str) -> int:
        """Requests seen so far on ``/flaky/<n>/<key>/...`` for this key (``yt:<case>`` for ``/yt/<case>``)."""
        with self._lock:
            return self._hits.get(key, 0)

    def reset_hits(self, key: str | None = None) -> None:
        """Forget the flaky counter of ``key`` (all keys when ``None``)."""
        with self._lock:
            if key is None:
                self._hits.clear()
            else:
                self._hits.pop(key, None)

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log_records)

    def requests_for(self, prefix: str) -> list[RequestRecord]:
        """Logged requests whose path starts with ``prefix``."""
        return [r for r in self.requests if r.path.startswith(prefix)]

    def clear_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log_records.clear()

    def wait_for(self, predicate: Callable[[RequestRecord], bool], timeout: float = 10.0) -> RequestRecord:
        """Block until a logged request matches ``predicate``; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self._log_records:
                    if predicate(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching request")
                self._cond.wait(left)

    def open_connections(self) -> int:
        """Number of client connections currently being handled."""
        with self._lock:
            return len(self._conns)



def make_chapters(path: Path, chapters: list[tuple[str, float]], title: str = "Chaptered",
                  artist: str = ARTIST) -> Path:
    """A Matroska/Opus chord whose container holds these chapters (title, seconds each), written through
    ffmpeg's ffmetadata input (kept if it exists)."""
    def escaped(text: str) -> str:
        return re.sub(r"([=;#\\\n])", r"\\\1", text)

    lines, start = [";FFMETADATA1"], 0.0
    for name, seconds in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(start * 1000)}",
                  f"END={round((start + seconds) * 1000)}", f"title={escaped(name)}"]
        start += seconds
    meta = path.with_suffix(".ffmeta")
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _atomic(path, lambda p: _run(
        [*_FF, *_tones(start), "-i", str(meta), "-map", "[a]", "-map_chapters", "2", "-c:a", "libopus",
         "-b:a", "48k", *_tags(title, artist), "-f", "matroska", str(p)]))
    return path
