"""Pages that never end, or decode to a gigabyte, through a real worker: a clear error at once, memory bounded.

yt-dlp reads a page, a manifest or JSON whole; the guarded connections cap such whole reads at
MAX_PAGE_BYTES (16 MiB by default) counted after decoding. The media stream itself is not capped
by it. The worker has one pool process, whose peak resident memory (VmHWM) is read from /proc
before and after each hostile page.
"""

from __future__ import annotations

import io
import re
import subprocess
import uuid
from pathlib import Path

from mutagen.mp3 import MP3

from common import context
from common.errors import Code
from common.jobs import Job, State
from tasks import pipeline
from tests.conftest import World, deliver, origin, wait_job
from tests.media import FFMPEG, MediaServer

BOMBS = ["/endless", "/bomb/gzip", "/bomb/br"]  # chunked without end; 1 GiB of HTML as ~1 MB gzip, ~2 KB brotli
MAX_GROWTH = 200 * 1024 * 1024


def pool_process(worker: subprocess.Popen) -> int:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def peak(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def downloads_started(job: Job) -> int:
    return sum(1 for _, change in context.store().history(job.id) if change.get("state") == State.DOWNLOADING)


def test_pages_that_never_end_or_explode_fail_at_once_in_bounded_memory(world: World, media: MediaServer) -> None:
    worker = world.worker("bombs", concurrency=1)
    tag = uuid.uuid4().hex[:8]
    warm = wait_job(pipeline.submit(media.url("/media/opus.webm", warm=tag), origin=origin())[0])
    assert warm.state == State.READY  # yt-dlp, its extractors and ffmpeg used once: what follows is the pages' own
    deliver(warm.id)
    child = pool_process(worker)
    for path in BOMBS:
        before = peak(child)
        job = wait_job(pipeline.submit(media.url(path, n=tag), origin=origin())[0], timeout=30)
        assert (job.state, job.error_code) == (State.FAILED, Code.PAGE_TOO_LARGE), (path, job.error_text)
        assert job.error_text == "The site's page is too large for the bot to read. The limit is 16 MB " \
                                 "(MAX_PAGE_BYTES).", path
        assert not job.retryable and downloads_started(job) == 1  # no retry
        grown = peak(child) - before
        assert grown < MAX_GROWTH, f"{path}: the worker grew by {grown / 2**20:.0f} MiB"
        assert pool_process(worker) == child  # the same process: neither killed nor replaced
        assert not (Path(world["TEMP_DIR"]) / job.id).exists()


def test_media_larger_than_the_page_cap_still_downloads(world: World, media: MediaServer, media_dir: Path,
                                                         tmp_path: Path) -> None:
    """The cap is on whole reads: a WAV of about 19 MB streams through the downloader as before."""
    world.worker("bigmedia", concurrency=1)
    name = f"big-{uuid.uuid4().hex[:8]}.wav"
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=100", "-ac", "2", "-f", "wav",
                    str(tmp_path / name)], check=True, timeout=60)
    (tmp_path / name).rename(media_dir / name)
    assert (media_dir / name).stat().st_size > 16 * 2**20
    job = wait_job(pipeline.submit(media.media_url(name), origin=origin())[0], timeout=90)
    assert job.state == State.READY, job.error_text
    assert round(MP3(io.BytesIO(Path(job.files[0]).read_bytes())).info.length) == 100
    deliver(job.id)
