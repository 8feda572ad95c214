"""Fenced leases: a run of a stage that lost the job's lease changes nothing, and stops.

First the store's fenced writes against the real Redis, run by run; then whole jobs through real
workers whose run stalls past the heartbeat timeout: Redis paused (DEBUG SLEEP on a server of its
own) and a worker process frozen (SIGSTOP) while the stage is sent again beside it.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
import redis
from mutagen.mp3 import MP3

from common import context
from common.errors import Code, JobError
from common.jobs import Job, State, Written, new_job_id
from tasks import lifecycle, pipeline, watchdog
from tasks.progress import LeaseTaken, StageReporter
from tests.conftest import PrivateRedis, World, origin, wait_job, wait_until, world_of
from tests.media import MediaServer

HEARTBEAT = 2  # seconds: the workers' heartbeat timeout in the end-to-end tests


def new_job(state: State = State.QUEUED, restarts: int = 0) -> str:
    job = Job(id=new_job_id(), url=f"http://127.0.0.1:9/{uuid.uuid4().hex}", state=state, restarts=restarts)
    context.store().create(job, origin())
    return job.id


def new_run(job_id: str, lease_ttl: float = 6.0) -> StageReporter:
    return StageReporter(context.store(), job_id, State.DOWNLOADING, interval=0.0, lease_ttl=lease_ttl)


def lease_of(job_id: str) -> bytes | None:
    return context.redis_client().get(context.keys().job_lease(job_id))


def dead_letters(job_id: str) -> list[dict]:
    raw = context.redis_client().lrange(context.keys().dead, 0, -1)
    return [letter for letter in map(json.loads, raw) if letter["job_id"] == job_id]


def test_a_run_that_lost_its_lease_can_neither_publish_nor_advance_nor_fail(test_env: dict[str, str]) -> None:
    job_id = new_job()
    store = context.store()
    stale = new_run(job_id, lease_ttl=1.0)
    stale.start(message="")
    stale.stop()  # it stalls: no heartbeat renews its lease
    wait_until(lambda: lease_of(job_id) is None, timeout=10, what="the stalled run's lease expiring")
    fresh = new_run(job_id)
    fresh.start(message="")
    fresh.progress(0.5)
    fresh_file = lifecycle.workdir(job_id, fresh.token) / "source.webm"
    fresh_file.parent.mkdir(parents=True)
    fresh_file.write_bytes(b"the fresh run's download")
    seen = store.history(job_id)

    with pytest.raises(LeaseTaken):
        stale.progress(0.9, title="stale")
    with pytest.raises(LeaseTaken):
        stale.flush()
    assert lifecycle.fail(job_id, JobError(Code.SERVER, "HTTP 500"), "tasks.download", run=stale) \
        is Written.LEASE_LOST
    assert stale.finish(files=["/stale.mp3"]) is Written.LEASE_LOST

    job = store.get(job_id)
    assert job.state == State.DOWNLOADING and job.percent == 30.0
    assert job.title == "" and job.files == [] and job.error_code == ""
    assert store.history(job_id) == seen  # not one event from the stale run
    assert not dead_letters(job_id)
    assert fresh_file.read_bytes() == b"the fresh run's download"  # its failure removed nobody's files
    assert lease_of(job_id) == fresh.token.encode()

    assert fresh.finish(download_run=fresh.token) is Written.DONE
    assert store.get(job_id).download_run == fresh.token
    assert lease_of(job_id) is None  # the last write gave the lease back
    lifecycle.remove_files(job_id)


def test_the_heartbeat_notices_a_lost_lease_and_the_run_stops_at_its_next_report(test_env: dict[str, str]) -> None:
    job_id = new_job()
    keys = context.keys()
    client = context.redis_client()
    run = new_run(job_id, lease_ttl=0.6)  # a beat every 0.2 s
    run.start(message="")
    client.set(keys.job_lease(job_id), "the-run-that-took-over", px=60_000)
    wait_until(lambda: run.lost, timeout=10, what="the heartbeat finding the lease gone")
    assert run._beater is not None
    run._beater.join(5)
    last_beat = client.zscore(keys.running, job_id)
    run.interval = 3600.0  # a report that would not be published yet still stops the run
    with pytest.raises(LeaseTaken):
        run.progress(0.5)
    assert not run.holds_lease()
    run.close()
    assert lease_of(job_id) == b"the-run-that-took-over"  # not given back: it is not ours
    assert client.zscore(keys.running, job_id) == last_beat  # the lost run no longer shows the job alive
    client.zrem(keys.running, job_id)


def test_a_failure_lands_once_with_its_bookkeeping(test_env: dict[str, str]) -> None:
    job_id = new_job()
    run = new_run(job_id)
    run.start(message="")
    error = JobError(Code.NOT_FOUND, "HTTP 404")
    assert lifecycle.fail(job_id, error, "tasks.download", run=run) is Written.DONE
    assert lease_of(job_id) is None
    assert lifecycle.fail(job_id, error, "watchdog") is Written.FINISHED
    job = context.store().get(job_id)
    assert job.state == State.FAILED and job.error_code == Code.NOT_FOUND
    assert len(dead_letters(job_id)) == 1
    finished = context.redis_client().zrange(context.keys().finished, 0, -1)
    assert len([entry for entry in finished if entry.decode().startswith(job_id)]) == 1


def test_the_watchdog_cannot_fail_a_job_that_a_run_holds(test_env: dict[str, str]) -> None:
    job_id = new_job(State.DOWNLOADING, restarts=watchdog.MAX_RESTARTS)
    run = new_run(job_id)
    run.start(message="")
    try:
        error = JobError(Code.INTERNAL, "workers kept vanishing")
        assert lifecycle.fail(job_id, error, "watchdog") is Written.LEASE_LOST
        assert context.store().get(job_id).state == State.DOWNLOADING and not dead_letters(job_id)
    finally:
        run.close()
        context.redis_client().zrem(context.keys().running, job_id)


def pool_children(pid: int) -> list[int]:
    """The pool processes of a prefork worker (its main process's children)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def history_of(job_id: str) -> list[dict]:
    return [change for _, change in context.store().history(job_id)]


def assert_one_completion(job_id: str, env: dict[str, str]) -> Job:
    """Ready once, never failed, one MP3 of the source's length in one run's folder, no temp file."""
    job = wait_job(job_id, timeout=120)
    assert job.state == State.READY, job.error_text
    changes = history_of(job_id)
    assert [c["state"] for c in changes if c.get("state") in (State.READY, State.FAILED)] == [State.READY]
    assert not dead_letters(job_id)
    mp3s = list((Path(env["STORAGE_DIR"]) / job_id).rglob("*.mp3"))
    assert [str(p) for p in mp3s] == job.files
    assert abs(MP3(mp3s[0]).info.length - 8.0) < 0.5
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    return job


def assert_progress_never_went_back(job_id: str) -> None:
    """Within each run of a stage (from the event that enters it) the percent only rises: a stale
    run's report would go back to where it stalled."""
    runs: list[list[float]] = []
    for change in history_of(job_id):
        if "state" in change:
            runs.append([])
        if "percent" in change:
            runs[-1].append(change["percent"])
    for percents in runs:
        assert percents == sorted(percents), runs


@pytest.mark.slow
def test_redis_paused_longer_than_the_heartbeat_timeout(private_redis: PrivateRedis, test_env: dict[str, str],
                                                        media: MediaServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**test_env, "REDIS_URL": private_redis.url, "KEY_PREFIX": "paused:", "HEARTBEAT_TIMEOUT": str(HEARTBEAT)}
    with world_of(env, tmp_path, monkeypatch) as place:
        place.worker("paused", concurrency=2, pool="threads")  # as `python -m tasks worker` runs
        job_id, _ = pipeline.submit(media.url("/slow/8000/opus.webm", n=uuid.uuid4().hex), origin=origin())
        store = context.store()
        wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING and j.percent > 12,
                   timeout=30, what="download under way")
        pause = redis.Redis.from_url(private_redis.url, socket_timeout=60)
        pause.execute_command("DEBUG", "SLEEP", 3 * HEARTBEAT)  # every client waits, every lease expires
        pause.close()
        job = assert_one_completion(job_id, env)
        assert job.restarts <= 1  # taken up again by the watchdog, or by the broker's own copy: once
        assert_progress_never_went_back(job_id)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_frozen_run_wakes_beside_the_one_that_took_over_and_changes_nothing(world: World, media: MediaServer,
                                                                                 pool: str) -> None:
    frozen = world.worker("frozen", pool=pool, HEARTBEAT_TIMEOUT=str(HEARTBEAT))
    job_id, _ = pipeline.submit(media.url("/slow/8000/opus.webm", n=uuid.uuid4().hex), origin=origin())
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING and j.percent > 12,
               timeout=30, what="download under way")
    # A stall (a pool process, or a whole threads-pool worker): its heartbeat stops with it, its lease expires.
    [child] = pool_children(frozen.pid) if pool == "prefork" else [frozen.pid]
    os.kill(child, signal.SIGSTOP)
    try:
        rescuer = world.worker("rescuer", HEARTBEAT_TIMEOUT=str(HEARTBEAT))
        wait_until(lambda: (j := store.get(job_id)) and j.restarts == 1 and j.percent > 25, timeout=60,
                   what="the stage sent again, and well under way beside the frozen run")
    finally:
        os.kill(child, signal.SIGCONT)
    assert rescuer.poll() is None
    assert_one_completion(job_id, world.env)
    assert store.get(job_id).restarts == 1
    assert_progress_never_went_back(job_id)
    wait_until(lambda: b"belongs to another run" in world.log.read_bytes()
               or b"no longer holds the job" in world.log.read_bytes(),
               timeout=30, what="the woken run stopping")
