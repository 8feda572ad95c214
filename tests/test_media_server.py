"""Smoke test of tests/media.py: generated media, HTTP semantics, and the real yt-dlp against it.

yt-dlp facts pinned here (2026.10.26, Python API):
- an HTTP error on the info request raises ``DownloadError`` whose ``exc_info[1]`` is the
  ``yt_dlp.networking.exceptions.HTTPError`` (``.status``); ``__context__`` is the ``ExtractorError``
  (``.cause`` is the same HTTPError).
- a page without media raises ``DownloadError`` with ``exc_info[1]`` an ``UnsupportedError``.
- a 503 on the info request is never retried (not even with ``extractor_retries``); 5xx and
  timeouts in the download phase are retried ``retries`` times, which defaults to 0 in the API.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import DownloadError, ExtractorError, UnsupportedError

from tests.media import MediaServer, decoded_duration, ffprobe_json, make_media, probe_duration

HOSTILE_TITLE = "Tïtle <b>&amp; \"q\" 'a' </script> 🎵 שלום"


class _QuietLogger:
    """Swallow yt-dlp output so expected errors do not clutter the test log."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the generated media (once per session)."""
    path = tmp_path_factory.mktemp("media")
    make_media(path)
    return path


@pytest.fixture(scope="module")
def server(media_dir: Path) -> Iterator[MediaServer]:
    """A running MediaServer for the module."""
    with MediaServer(media_dir) as srv:
        yield srv


def ydl(out: Path, **opts: object) -> yt_dlp.YoutubeDL:
    """A quiet YoutubeDL writing into ``out``."""
    params: dict[str, object] = {
        "quiet": True, "noprogress": True, "logger": _QuietLogger(), "format": "bestaudio/best",
        "outtmpl": str(out / "%(id)s.%(ext)s"),
    }
    params.update(opts)
    return yt_dlp.YoutubeDL(params)  # type: ignore[arg-type]


