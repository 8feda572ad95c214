"""common.stats against the real Redis and real worker processes, and the workers' presence heartbeat."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import context, stats
from common.jobs import Job, State
from common.keys import Keys
from tasks import pipeline
from tasks.celery_app import QUEUES, app
from tasks.housekeeping import PRESENCE_TTL
from tasks.monitor import inspect_workers
from tests.conftest import deliver, origin, start_worker, stop_process, wait_job, wait_until
from tests.media import MediaServer


@pytest.fixture
def own_keys(test_env: dict[str, str]) -> Iterator[Keys]:
    """Keys under a prefix of this test only, for figures no other test touches."""
    keys = Keys(f"{test_env['KEY_PREFIX']}{uuid.uuid4().hex[:6]}:")
    yield keys
    client = context.redis_client()
    doomed = list(client.scan_iter(f"{keys.prefix}*"))
    if doomed:
        client.delete(*doomed)


@pytest.fixture
def idle_queue() -> Iterator[str]:
    """A queue name no worker consumes; its keys are removed afterwards."""
    name = f"statsq-{uuid.uuid4().hex[:6]}"
    yield name
    keys = context.keys()
    context.redis_client().delete(*(keys.broker_queue(name, step) for step in stats.PRIORITY_STEPS))


def test_queue_names_match_the_celery_app() -> None:
    assert stats.QUEUES == QUEUES


@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=2, max_size=60))
def test_percentiles_interpolate_between_ranks(values: list[float]) -> None:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert stats.percentile(values, 50) == pytest.approx(statistics.median(values), abs=1e-6)
    assert stats.percentile(values, 95) == pytest.approx(cuts[94], abs=1e-6)


def test_percentiles_of_known_and_degenerate_lists() -> None:
    ten = [float(n) for n in range(10, 0, -1)]
    assert stats.percentile(ten, 50) == pytest.approx(5.5)
    assert stats.percentile(ten, 95) == pytest.approx(9.55)
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([], 50) is None


def test_outcomes_count_the_last_hour_and_day_and_time_only_done_jobs(own_keys: Keys) -> None:
    client, now = context.redis_client(), time.time()
    finished = {
        "a ready 10.00": now - 60, "b ready 20.00": now - 120, "c failed 1.00": now - 600,
        "d cancelled 3.00": now - 2 * 3600, "e ready 40.00": now - 5 * 3600, "f delivered 30.00": now - 7200,
        "g ready 999.00": now - 2 * 86400,  # older than a day: not counted
    }
    client.zadd(own_keys.finished, finished)
    figures = stats.collect(client=client, keys=own_keys, now=now)
    assert figures.last_hour == stats.Outcomes(done=2, failed=1, cancelled=0)
    assert figures.last_day == stats.Outcomes(done=4, failed=1, cancelled=1)
    assert figures.median == pytest.approx(25.0)  # of 10, 20, 30, 40
    assert figures.p95 == pytest.approx(stats.percentile([10, 20, 30, 40], 95))
    text = stats.render_stats(figures)
    assert "Jobs last hour: 2 done, 1 failed, 0 cancelled" in text
    assert "Jobs last day: 4 done, 1 failed, 1 cancelled" in text
    assert "median 25.0 s" in text


def test_cache_entries_and_hit_rate_per_platform(own_keys: Keys) -> None:
    client = context.redis_client()
    for n in range(3):
        client.set(own_keys.cache("telegram", f"generic:video{n}", 192), json.dumps({"file_id": f"F{n}"}))
    client.set(own_keys.cache("discord", "youtube:abc", 128), "{}")
    client.hset(own_keys.cache_hits("telegram"), mapping={"hits": 3, "misses": 1})
    found = {c.platform: c for c in stats.cache_stats(client, own_keys)}
    assert found["telegram"].entries == 3 and found["telegram"].hit_rate == 0.75
    assert found["discord"].entries == 1 and found["discord"].hit_rate is None
    text = stats.render_stats(stats.collect(client=client, keys=own_keys))
    assert "Cache telegram: 3 entries, hit rate 75% (3 of 4)" in text
    assert "Cache discord: 1 entry, no lookups yet" in text


def test_disk_usage_sums_the_files_below(tmp_path: Path) -> None:
    (tmp_path / "job" / "deep").mkdir(parents=True)
    (tmp_path / "job" / "a.mp3").write_bytes(b"x" * 1000)
    (tmp_path / "job" / "deep" / "b.part").write_bytes(b"y" * 24)
    assert stats.disk_usage(tmp_path) == 1024
    assert stats.disk_usage(tmp_path / "missing") == 0


def test_queue_depth_and_position_count_priority_subqueues(idle_queue: str) -> None:
    """Messages in a queue nobody consumes: depth over the sub-queues, position in BRPOP order."""
    jobs = [f"job{n}{uuid.uuid4().hex[:6]}" for n in range(4)]
    for job_id in jobs[:3]:
        app.send_task("tasks.download", args=[job_id], queue=idle_queue)
    app.send_task("tasks.download", args=[jobs[3]], queue=idle_queue, priority=5)  # a later priority step
    keys = context.keys()
    assert context.redis_client().llen(keys.broker_queue(idle_queue, 3)) == 1
    assert stats.queue_depth(idle_queue) == 4
    assert [stats.queue_position(j, idle_queue) for j in jobs] == [0, 1, 2, 3]
    assert stats.queue_position("not-there", idle_queue) is None
    assert stats.workers_for(idle_queue) == 0


def test_presence_names_queues_concurrency_and_goes_at_shutdown(
    test_env: dict[str, str], tmp_path: Path, idle_queue: str
) -> None:
    proc = start_worker(test_env, tmp_path / "worker.log", name="presence", queues=idle_queue, concurrency=1)
    try:
        online = wait_until(lambda: [w for w in stats.workers() if idle_queue in w.queues], timeout=10,
                            what="the worker's presence")
        worker = online[0]
        assert worker.hostname.startswith("presence-") and worker.queues == [idle_queue]
        assert worker.concurrency == 1 and worker.pid == proc.pid
        assert 0 < context.redis_client().ttl(context.keys().worker(worker.hostname)) <= PRESENCE_TTL
        assert stats.workers_for(idle_queue) == 1
    finally:
        stop_process(proc)
    assert stats.workers_for(idle_queue) == 0  # deleted at shutdown, not left to expire
    assert worker.hostname not in [w.hostname for w in stats.workers()]


@pytest.mark.usefixtures("worker")
def test_stats_after_real_jobs_failures_and_dead_letters(media: MediaServer) -> None:
    before = stats.collect()
    good = [pipeline.submit(media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}", origin=origin())[0]
            for _ in range(2)]
    bad = pipeline.submit(media.url("/status/404/opus.webm", n=uuid.uuid4().hex), origin=origin())[0]
    assert [wait_job(j).state for j in [*good, bad]] == [State.READY, State.READY, State.FAILED]
    after = stats.collect()
    assert after.last_hour.done - before.last_hour.done >= 2
    assert after.last_day.failed - before.last_day.failed >= 1
    assert after.dead - before.dead >= 1
    assert after.median is not None and 0 < after.median < 60 and after.p95 >= after.median
    assert after.storage_bytes > 0  # the two MP3s wait for delivery
    session = [w for w in after.workers if w.hostname.startswith("test-")]
    assert session and set(session[0].queues) == set(QUEUES)
    download = next(q for q in after.queues if q.name == "download")
    assert download.workers >= 1 and download.active is None  # no inspector given
    for job_id in good:
        deliver(job_id)


@pytest.mark.usefixtures("worker")
def test_inspection_shows_what_each_worker_runs(media: MediaServer) -> None:
    job_id = pipeline.submit(media.url("/slow/10000/opus.webm", n=uuid.uuid4().hex), origin=origin())[0]
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING, timeout=20, what="downloading")
    figures = stats.collect(inspect_workers)
    assert figures.inspected
    runner = next(w for w in figures.workers if f"tasks.download {job_id}" in w.running)
    assert runner.answered and runner.hostname.startswith("test-")
    assert next(q for q in figures.queues if q.name == "download").active >= 1
    assert job_id in [j.id for j in figures.running]
    text = stats.render_stats(figures)
    assert f"running tasks.download {job_id}" in text
    assert f"  {job_id} downloading" in text
    assert wait_job(job_id).state == State.READY
    deliver(job_id)


def test_workers_without_a_queue_say_jobs_wait(idle_queue: str) -> None:
    figures = stats.Stats(
        time=time.time(), workers=[], running=[], last_hour=stats.Outcomes(), last_day=stats.Outcomes(),
        queues=[stats.QueueInfo("download", waiting=3, unacked=0, workers=0)], median=None, p95=None, dead=0,
        temp_bytes=0, storage_bytes=2048, cache=[],
    )
    text = stats.render_stats(figures)
    assert "Workers: 0 online" in text
    assert "download: 3 waiting, 0 in progress, no worker online: jobs wait safely" in text
    assert "Disk: temp 0 byte, storage 2 kB" in text  # Babel's units (common/i18n.py)
    assert "Cache: empty" in text


def test_stats_module_imports_neither_celery_nor_tasks() -> None:
    code = "import sys, common.stats; print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'tasks')))"
    result = subprocess.run(["python", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_worker_sweeps_old_files_on_its_interval(test_env: dict[str, str], tmp_path: Path, idle_queue: str) -> None:
    env = {**test_env, "TEMP_DIR": str(tmp_path / "tmp"), "STORAGE_DIR": str(tmp_path / "out"),
           "SWEEP_INTERVAL": "1", "FILE_TTL": "60"}
    old = time.time() - 3600
    gone, fresh = tmp_path / "tmp" / uuid.uuid4().hex[:12], tmp_path / "tmp" / uuid.uuid4().hex[:12]
    waiting = tmp_path / "out" / uuid.uuid4().hex[:12]
    not_a_job = tmp_path / "out" / "discord-cache"  # another part's folder: never swept
    for folder in (gone, waiting, fresh, not_a_job):
        folder.mkdir(parents=True)
    context.store().create(Job(id=waiting.name, url="http://example.org/", state=State.READY))  # not yet delivered
    for folder in (gone, waiting, not_a_job):
        os.utime(folder, (old, old))
    # The session worker shares this run's keys and holds the sweep lock for its own interval (600 s) once it swept.
    context.redis_client().delete(context.keys().sweep_lock)
    proc = start_worker(env, tmp_path / "worker.log", name="sweep", queues=idle_queue, concurrency=1)
    try:
        wait_until(lambda: not gone.exists(), timeout=15, what="the old folder swept")
    finally:
        stop_process(proc)
    assert waiting.exists() and fresh.exists() and not_a_job.exists()
