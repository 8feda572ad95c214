"""The threads pool, as `python -m tasks worker` and `python -m bots up` run every queue: one process,
a thread per task. Time limits, the pace check, cancel and worker loss hold there as in prefork
(tests/test_worker_loss.py kills a worker mid-download in both pools).

Each test has a world of its own (its key prefix, its queues) served by threads workers it starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from common import context
from common.errors import TEXT, Code
from common.jobs import State
from tasks import pipeline
from tests.conftest import World, origin, wait_job, wait_until
from tests.media import MediaServer, make_long
from tests.test_bad_media import assert_failed, assert_nothing_left, download_starts
from tests.test_worker_loss import assert_delivered_once, ffmpeg_of

pytestmark = pytest.mark.slow

THREADS = "threads"


def pool_processes(proc: subprocess.Popen) -> list[int]:
    """The worker's children that run its own command line (a prefork pool's processes)."""
    found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if cmdline(int(pid)) == cmdline(proc.pid)]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def test_one_process_runs_downloads_side_by_side(world: World, media: MediaServer) -> None:
    worker = world.worker("side", concurrency=3, pool=THREADS)
    store = context.store()
    jobs = [pipeline.submit(media.url("/slow/60000/opus.webm", n=uuid.uuid4().hex), origin=origin())[0]
            for _ in range(3)]
    wait_until(lambda: all((j := store.get(i)) and j.state == State.DOWNLOADING and j.percent > 10.5 for i in jobs),
               timeout=30, what="three downloads under way at once")
    assert pool_processes(worker) == []  # threads of the worker, not processes
    for job_id in jobs:
        job = wait_job(job_id, timeout=90)
        assert job.state == State.READY, job.error_text
        assert abs(MP3(job.files[0]).info.length - 8.0) < 0.5
        assert_delivered_once(job_id, world)


def test_a_download_over_its_time_limit_fails_as_a_timeout(world: World, media: MediaServer) -> None:
    """Celery's limits do not reach a thread: the stage's watch interrupts it, and the thread is free again."""
    world.worker("limited", pool=THREADS, SOFT_TIME_LIMIT="6", TIME_LIMIT="60")  # room for the next job's stages
    n = uuid.uuid4().hex
    job = wait_job(pipeline.submit(media.url("/slow/2000/opus.webm", n=n), origin=origin())[0], timeout=60)
    assert_failed(job, Code.TIMEOUT, retryable=True)
    assert "took too long" in job.error_text
    assert_nothing_left(job.id, world.env)
    wait_until(lambda: all(r.finished for r in media.requests_for("/slow/2000/") if n in r.path), timeout=10,
               what="the download's connection closed")
    after = wait_job(pipeline.submit(media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}", origin=origin())[0],
                     timeout=60)  # the one thread of the worker took the next job
    assert after.state == State.READY, after.error_text


def test_a_conversion_over_its_time_limit_stops_ffmpeg(world: World, media: MediaServer, media_dir: Path) -> None:
    long = make_long(media_dir, minutes=30)  # about 12 s of encoding here: well past the limit
    world.worker("limited", pool=THREADS, SOFT_TIME_LIMIT="8", TIME_LIMIT="60", MAX_DURATION="3600")
    job_id, _ = pipeline.submit(media.media_url(long.name) + f"?n={uuid.uuid4().hex}", origin=origin())
    wait_until(lambda: ffmpeg_of(job_id), timeout=30, what="conversion under way")
    job = wait_job(job_id, timeout=60)
    assert_failed(job, Code.TIMEOUT, retryable=True)
    assert [c for _, c in context.store().history(job_id) if c.get("state") == State.CONVERTING]
    assert_nothing_left(job_id, world.env)


def test_a_trickle_fails_as_too_slow(world: World, media: MediaServer) -> None:
    """No signal reaches a thread: the watch judges the pace and interrupts the read that waits."""
    world.worker("paced", pool=THREADS, MIN_DOWNLOAD_RATE="8192", SLOW_GRACE="1")
    n = uuid.uuid4().hex
    started = time.monotonic()
    job = wait_job(pipeline.submit(media.url("/slow/100/opus.webm", n=n), origin=origin())[0], timeout=30)
    assert_failed(job, Code.TOO_SLOW, "The bot needs at least 8 kB/s.", retryable=True)
    assert time.monotonic() - started < 20  # a few SLOW_GRACE, not the time limit
    assert len(download_starts(job.id)) == 1
    wait_until(lambda: all(r.finished for r in media.requests_for("/slow/100/") if n in r.path), timeout=10,
               what="the trickle's connection closed by the client")
    assert_nothing_left(job.id, world.env)


def test_cancel_stops_a_download_and_a_conversion(world: World, media: MediaServer, media_dir: Path) -> None:
    make_long(media_dir, minutes=10)
    world.worker("cancel", concurrency=2, pool=THREADS)
    store = context.store()
    downloading, _ = pipeline.submit(media.url("/slow/20000/opus.webm", n=uuid.uuid4().hex), origin=origin())
    converting, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}", origin=origin())
    wait_until(lambda: (j := store.get(downloading)) and j.state == State.DOWNLOADING and j.percent > 10.5,
               timeout=30, what="download under way")
    wait_until(lambda: ffmpeg_of(converting), timeout=60, what="conversion under way")
    assert pipeline.cancel(downloading) and pipeline.cancel(converting)
    for job_id in (downloading, converting):
        wait_until(lambda j=job_id: ffmpeg_of(j) is None and not (Path(world["TEMP_DIR"]) / j).exists(), timeout=15,
                   what=f"job {job_id} stopped and its files gone")
        assert store.get(job_id).state == State.CANCELLED
        wait_until(lambda j=job_id: not context.redis_client().exists(context.keys().job_lease(j)), timeout=10,
                   what="the stage given up")
        assert_nothing_left(job_id, world.env)
    after = wait_job(pipeline.submit(media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}", origin=origin())[0],
                     timeout=60)
    assert after.state == State.READY, after.error_text


def test_a_worker_killed_mid_conversion_takes_its_ffmpeg_along(world: World, media: MediaServer,
                                                               media_dir: Path) -> None:
    make_long(media_dir, minutes=10)
    doomed = world.worker("doomed", pool=THREADS)
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}", origin=origin())
    encoding = wait_until(lambda: ffmpeg_of(job_id), timeout=60, what="conversion under way")
    assert isinstance(encoding, tuple) and encoding[1] == doomed.pid  # run by the worker itself, from a thread
    os.kill(doomed.pid, signal.SIGKILL)  # the worker alone (not its process group): ffmpeg goes by itself
    doomed.wait()
    wait_until(lambda: not Path(f"/proc/{encoding[0]}").exists(), timeout=5, what="ffmpeg gone with its worker")
    world.worker("rescuer", pool=THREADS)
    job = wait_job(job_id, timeout=90)
    assert job.state == State.READY, job.error_text
    assert job.restarts == 1
    assert abs(MP3(job.files[0]).info.length - 600.0) < 1.0
    assert_delivered_once(job_id, world)


def test_a_job_that_kills_its_worker_twice_fails_clearly(world: World, media: MediaServer, media_dir: Path) -> None:
    """In the threads pool the OOM killer takes the whole worker: the job is taken up once, and its worker
    vanishing a second time fails it as out of memory instead of costing a worker on every round."""
    make_long(media_dir, minutes=10)
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}", origin=origin())
    store = context.store()
    for loss in (1, 2):
        doomed = world.worker(f"doomed{loss}", pool=THREADS)
        encoding = wait_until(lambda w=doomed: (found := ffmpeg_of(job_id)) and found[1] == w.pid and found,
                              timeout=90, what=f"conversion {loss} under way")
        assert isinstance(encoding, tuple)
        os.kill(doomed.pid, signal.SIGKILL)  # as the OOM killer does: the one process, threads and all
        doomed.wait()
    world.worker("rescuer", pool=THREADS)
    job = wait_job(job_id, timeout=90)
    assert job.state == State.FAILED and job.error_code == Code.OUT_OF_MEMORY, job
    assert job.error_text == TEXT[Code.OUT_OF_MEMORY] and not job.retryable
    assert job.restarts == 1
    assert len([c for _, c in store.history(job_id) if c.get("state") == State.CONVERTING]) == 2  # not a third
    assert ffmpeg_of(job_id) is None
    assert not (Path(world["TEMP_DIR"]) / job_id).exists() and not (Path(world["STORAGE_DIR"]) / job_id).exists()
