"""Metrics: counters in Redis from real jobs on the session worker, read by the real exporter over HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bots import up
from common import context, metrics, stats
from common.cache import DeliveryCache
from common.errors import Code
from common.jobs import State
from common.keys import Keys
from common.settings import Settings
from tasks import exporter, pipeline
from tests.conftest import ROOT, stop_process, wait_job, wait_until
from tests.media import MediaServer

Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(value for found, have, value in samples if found == name and labels.items() <= have.items())


def names(samples: Samples) -> set[str]:
    return {name for name, _, _ in samples}


def closed_port() -> int:
    return up.free_port()  # bound and released: nothing listens there


@pytest.fixture(scope="module")
def exporter_port(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`python -m tasks metrics` as a subprocess with this run's environment, on a free port."""
    port = up.free_port()
    log = tmp_path_factory.mktemp("metrics") / "exporter.log"
    with log.open("ab") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "tasks", "metrics", "--port", str(port)], cwd=ROOT,
                                env={**os.environ, **test_env}, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def answers() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            scrape(port)
        except OSError:
            return False
        return True

    wait_until(answers, timeout=20, what=lambda: f"the exporter on port {port}: {log.read_text()}")
    yield port
    stop_process(proc)
    assert proc.returncode == 0, log.read_text()


@pytest.mark.usefixtures("worker")
def test_real_jobs_show_up_in_the_exporter(media: MediaServer, exporter_port: int, tmp_path: Path) -> None:
    before = scrape(exporter_port)
    origin = {"id": f"test:{uuid.uuid4().hex[:8]}", "platform": "test"}
    good, _ = pipeline.submit(media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}", origin=origin)
    missing, _ = pipeline.submit(media.url("/status/404/opus.webm", n=uuid.uuid4().hex), origin=origin)
    assert wait_job(good).state == State.READY
    assert wait_job(missing).state == State.FAILED
    # What the bots record: a cache lookup, an upload, an API error (labels of this test only).
    platform = f"p{uuid.uuid4().hex[:6]}"
    DeliveryCache(context.redis_client(), context.keys(), platform, 60).lookup(media.url("/x"), 192)
    mp3 = tmp_path / "a.mp3"
    mp3.write_bytes(b"x" * 3_000_000)
    metrics.uploaded(platform, mp3)
    metrics.api_error(platform, type("HTTPException", (Exception,), {"status": 429})())
    after = scrape(exporter_port)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert total(after, "ytmp3_up") == 1
    assert grew("ytmp3_jobs_total", outcome="ready") >= 1
    assert grew("ytmp3_jobs_total", outcome="failed", error=Code.NOT_FOUND) >= 1
    assert grew("ytmp3_job_seconds_count", outcome="ready") >= 1
    assert grew("ytmp3_job_seconds_count", outcome="failed") >= 1
    for stage in (State.DOWNLOADING, State.CONVERTING, State.CLEANING):
        assert grew("ytmp3_stage_seconds_count", stage=stage, outcome="ok") >= 1, stage
        assert grew("ytmp3_stage_seconds_bucket", stage=stage, outcome="ok", le="+Inf") >= 1, stage
    assert grew("ytmp3_stage_seconds_count", stage=State.DOWNLOADING, outcome="error") >= 1
    assert grew("ytmp3_stage_seconds_sum", stage=State.DOWNLOADING, outcome="ok") > 0
    for queue in stats.QUEUES:
        assert ("ytmp3_queue_depth", {"queue": queue}) in [(n, labels) for n, labels, _ in after], queue
        assert total(after, "ytmp3_queue_workers", queue=queue) >= 1, queue
    assert total(after, "ytmp3_workers_online") >= 1
    assert 1 <= total(after, "ytmp3_dead_letters") <= context.redis_client().llen(context.keys().dead)
    assert total(after, "ytmp3_cache_lookups_total", platform=platform, result="miss") == 1
    assert total(after, "ytmp3_cache_lookups_total", platform=platform, result="hit") == 0
    assert total(after, "ytmp3_upload_bytes_count", platform=platform) == 1
    assert total(after, "ytmp3_upload_bytes_sum", platform=platform) == 3_000_000
    assert total(after, "ytmp3_upload_bytes_bucket", platform=platform, le="5.24288e+06") == 1
    assert total(after, "ytmp3_upload_bytes_bucket", platform=platform, le="1.048576e+06") == 0
    assert total(after, "ytmp3_api_errors_total", platform=platform, error="HTTPException", status="429") == 1
    assert {"ytmp3_disk_bytes", "ytmp3_jobs_running", "ytmp3_queue_unacked", "ytmp3_cache_entries"} <= names(after)