def get(server: MediaServer, path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw request (no redirect following)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- media


def test_generated_media(media_dir: Path) -> None:
    files = make_media(media_dir)  # idempotent: second call keeps the files
    assert probe_duration(files["opus.webm"]) == pytest.approx(8.0, abs=0.05)
    assert probe_duration(files["audio.m4a"]) == pytest.approx(7.0, abs=0.05)
    assert probe_duration(files["video.mp4"]) == pytest.approx(5.0, abs=0.1)
    assert probe_duration(files["noaudio.mp4"]) == pytest.approx(4.0, abs=0.1)
    # No Duration element: ffprobe has no format duration ("N/A"), the packets still add up to 6 s.
    assert probe_duration(files["nodur.webm"]) is None
    assert decoded_duration(files["nodur.webm"]) == pytest.approx(6.0, abs=0.05)

    tags = {k.lower(): v for k, v in ffprobe_json(files["opus.webm"])["format"]["tags"].items()}
    assert tags["title"] == "Test Tone" and tags["artist"] == "Test Artist"
    kinds = [s["codec_type"] for s in ffprobe_json(files["video.mp4"])["streams"]]
    assert sorted(kinds) == ["audio", "video"]
    assert [s["codec_type"] for s in ffprobe_json(files["noaudio.mp4"])["streams"]] == ["video"]
    cover = ffprobe_json(files["cover.jpg"])["streams"][0]
    assert (cover["codec_name"], cover["width"], cover["height"]) == ("mjpeg", 640, 360)

    assert files["empty.webm"].stat().st_size == 0
    assert files["garbage.webm"].stat().st_size == 64 * 1024
    full = files["opus.webm"].read_bytes()
    assert files["truncated.webm"].read_bytes() == full[: int(len(full) * 0.3)]


# ----------------------------------------------------------------------------- HTTP


def test_static_range_head(server: MediaServer, media_dir: Path) -> None:
    data = (media_dir / "opus.webm").read_bytes()
    status, hdrs, body = get(server, "/media/opus.webm")
    assert (status, hdrs["content-type"], int(hdrs["content-length"]), body) == (200, "video/webm", len(data), data)
    status, hdrs, body = get(server, "/media/audio.m4a", "HEAD")
    assert (status, hdrs["content-type"], body) == (200, "audio/mp4", b"")
    assert int(hdrs["content-length"]) == (media_dir / "audio.m4a").stat().st_size
    assert get(server, "/media/video.mp4", "HEAD")[1]["content-type"] == "video/mp4"
    assert get(server, "/media/cover.jpg", "HEAD")[1]["content-type"] == "image/jpeg"

    status, hdrs, body = get(server, "/media/opus.webm", headers={"Range": "bytes=100-199"})
    assert (status, hdrs["content-range"], body) == (206, f"bytes 100-199/{len(data)}", data[100:200])
    status, hdrs, body = get(server, "/media/opus.webm", headers={"Range": "bytes=-10"})
    assert (status, body) == (206, data[-10:])
    status, hdrs, _ = get(server, "/media/opus.webm", headers={"Range": f"bytes={len(data)}-"})
    assert (status, hdrs["content-range"]) == (416, f"bytes */{len(data)}")
    assert get(server, "/media/nope.webm")[0] == 404
    assert get(server, "/media/..%2Fetc%2Fpasswd")[0] == 404

    rec = server.requests_for("/media/opus.webm")[1]
    assert (rec.method, rec.range, rec.status) == ("GET", "bytes=100-199", 206)


def test_misbehaving_routes(server: MediaServer, media_dir: Path) -> None:
    assert get(server, "/status/403/opus.webm")[0] == 403
    assert get(server, "/status/500/opus.webm", "HEAD")[0] == 500

    assert [get(server, "/flaky/2/raw/opus.webm")[0] for _ in range(3)] == [503, 503, 200]
    assert server.hits("raw") == 3

    target = "http://127.0.0.1:9/elsewhere"
    status, hdrs, _ = get(server, server.redirect_url(target).removeprefix(server.base_url))
    assert (status, hdrs["location"]) == (302, target)

    status, hdrs, body = get(server, "/liar/opus.webm")
    size = (media_dir / "opus.webm").stat().st_size
    assert int(hdrs["content-length"]) == size // 3 == len(body)

    status, hdrs, body = get(server, "/page/nomedia")
    assert status == 200 and hdrs["content-type"].startswith("text/html") and b"<video" not in body

    page = get(server, server.page_url(title=HOSTILE_TITLE).removeprefix(server.base_url))[2].decode()
    assert "<b>" not in page and "</script> " not in page and "&lt;b&gt;&amp;amp;" in page


def test_slow_disconnect_and_stall_stop(media_dir: Path) -> None:
    size = (media_dir / "opus.webm").stat().st_size
    with MediaServer(media_dir) as srv:
        # A client leaving a throttled download ends the handler.
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        sock.sendall(b"GET /slow/2000/opus.webm HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.close()
        rec = srv.wait_for(lambda r: r.path.startswith("/slow/"))
        deadline = time.monotonic() + 5
        while not rec.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.finished and rec.bytes_sent < size

        # Stalled connections do not keep stop() waiting.
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        stalled.sendall(b"GET /stall/opus.webm HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while len(received.partition(b"\r\n\r\n")[2]) < int(size * 0.3):
            chunk = stalled.recv(65536)
            assert chunk, "connection closed early"
            received += chunk
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert stalled.recv(65536) == b""  # the server cut the stalled connection
    stalled.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert f"Content-Length: {size}".encode() in head and len(body) == int(size * 0.3)


# ----------------------------------------------------------------------------- yt-dlp


def test_ytdlp_direct_download(server: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    with ydl(tmp_path) as y:
        info = y.extract_info(server.media_url("opus.webm"), download=True)
    path = Path(info["requested_downloads"][0]["filepath"])
    assert path.read_bytes() == (media_dir / "opus.webm").read_bytes()
    assert (info["id"], info["ext"], info["extractor"]) == ("opus", "webm", "generic")


def test_ytdlp_page_metadata(server: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    url = server.register_page("clip-1", title=HOSTILE_TITLE, uploader="Up & <Loader>")
    with ydl(tmp_path) as y:
        info = y.extract_info(url, download=True)
    assert info["id"] == "clip-1"
    assert info["title"] == HOSTILE_TITLE
    assert info["thumbnail"] == server.media_url("cover.jpg")
    assert info["uploader"] == "Up & <Loader>"
    assert info["duration"] == 8
    path = Path(info["requested_downloads"][0]["filepath"])
    assert path.read_bytes() == (media_dir / "opus.webm").read_bytes()


def test_ytdlp_http_404(server: MediaServer, tmp_path: Path) -> None:
    with ydl(tmp_path) as y, pytest.raises(DownloadError) as exc:
        y.extract_info(server.url("/status/404/opus.webm"))
    err = exc.value
    assert isinstance(err.exc_info[1], HTTPError) and err.exc_info[1].status == 404
    assert isinstance(err.__context__, ExtractorError) and err.__context__.cause is err.exc_info[1]
    assert "HTTP Error 404: Not Found" in str(err)


def test_ytdlp_nomedia_unsupported(server: MediaServer, tmp_path: Path) -> None:
    with ydl(tmp_path) as y, pytest.raises(DownloadError) as exc:
        y.extract_info(server.url("/page/nomedia"))
    assert isinstance(exc.value.exc_info[1], UnsupportedError)
    assert str(exc.value) == f"ERROR: Unsupported URL: {server.url('/page/nomedia')}"


def test_ytdlp_flaky(server: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    # 503 on the info request: raised at once, no internal retry, whatever the retry options.
    url = server.url("/flaky/2/k1/opus.webm")
    with ydl(tmp_path, retries=5, extractor_retries=5) as y, pytest.raises(DownloadError) as exc:
        y.extract_info(url)
    assert exc.value.exc_info[1].status == 503 and server.hits("k1") == 1

    # 503 in the download phase (media URL from a page): retried `retries` times, default 0.
    with ydl(tmp_path / "a") as y, pytest.raises(DownloadError, match="HTTP Error 503"):
        y.extract_info(server.page_url(file=server.url("/flaky/2/k2/opus.webm")))
    assert server.hits("k2") == 1
    with ydl(tmp_path / "b", retries=3) as y:
        info = y.extract_info(server.page_url(file=server.url("/flaky/2/k3/opus.webm")))
    assert server.hits("k3") == 3
    assert Path(info["requested_downloads"][0]["filepath"]).read_bytes() == (media_dir / "opus.webm").read_bytes()


def test_server_stops_with_client_waiting(media_dir: Path, tmp_path: Path) -> None:
    srv = MediaServer(media_dir).start()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with ydl(tmp_path, socket_timeout=30) as y:
                y.extract_info(srv.url("/stall/opus.webm"))
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    # First request: the extractor's probe; second: the download, now stalled.
    srv.wait_for(lambda r: len(srv.requests_for("/stall/")) >= 2)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2
    worker.join(10)
    assert not worker.is_alive()
    assert errors and isinstance(errors[0], DownloadError)
