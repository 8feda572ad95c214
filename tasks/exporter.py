"""`python -m tasks metrics`: a Prometheus endpoint for the whole installation, read from Redis at scrape time.

What every process recorded with common.metrics (jobs by outcome, job and stage
durations, uploads and their sizes, chat API errors) plus the figures of
common.stats (queue depths, workers, running jobs, dead letters, disk, cache
lookups). One exporter serves them all, wherever the workers and bots run: it
needs only Redis (and the temp and storage folders for the disk figures).
Off unless a port is given (``--port`` or ``METRICS_PORT``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from common import metrics, routes, stats
from common.keys import Keys
from common.logs import setup_logging
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)


class RedisCollector(Collector):
    """Reads everything afresh on each scrape; ``ytmp3_up`` is 0 when Redis could not be read."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            recorded = metrics.read(self.client, self.keys)
            figures = stats.collect(client=self.client, keys=self.keys, settings=self.settings)
            ways = routes.RouteBook(self.client, self.keys, self.settings).report()
        except Exception as error:  # one failed scrape says so, and the next one tries again
            if isinstance(error, redis.RedisError):
                log.warning("scrape: Redis did not answer: %s", error)
            else:
                log.exception("scrape failed")
            yield GaugeMetricFamily("ytmp3_up", "Whether the exporter could read Redis.", value=0)
            return
        yield GaugeMetricFamily("ytmp3_up", "Whether the exporter could read Redis.", value=1)
        for name, values in recorded.items():
            yield recorded_family(name, values)
        yield from stats_families(figures)
        yield from route_families(ways)


def route_families(statuses: list[routes.RouteStatus]) -> Iterator[Metric]:
    """Each download route's last outcomes and rest (common/routes.py); labelled by id, never by proxy URL."""
    recent = GaugeMetricFamily("ytmp3_route_recent", f"A route's outcomes among its last {routes.RECENT} tries.",
                               labels=["route", "outcome"])
    resting = GaugeMetricFamily("ytmp3_route_resting", "Whether a route rests for some site after a failure there "
                                                       "(1) or not (0).", labels=["route"])
    stale = GaugeMetricFamily("ytmp3_route_cookies_stale", "Whether a route's cookie set is stale (a site called "
                                                           "it no longer valid): refresh it with /cookies.",
                              labels=["route"])
    for status in statuses:
        recent.add_metric([status.route.id, "ok"], status.ok)
        recent.add_metric([status.route.id, "failed"], status.failed)
        resting.add_metric([status.route.id], 1 if status.resting else 0)
        stale.add_metric([status.route.id], 1 if status.stale else 0)
    yield recent
    yield resting
    yield stale


def recorded_family(name: str, values: dict[metrics.Labels, float] | dict[metrics.Labels, metrics.Histogram]) -> Metric:
    """One family of common.metrics as Prometheus samples."""
    family = metrics.FAMILIES[name]
    base = name.removesuffix("_total") if family.kind == "counter" else name
    metric = Metric(base, family.help, family.kind)
    for labels in sorted(values):
        value = values[labels]
        if isinstance(value, metrics.Histogram):
            for bound, total in value.buckets:
                metric.add_sample(f"{name}_bucket", {**dict(labels), "le": floatToGoString(bound)}, total)
            metric.add_sample(f"{name}_count", dict(labels), value.count)
            metric.add_sample(f"{name}_sum", dict(labels), value.sum)
        else:
            metric.add_sample(f"{base}_total", dict(labels), value)
    return metric


def stats_families(figures: stats.Stats) -> Iterator[Metric]:
    """The monitor's figures as gauges (and the cache lookups as counters)."""
    per_queue = {
        "ytmp3_queue_depth": ("Messages waiting in a Celery queue (priority sub-queues included).", "waiting"),
        "ytmp3_queue_unacked": ("Messages of a queue taken by a worker and not finished.", "unacked"),
        "ytmp3_queue_workers": ("Workers online that consume a queue.", "workers"),
    }
    for name, (text, attribute) in per_queue.items():
        gauge = GaugeMetricFamily(name, text, labels=["queue"])
        for queue in figures.queues:
            gauge.add_metric([queue.name], getattr(queue, attribute))
        yield gauge
    yield GaugeMetricFamily("ytmp3_workers_online", "Workers whose presence in Redis is fresh.",
                            value=len(figures.workers))
    yield GaugeMetricFamily("ytmp3_jobs_running", "Jobs with a stage under way.", value=len(figures.running))
    yield GaugeMetricFamily("ytmp3_dead_letters", "Entries in the dead-letter list (jobs that spent their retries "
                                                  "or failed for good).", value=figures.dead)
    disk = GaugeMetricFamily("ytmp3_disk_bytes", "Bytes in the temp and storage folders.", labels=["folder"])
    disk.add_metric(["temp"], figures.temp_bytes)
    disk.add_metric(["storage"], figures.storage_bytes)
    yield disk
    lookups = Metric("ytmp3_cache_lookups", "Delivery cache lookups by platform and result (hit, miss).", "counter")
    entries = GaugeMetricFamily("ytmp3_cache_entries", "Videos in a platform's delivery cache.", labels=["platform"])
    for cache in figures.cache:
        lookups.add_sample("ytmp3_cache_lookups_total", {"platform": cache.platform, "result": "hit"}, cache.hits)
        lookups.add_sample("ytmp3_cache_lookups_total", {"platform": cache.platform, "result": "miss"}, cache.misses)
        entries.add_metric([cache.platform], cache.entries)
    yield lookups
    yield entries
    loop = GaugeMetricFamily("ytmp3_bot_loop_age_seconds", "Seconds since a bot's loop that follows the jobs last "
                                                           "turned (it turns at least once a second).",
                             labels=["platform"])
    event = GaugeMetricFamily("ytmp3_bot_event_age_seconds", "Seconds since a bot last handled a job event.",
                              labels=["platform"])
    block = GaugeMetricFamily("ytmp3_bot_loop_block_seconds", "The longest time a bot's event loop was kept from "
                                                               "running, over the few seconds before its last "
                                                               "liveness record.", labels=["platform"])
    for bot in figures.bots:
        block.add_metric([bot.platform], bot.block)
        loop.add_metric([bot.platform], bot.loop_age(figures.time))
        age = bot.event_age(figures.time)
        if age is not None:
            event.add_metric([bot.platform], age)
    yield loop
    yield event
    yield block


def registry(settings: Settings) -> CollectorRegistry:
    """A registry with only our collector (the exporter's own process figures would say nothing useful)."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    found = CollectorRegistry()
    found.register(RedisCollector(client, Keys(settings.key_prefix), settings))
    return found


def serve(port: int | None = None, host: str | None = None) -> int:
    """Serve /metrics until SIGINT or SIGTERM."""
    setup_logging("metrics")
    settings = get_settings()
    port = port or settings.metrics_port
    host = host or settings.metrics_host
    if not port:
        print("metrics are off: give --port, or set METRICS_PORT", file=sys.stderr)
        return 2
    try:
        server, thread = start_http_server(port, host, registry(settings))
    except OSError as error:
        print(f"cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("metrics stopped")
    return 0
