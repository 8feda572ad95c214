"""No job lost, none delivered twice: workers killed with SIGKILL mid-stage, messages delivered twice.

These tests run in a world of their own (their own key prefix, so their own queues) with
their own worker processes, so that killing a worker does not touch the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from common import context, stats
from common.errors import TEXT, Code
from common.jobs import State
from tasks import pipeline
from tasks.celery_app import app
from tests.conftest import World, wait_job, wait_until
from tests.media import MediaServer, make_long

pytestmark = pytest.mark.slow


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool: nothing gets to ack, reject or clean up."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def assert_delivered_once(job_id: str, env: World) -> None:
    job = context.store().get(job_id)
    assert job.state == State.READY
    ready_events = [c for _, c in context.store().history(job_id) if c.get("state") == State.READY]
    assert len(ready_events) == 1
    assert [p.name for p in (Path(env["STORAGE_DIR"]) / job_id).rglob("*.mp3")] == [Path(job.files[0]).name]
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    # the last stage gives its lease back as it returns
    wait_until(lambda: not context.redis_client().exists(context.keys().job_lease(job_id)), timeout=5,
               what="the lease given back")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_worker_killed_mid_download_is_taken_up_again(world: World, media: MediaServer, pool: str) -> None:
    first = world.worker("doomed", pool=pool)
    job_id, _ = pipeline.submit(media.url("/slow/8000/opus.webm", n=uuid.uuid4().hex))
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING and j.percent > 12,
               timeout=30, what="download under way")
    kill_hard(first)
    world.worker("rescuer", pool=pool)
    job = wait_job(job_id, timeout=60)
    assert job.state == State.READY, job.error_text
    assert job.restarts == 1
    assert abs(MP3(job.files[0]).info.length - 8.0) < 0.5
    assert_delivered_once(job_id, world)


def test_worker_killed_mid_conversion_is_taken_up_again(world: World, media: MediaServer,
                                                        media_dir: Path) -> None:
    make_long(media_dir, minutes=10)
    first = world.worker("doomed")
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}")
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.CONVERTING and j.percent > 62,
               timeout=60, what="conversion under way")
    assert ffmpeg_of(job_id)
    kill_hard(first)
    wait_until(lambda: ffmpeg_of(job_id) is None, timeout=10, what="ffmpeg dying with its worker")
    world.worker("rescuer")
    job = wait_job(job_id, timeout=90)
    assert job.state == State.READY, job.error_text
    assert job.restarts == 1
    assert abs(MP3(job.files[0]).info.length - 600.0) < 1.0
    assert_delivered_once(job_id, world)


def test_a_message_delivered_twice_changes_nothing(world: World, media: MediaServer) -> None:
    world.worker("single", concurrency=2)
    job_id, _ = pipeline.submit(media.url("/slow/12000/opus.webm", n=uuid.uuid4().hex))
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING and j.percent > 11,
               timeout=30, what="download under way")
    app.send_task("tasks.download", (job_id,))  # the broker hands out the running stage again
    job = wait_job(job_id, timeout=60)
    assert job.state == State.READY and job.restarts == 0
    for name in ("tasks.download", "tasks.convert", "tasks.cleanup"):  # and every stage, after the fact
        app.send_task(name, (job_id,))
    wait_until(lambda: not stats_waiting(), timeout=20, what="the duplicates consumed")
    assert_delivered_once(job_id, world)


def stats_waiting() -> int:
    return sum(stats.queue_depth(q) for q in ("download", "conversion", "cleanup")) + len(
        context.redis_client().hkeys(context.keys().broker_unacked))


def test_a_full_disk_fails_the_job_clearly_and_early(world: World, media: MediaServer) -> None:
    world.worker("full", MIN_FREE_BYTES=str(10**18))
    job = wait_job(pipeline.submit(media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}")[0], timeout=60)
    assert job.state == State.FAILED and job.error_code == "disk_full"
    assert "out of space" in job.error_text and job.retryable
    assert not (Path(world["TEMP_DIR"]) / job.id).exists()


def test_a_stage_over_its_time_limit_fails_as_a_timeout(world: World, media: MediaServer) -> None:
    world.worker("limited", SOFT_TIME_LIMIT="2", TIME_LIMIT="30")
    job = wait_job(pipeline.submit(media.url("/slow/4000/opus.webm", n=uuid.uuid4().hex))[0], timeout=60)
    assert job.state == State.FAILED and job.error_code == "timeout", job
    assert "took too long" in job.error_text
    assert not (Path(world["TEMP_DIR"]) / job.id).exists()


def ffmpeg_of(job_id: str) -> tuple[int, int] | None:
    """(pid, parent pid) of the ffmpeg encoding the job, if one runs."""
    found = subprocess.run(["pgrep", "-f", f"^ffmpeg .*{job_id}"], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        return int(pid), int(stat.rsplit(")", 1)[1].split()[1])
    return None


def test_a_job_that_kills_its_worker_process_twice_fails_clearly(world: World, media: MediaServer,
                                                                 media_dir: Path) -> None:
    """The OOM killer's SIGKILL on the pool process running a stage, while the worker lives on: once is taken
    up again, the second time fails the job with a clear text; no endless re-sends, no file or ffmpeg left."""
    make_long(media_dir, minutes=10)
    worker = world.worker("oom")
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}")
    store = context.store()
    killed: list[int] = []
    for loss in (1, 2):
        encoding = wait_until(lambda: (found := ffmpeg_of(job_id)) and found[1] not in killed and found,
                              timeout=60, what=f"conversion {loss} under way")
        assert isinstance(encoding, tuple)
        ffmpeg_pid, child = encoding
        os.kill(child, signal.SIGKILL)  # as the OOM killer does: the pool process, not the worker
        killed.append(child)
        wait_until(lambda pid=ffmpeg_pid: not Path(f"/proc/{pid}").exists(), timeout=5,
                   what="ffmpeg gone with its process")
    job = wait_job(job_id, timeout=30)
    assert job.state == State.FAILED and job.error_code == "out_of_memory", job
    assert job.error_text == TEXT[Code.OUT_OF_MEMORY] and not job.retryable
    assert job.losses == 2 and job.restarts == 1
    runs = [c for _, c in store.history(job_id) if c.get("state") == State.CONVERTING]
    assert len(runs) == 2
    wait_until(lambda: not stats_waiting(), timeout=20, what="the returned messages consumed")
    assert [c for _, c in store.history(job_id) if c.get("state") == State.CONVERTING] == runs  # not sent again
    assert not (Path(world["TEMP_DIR"]) / job_id).exists() and not (Path(world["STORAGE_DIR"]) / job_id).exists()
    assert ffmpeg_of(job_id) is None
    assert worker.poll() is None  # the worker lived through it


def test_an_ffmpeg_killed_for_memory_fails_the_job_clearly(world: World, media: MediaServer,
                                                           media_dir: Path) -> None:
    make_long(media_dir, minutes=10)
    world.worker("oom-ffmpeg")
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}")
    encoding = wait_until(lambda: ffmpeg_of(job_id), timeout=60, what="conversion under way")
    assert isinstance(encoding, tuple)
    os.kill(encoding[0], signal.SIGKILL)  # the OOM killer picks the largest process: here, ffmpeg
    job = wait_job(job_id, timeout=30)
    assert job.state == State.FAILED and job.error_code == "out_of_memory", job
    assert job.error_text == TEXT[Code.OUT_OF_MEMORY]
    assert not (Path(world["TEMP_DIR"]) / job_id).exists() and not (Path(world["STORAGE_DIR"]) / job_id).exists()
