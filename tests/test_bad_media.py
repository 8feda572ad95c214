"""Bad media: every broken, lying or stalling source ends clearly, with nothing left behind.

Most cases run through the real prefork worker. The size limit with a server that omits or lies
about its length, and MAX_DURATION against a header that lies, are run in this process through the
same stage functions (a ``Settings`` copy with a small limit; the real Redis job store), because the
session worker's limits are fixed by the test environment.

Policy for a source that is cut (a truncated file, or a server that sends less than the file):
when it decodes to clearly less than its header states, the job fails ``bad_media`` ("it is
incomplete"): a user who asked for a song wants all of it, not a silently shortened MP3. A header
that claims *less* than the audio holds is not trusted: the MP3 has the real length, and
MAX_DURATION is enforced on the decoded length.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import shutil
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mutagen.mp3 import MP3

from common import context
from common.errors import TEXT, Code, JobError
from common.jobs import Job, State, new_job_id
from common.settings import Settings, get_settings
from common.urlguard import Allowlist
from tasks import lifecycle, pipeline
from tasks.convert import convert
from tasks.download import download, fetch_thumbnail
from tasks.netguard import GuardedYoutubeDL
from tasks.progress import StageReporter
from tests.conftest import World, origin, wait_job, wait_until
from tests.media import FFMPEG, MediaServer

pytestmark = pytest.mark.usefixtures("worker")

KB = 1024
ENDLESS_BLOCKS = 4096  # 256 MiB of 64 KiB: what an "endless" body sends a client that never stops
# What may pass into a client that stopped reading: its socket buffers and the server's, which on
# loopback grow to several MiB each (and the extractor's first look holds a connection too).
BUFFERED = 32 * 1024 * KB


# ------------------------------------------------------------------ media made here

def _atomic_write(path: Path, produce: Callable[[Path], None]) -> None:
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        produce(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def lying_webm(media_dir: Path, seconds: float, claims: float) -> str:
    """An Opus WebM of `seconds` of audio whose header (Segment Info Duration) says `claims`."""
    name = f"lying-{seconds:g}s-claims-{claims:g}s.webm"

    def produce(tmp: Path) -> None:
        subprocess.run(
            [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
             "-c:a", "libopus", "-b:a", "24k", "-metadata", "title=Lying Tone",
             "-write_crc32", "0", "-f", "webm", str(tmp)],
            check=True, capture_output=True, timeout=120)
        data = bytearray(tmp.read_bytes())
        at = data.find(b"\x44\x89\x88")  # Duration element, 8-byte float, in milliseconds
        assert at > 0, "no Duration element"
        data[at + 3:at + 11] = struct.pack(">d", claims * 1000)
        tmp.write_bytes(bytes(data))

    _atomic_write(media_dir / name, produce)
    return name


def head_of(media_dir: Path, source: str, size: int | float, name: str) -> str:
    """The first `size` bytes (or that fraction) of a served file: a download that was cut."""

    def produce(tmp: Path) -> None:
        data = (media_dir / source).read_bytes()
        tmp.write_bytes(data[: int(len(data) * size) if isinstance(size, float) else size])

    _atomic_write(media_dir / name, produce)
    return name


def noise(media_dir: Path, name: str, size: int) -> str:
    _atomic_write(media_dir / name, lambda tmp: tmp.write_bytes(random.Random(name).randbytes(size)))
    return name


# ------------------------------------------------------------------ helpers

def ffmpeg_running(job_id: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"ff(mpeg|probe).*{job_id}"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def download_starts(job_id: str) -> list[float]:
    """When each download attempt began (seconds, from the event ids)."""
    return [int(event_id.split("-")[0]) / 1000 for event_id, change in context.store().history(job_id)
            if change.get("state") == State.DOWNLOADING]


def assert_nothing_left(job_id: str, env: dict[str, str]) -> None:
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    assert not (Path(env["STORAGE_DIR"]) / job_id).exists()
    wait_until(lambda: not ffmpeg_running(job_id), timeout=5, what=f"no ffmpeg left for {job_id}")


def assert_failed(job: Job, code: Code, hint: str = "", retryable: bool = False) -> None:
    assert job.state == State.FAILED, (job.state, job.error_text)
    assert job.error_code == code, job.error_text
    assert job.error_text.startswith(TEXT[code]), job.error_text
    assert hint in job.error_text
    assert "Traceback" not in job.error_text and "ERROR" not in job.error_text
    assert job.retryable == retryable


def submit(url: str) -> Job:
    job_id, joined = pipeline.submit(url, origin=origin())
    assert not joined
    return wait_job(job_id, timeout=60)


# ------------------------------------------------------------------ through the worker

CASES: dict[str, tuple[Callable[[Path], str], Code, str]] = {
    # garbage bytes with an audio content type, as .webm and as .mp3
    "garbage-typed-audio": (lambda d: "/media/garbage.webm?type=audio/mpeg", Code.BAD_MEDIA, ""),
    "garbage-mp3": (lambda d: f"/media/{noise(d, 'noise.mp3', 300 * KB)}", Code.BAD_MEDIA, ""),
    # zero bytes, with an audio content type
    "zero-bytes": (lambda d: "/media/empty.webm?type=audio/ogg", Code.BAD_MEDIA, ""),
    # cut files that decode in part: incomplete
    "truncated-webm": (lambda d: "/media/truncated.webm", Code.BAD_MEDIA, "It is incomplete"),
    "truncated-m4a": (lambda d: f"/media/{head_of(d, 'audio.m4a', 0.4, 'cut.m4a')}", Code.BAD_MEDIA,
                      "It is incomplete"),
    # cut inside the header: nothing decodes at all
    "truncated-header-mp4": (lambda d: f"/media/{head_of(d, 'video.mp4', 300, 'cut-head.mp4')}", Code.BAD_MEDIA, ""),
    "truncated-header-webm": (lambda d: f"/media/{head_of(d, 'opus.webm', 150, 'cut-head.webm')}", Code.BAD_MEDIA,
                              ""),
    # a video without sound
    "no-audio-track": (lambda d: "/media/noaudio.mp4", Code.NO_AUDIO, ""),
    # Content-Length a third of the file: the client stops there, the file is cut
    "length-too-short": (lambda d: "/liar/opus.webm", Code.BAD_MEDIA, "It is incomplete"),
    # a header claiming far more than the audio holds
    "header-claims-longer": (lambda d: f"/media/{lying_webm(d, 6, 60)}", Code.BAD_MEDIA, "It is incomplete"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_media_fails_at_once_with_a_clear_reason(
    media: MediaServer, media_dir: Path, test_env: dict[str, str], case: str
) -> None:
    make_path, code, hint = CASES[case]
    path = make_path(media_dir)
    job = submit(media.url(path) + ("&" if "?" in path else "?") + f"n={uuid.uuid4().hex}")
    assert_failed(job, code, hint)
    assert len(download_starts(job.id)) == 1  # permanent: no retry
    assert_nothing_left(job.id, test_env)


def test_content_length_longer_than_the_body_is_retried_then_fails(
    media: MediaServer, test_env: dict[str, str]
) -> None:
    job = submit(media.url("/liar/opus.webm", length=500_000, n=uuid.uuid4().hex))
    assert_failed(job, Code.NETWORK, "It failed after 4 tries.", retryable=True)
    assert len(download_starts(job.id)) == 4
    assert_nothing_left(job.id, test_env)


def test_header_claiming_less_than_the_audio_gives_the_real_length(
    media: MediaServer, media_dir: Path, test_env: dict[str, str]
) -> None:
    name = lying_webm(media_dir, 20, 4)
    job = submit(media.media_url(name) + f"?n={uuid.uuid4().hex}")
    assert job.state == State.READY, job.error_text
    assert abs(job.duration - 20) < 0.5
    assert abs(MP3(job.files[0]).info.length - 20) < 0.5
    assert not (Path(test_env["TEMP_DIR"]) / job.id).exists()
    assert not ffmpeg_running(job.id)
    lifecycle.remove_files(job.id)  # nobody will collect it: leave storage as we found it


@pytest.mark.slow
def test_stalled_download_times_out_and_frees_the_worker(media: MediaServer, test_env: dict[str, str]) -> None:
    """Full Content-Length, 30 % of the body, then silence: each try ends within socket_timeout × attempts."""
    n = uuid.uuid4().hex
    timeout = float(test_env["SOCKET_TIMEOUT"])
    tries = get_settings().max_retries + 1
    per_try = 3 * timeout  # yt-dlp's own retries: 2, each resuming where the last stalled
    started = time.monotonic()
    job = submit_slow(media.url("/stall/opus.webm", n=n), timeout=tries * (per_try + 5) + 20)
    elapsed = time.monotonic() - started
    assert_failed(job, Code.TIMEOUT, f"It failed after {tries} tries.", retryable=True)
    starts = download_starts(job.id)
    assert len(starts) == tries
    backoff_max = float(test_env["RETRY_BACKOFF_MAX"])
    for earlier, later in itertools.pairwise(starts):
        assert timeout < later - earlier < per_try + backoff_max + 3, starts
    assert elapsed < tries * (per_try + backoff_max) + 10
    stalled = [r for r in media.requests_for("/stall/") if n in r.path]
    assert tries * 3 <= len(stalled) <= tries * 4  # per try: 3 download attempts (+ the extractor's look)
    wait_until(lambda: all(r.finished for r in media.requests_for("/stall/") if n in r.path), timeout=5,
               what="every stalled connection closed by the client")
    assert_nothing_left(job.id, test_env)
    # The worker is free again: an ordinary job goes through.
    after = submit(media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}")
    assert after.state == State.READY, after.error_text
    lifecycle.remove_files(after.id)


def test_a_trickling_source_fails_as_too_slow(world: World, media: MediaServer) -> None:
    """Bytes that keep coming, too few ever to finish: the job fails within a few SLOW_GRACE, not at the time limit.

    100 B/s comes as 10 bytes every tenth of a second: the socket never times out, and yt-dlp's first block
    of a KB takes 10 s, so no progress hook is called before the pace is judged.
    """
    world.worker("paced", MIN_DOWNLOAD_RATE="8192", SLOW_GRACE="1")
    n = uuid.uuid4().hex
    job = submit_slow(media.url("/slow/100/opus.webm", n=n), timeout=30)
    assert_failed(job, Code.TOO_SLOW, "The bot needs at least 8 kB/s.", retryable=True)
    assert len(download_starts(job.id)) == 1  # not tried again: it would only hold a slot again
    letters = [json.loads(raw) for raw in context.redis_client().lrange(context.keys().dead, 0, -1)]
    assert "MIN_DOWNLOAD_RATE" in next(letter["error"] for letter in letters if letter["job_id"] == job.id)
    wait_until(lambda: all(r.finished for r in media.requests_for("/slow/100/") if n in r.path), timeout=5,
               what="the trickle's connection closed by the client")
    assert_nothing_left(job.id, world.env)
    # A slow source above the minimum goes through, however many stretches it takes.
    steady = submit_slow(media.url("/slow/24000/opus.webm", n=uuid.uuid4().hex), timeout=30)
    assert steady.state == State.READY, steady.error_text
    lifecycle.remove_files(steady.id)


def submit_slow(url: str, timeout: float) -> Job:
    job_id, _ = pipeline.submit(url, origin=origin())
    return wait_job(job_id, timeout=timeout)


# ------------------------------------------------------------------ in this process, small limits

class _Streams(ThreadingHTTPServer):
    daemon_threads = True
    sent: dict[str, int]
    lock: threading.Lock


class _StreamHandler(BaseHTTPRequestHandler):
    """Endless audio-typed bodies: without a length, chunked, or gzip that inflates far past its length."""

    protocol_version = "HTTP/1.1"
    server: _Streams
    BOMB = gzip.compress(bytes(8 * 1024 * KB), 9)  # 8 MiB of zeros in ~8 KB

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        mode = self.path.split("?")[0].strip("/").split("/")[0]
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Connection", "close")
        self.close_connection = True
        if mode == "gzip":
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(self.BOMB)))
            self.end_headers()
            return self._send(self.BOMB)
        if mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = random.Random(1).randbytes(64 * KB)
        for _ in range(ENDLESS_BLOCKS):  # should the client never stop
            if not self._send(b"%x\r\n%s\r\n" % (len(block), block) if mode == "chunked" else block):
                return
        if mode == "chunked":
            self._send(b"0\r\n\r\n")

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
        except OSError:
            return False
        with self.server.lock:
            self.server.sent[self.path] = self.server.sent.get(self.path, 0) + len(data)
        return True


@pytest.fixture(scope="module")
def streams() -> Iterator[_Streams]:
    server = _Streams(("127.0.0.1", 0), _StreamHandler)
    server.sent = {}
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def local_settings(**changes: Any) -> Settings:
    return get_settings().model_copy(update=changes)


def run_here(url: str, state: State, work: Callable[[Job, Path, StageReporter], Any]) -> tuple[Job, JobError]:
    """A stage as the worker runs it: the job in Redis, its reporter, and lifecycle.fail on a JobError."""
    store = context.store()
    job = Job(id=new_job_id(), url=url, title="Lying Tone")
    store.create(job, origin())
    reporter = StageReporter(store, job.id, state, 0.1, get_settings().heartbeat_timeout)
    reporter.start(message="")
    try:
        with pytest.raises(JobError) as caught:
            work(store.get(job.id), lifecycle.workdir(job.id, reporter.token), reporter)
        lifecycle.fail(job.id, caught.value, f"tasks.{state}", run=reporter)
    finally:
        reporter.close()
    return store.get(job.id), caught.value


@pytest.mark.parametrize("mode", ["no-length", "chunked", "gzip"])
def test_download_size_is_counted_when_the_length_is_missing_or_lies(
    streams: _Streams, test_env: dict[str, str], mode: str
) -> None:
    limit = 256 * KB
    settings = local_settings(max_filesize=limit,
                              network_allowlist=[*get_settings().network_allowlist,
                                                 f"127.0.0.1:{streams.server_address[1]}"])
    path = f"/{mode}/song.mp3?n={uuid.uuid4().hex}"
    url = f"http://127.0.0.1:{streams.server_address[1]}{path}"
    job, error = run_here(url, State.DOWNLOADING, lambda job, workdir, rep: download(job, settings, workdir, rep))
    assert error.code == Code.TOO_LARGE and not error.transient
    assert error.detail.endswith("bytes and counting")  # stopped by counting, not by an announced length
    assert_failed(job, Code.TOO_LARGE, "The limit is 256 kB.")
    if mode != "gzip":  # the endless body was given up soon after the limit, not read on
        assert streams.sent.get(path, 0) < limit + BUFFERED
    assert_nothing_left(job.id, test_env)


def test_announced_length_over_the_limit_is_refused_unread(media: MediaServer, test_env: dict[str, str]) -> None:
    settings = local_settings(max_filesize=30 * KB)
    url = media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}"
    job, _ = run_here(url, State.DOWNLOADING, lambda job, workdir, rep: download(job, settings, workdir, rep))
    assert_failed(job, Code.TOO_LARGE, "The limit is 30 kB.")
    assert_nothing_left(job.id, test_env)


def test_max_duration_holds_on_the_decoded_length(media_dir: Path, test_env: dict[str, str]) -> None:
    """A header that says 5 s over 60 s of audio: ffmpeg is stopped as it passes the limit."""
    name = lying_webm(media_dir, 60, 5)
    settings = local_settings(max_duration=20)

    def work(job: Job, workdir: Path, reporter: StageReporter) -> None:
        workdir.mkdir(parents=True)
        shutil.copy(media_dir / name, workdir / "source.webm")
        convert(job, settings, workdir, workdir, lifecycle.outdir(job.id, reporter.token), reporter)

    job, error = run_here("http://example.invalid/lying.webm", State.CONVERTING, work)
    assert error.code == Code.TOO_LONG
    assert_failed(job, Code.TOO_LONG, "The limit is 0:20.")
    assert 20 <= float(error.detail.rstrip("s")) < 40  # stopped near the limit, not at the end
    assert_nothing_left(job.id, test_env)


def test_thumbnail_is_bounded_and_must_be_an_image(streams: _Streams, media: MediaServer, tmp_path: Path) -> None:
    """yt-dlp would copy a thumbnail of any size; ours stops at its limit and keeps only real images."""
    port = streams.server_address[1]
    allow = Allowlist([f"127.0.0.1:{port}", f"127.0.0.1:{media.port}"])
    endless = f"/no-length/thumb.jpg?n={uuid.uuid4().hex}"
    with GuardedYoutubeDL({"quiet": True, "socket_timeout": 3}, allowlist=allow) as ydl:
        started = time.monotonic()
        info = {"thumbnails": [{"url": media.media_url("cover.jpg")}, {"url": f"http://127.0.0.1:{port}{endless}"}]}
        assert fetch_thumbnail(ydl, info, tmp_path, max_bytes=256 * KB) == tmp_path / "thumbnail.jpg"
        assert time.monotonic() - started < 5
        assert streams.sent[endless] < 256 * KB + BUFFERED  # the endless one was given up
        assert fetch_thumbnail(ydl, {"thumbnails": [{"url": media.media_url("opus.webm")}]}, tmp_path / "x") is None
        inside = {"thumbnails": [{"url": "http://127.0.0.1:9/cover.jpg"}]}
        assert fetch_thumbnail(ydl, inside, tmp_path / "x") is None
        assert ydl.netguard_refusals  # refused by the guard, not reached
    assert [p.name for p in tmp_path.iterdir()] == ["thumbnail.jpg"]