def test_histogram_buckets_are_cumulative(test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys(f"{test_env['KEY_PREFIX']}{uuid.uuid4().hex[:6]}:")  # this test's own: exact figures
    client = context.redis_client()
    monkeypatch.setattr(metrics, "_sink", lambda: (client, keys))
    try:
        for seconds in (0.2, 0.5, 3.0, 7200.0):
            metrics.observe("ytmp3_stage_seconds", seconds, stage="downloading", outcome="ok")
        metrics.count("ytmp3_jobs_total", outcome="ready", error="")
        metrics.count("ytmp3_jobs_total", 2, outcome="ready", error="")
        metrics.count("ytmp3_jobs_total", outcome="failed", error="not_found")
        found = metrics.read(client, keys)
    finally:
        client.delete(*(keys.metric(name) for name in metrics.FAMILIES))
    histogram = found["ytmp3_stage_seconds"][(("outcome", "ok"), ("stage", "downloading"))]
    cumulative = dict(histogram.buckets)
    assert cumulative[0.5] == 2 and cumulative[2.5] == 2 and cumulative[5.0] == 3 and cumulative[3600.0] == 3
    assert cumulative[float("inf")] == histogram.count == 4
    assert list(cumulative) == [*metrics.SECONDS, float("inf")]
    assert histogram.sum == pytest.approx(7203.7)
    assert found["ytmp3_jobs_total"] == {(("error", ""), ("outcome", "ready")): 3,
                                         (("error", "not_found"), ("outcome", "failed")): 1}
    assert found["ytmp3_upload_bytes"] == {}


def test_recording_never_raises_when_redis_is_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dead = metrics._client(f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setattr(metrics, "_sink", lambda: (dead, Keys("nowhere:")))
    mp3 = tmp_path / "a.mp3"
    mp3.write_bytes(b"x")
    started = time.monotonic()
    metrics.count("ytmp3_jobs_total", outcome="ready")
    metrics.observe("ytmp3_stage_seconds", 1.5, stage="downloading", outcome="ok")
    metrics.uploaded("telegram", mp3)
    metrics.uploaded("telegram", tmp_path / "gone.mp3")
    metrics.api_error("discord", RuntimeError("boom"))
    metrics.count("no_such_metric")
    metrics.observe("ytmp3_jobs_total", 1.0)  # a counter is no histogram: dropped, not raised
    metrics.observe("ytmp3_stage_seconds", "soon")  # type: ignore[arg-type]
    pipe = dead.pipeline()
    metrics.count_in(pipe, Keys("nowhere:"), "no_such_metric")
    metrics.observe_in(pipe, Keys("nowhere:"), "ytmp3_job_seconds", float("nan"), outcome="ready")
    assert len(pipe) == 0  # nothing queued on the caller's transaction

    async def on_a_loop() -> None:  # the bots: the write goes to a background thread
        metrics.count("ytmp3_api_errors_total", platform="telegram", error="RetryAfter", status="")
        metrics.flush()

    asyncio.run(on_a_loop())
    assert time.monotonic() - started < 3


def test_recording_on_an_event_loop_does_not_wait_and_lands(test_env: dict[str, str]) -> None:
    platform = f"p{uuid.uuid4().hex[:6]}"

    async def on_a_loop() -> None:
        for _ in range(3):
            metrics.api_error(platform, TimeoutError())
        metrics.flush()

    asyncio.run(on_a_loop())
    counters = metrics.read(context.redis_client(), context.keys())["ytmp3_api_errors_total"]
    assert counters[(("error", "TimeoutError"), ("platform", platform), ("status", ""))] == 3


def test_exporter_says_down_when_redis_is(test_env: dict[str, str]) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    families = list(exporter.RedisCollector(client, context.keys(), Settings()).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("ytmp3_up", [0.0])]


def test_queue_figures_become_gauges() -> None:
    figures = stats.Stats(
        time=0.0, workers=[], queues=[stats.QueueInfo("download", 7, 2, 1), stats.QueueInfo("conversion", 0, 0, 0)],
        running=[], last_hour=stats.Outcomes(), last_day=stats.Outcomes(), median=None, p95=None, dead=4,
        temp_bytes=10, storage_bytes=20, cache=[stats.CacheInfo("telegram", 3, 5, 6)])
    samples = [(s.name, s.labels, s.value) for f in exporter.stats_families(figures) for s in f.samples]
    assert total(samples, "ytmp3_queue_depth", queue="download") == 7
    assert total(samples, "ytmp3_queue_unacked", queue="download") == 2
    assert total(samples, "ytmp3_queue_workers", queue="download") == 1
    assert total(samples, "ytmp3_dead_letters") == 4
    assert total(samples, "ytmp3_disk_bytes", folder="storage") == 20
    assert total(samples, "ytmp3_cache_lookups_total", platform="telegram", result="hit") == 5
    assert total(samples, "ytmp3_cache_entries", platform="telegram") == 3


def test_exporter_is_off_without_a_port(test_env: dict[str, str]) -> None:
    env = {k: v for k, v in {**os.environ, **test_env}.items() if k != "METRICS_PORT"}
    result = subprocess.run([sys.executable, "-m", "tasks", "metrics"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "METRICS_PORT" in result.stderr


def test_up_starts_the_exporter_only_with_a_port() -> None:
    assert "metrics" not in [p.name for p in up.parts(Settings())]
    found = {p.name: p.argv for p in up.parts(Settings(metrics_port=9808, metrics_host="0.0.0.0"))}
    assert found["metrics"][1:] == ["-m", "tasks", "metrics", "--port", "9808", "--host", "0.0.0.0"]


def test_bot_liveness_becomes_gauges() -> None:
    figures = stats.Stats(
        time=1000.0, workers=[], queues=[], running=[], last_hour=stats.Outcomes(), last_day=stats.Outcomes(),
        median=None, p95=None, dead=0, temp_bytes=0, storage_bytes=0, cache=[],
        bots=[stats.BotInfo("telegram", started=900.0, seen=999.0, turned=999.5, event=990.0),
              stats.BotInfo("discord", started=995.0)])
    samples = [(s.name, s.labels, s.value) for f in exporter.stats_families(figures) for s in f.samples]
    assert total(samples, "ytmp3_bot_loop_age_seconds", platform="telegram") == 0.5
    assert total(samples, "ytmp3_bot_event_age_seconds", platform="telegram") == 10.0
    assert total(samples, "ytmp3_bot_loop_age_seconds", platform="discord") == 5.0  # not turned yet: since start
    assert not [s for s in samples if s[0] == "ytmp3_bot_event_age_seconds" and s[1]["platform"] == "discord"]


def test_the_write_queue_is_capped_while_redis_hangs(monkeypatch: pytest.MonkeyPatch, listener: socket.socket) -> None:
    """Redis accepts connections and never answers: every write waits its timeout, the rest are dropped."""
    hanging = redis.Redis(host="127.0.0.1", port=listener.getsockname()[1], socket_connect_timeout=1,
                          socket_timeout=1)
    monkeypatch.setattr(metrics, "_sink", lambda: (hanging, Keys("nowhere:")))
    monkeypatch.setattr(metrics, "QUEUE_CAP", 10)
    monkeypatch.setattr(metrics, "_writer", None)

    async def on_a_loop() -> None:
        for _ in range(200):
            metrics.api_error("telegram", TimeoutError())

    asyncio.run(on_a_loop())
    writer = metrics._background()
    assert writer.queue.qsize() <= 10 and writer.dropped >= 189
