"""Counters and histograms that any process bumps, kept in Redis so that they add up across processes and machines.

One hash per metric family (``Keys.metric(name)``). A counter keeps one field per
label set: the labels sorted and URL-encoded, e.g. ``error=not_found&outcome=failed``.
A histogram keeps, per label set, one field per bucket that an observation fell
into (``<labels>|le=<bound>``, not cumulative) and one for the sum
(``<labels>|sum``); ``read`` turns them into Prometheus' cumulative buckets at
scrape time (tasks/exporter.py). One pipeline per call; ``count_in`` and
``observe_in`` queue the same commands on a caller's own transaction instead
(a job's end is counted exactly once, with its state change).

Recording never raises into the caller and never makes it wait long: a metric
is not worth a failed job or a missing chat reply. Writes go through a client of
their own with short timeouts and no retries, a failure is logged at debug level
and dropped, and a call made on an event loop's thread (the chat bots) hands the
write to a background thread so that the loop never waits for Redis (at most
QUEUE_CAP writes wait for it; while Redis is away the rest are dropped).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from common.keys import Keys
from common.settings import get_settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
SECONDS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
QUEUE_CAP = 1000  # writes waiting for the background thread; beyond it they are dropped
BYTES = (0.25 * MB, 1 * MB, 5 * MB, 10 * MB, 25 * MB, 50 * MB, 100 * MB, 500 * MB, 2000 * MB)


@dataclass(frozen=True)
class Family:
    kind: Literal["counter", "histogram"]
    help: str
    buckets: tuple[float, ...] = ()


FAMILIES: dict[str, Family] = {
    "ytmp3_jobs_total": Family(
        "counter", "Jobs that ended, by outcome (ready, failed, cancelled) and error code (failed only)."),
    "ytmp3_job_seconds": Family(
        "histogram", "Seconds from a job's submission to its end, by outcome.", SECONDS),
    "ytmp3_stage_seconds": Family(
        "histogram", "Seconds a stage's work took, by stage (downloading, converting, cleaning) and outcome "
                     "(ok, cancelled, error).", SECONDS),
    "ytmp3_upload_bytes": Family(
        "histogram", "Sizes of the MP3 files uploaded into chats, by platform (its _count is the number of uploads).",
        BYTES),
    "ytmp3_route_tries_total": Family(
        "counter", "Downloads tried through each route (proxy+cookies, common/routes.py), by outcome (ok, or the "
                   "error code that sent the download to the next route)."),
    "ytmp3_api_errors_total": Family(
        "counter", "Errors from the Telegram Bot API or the Discord API, by platform, error class and HTTP status."),
    "ytmp3_loop_restarts_total": Family(
        "counter", "A bot's background loop (or one chat's task) that failed and was started again, by platform, "
                   "loop and error class."),
}

Labels = tuple[tuple[str, str], ...]


# -- recording ---------------------------------------------------------------------------------------------------


def count(name: str, amount: float = 1, **labels: object) -> None:
    """Add `amount` to a counter of the family `name` (one of FAMILIES); never raises."""
    increments = _counter(name, amount, labels)
    if increments:
        _record(name, increments)


def observe(name: str, value: float, **labels: object) -> None:
    """Put one observation into a histogram of the family `name` (one of FAMILIES); never raises."""
    increments = _histogram(name, value, labels)
    if increments:
        _record(name, increments)


def count_in(pipe: Pipeline, keys: Keys, name: str, amount: float = 1, **labels: object) -> None:
    """Like count, queued on the caller's pipeline: it lands with (and only with) the caller's transaction."""
    _queue(pipe, keys.metric(name), _counter(name, amount, labels) or {})


def observe_in(pipe: Pipeline, keys: Keys, name: str, value: float, **labels: object) -> None:
    """Like observe, queued on the caller's pipeline."""
    _queue(pipe, keys.metric(name), _histogram(name, value, labels) or {})


def uploaded(platform: str, path: str | Path) -> None:
    """An MP3 went up into a chat: one upload and its bytes; never raises."""
    try:
        size = os.stat(path).st_size
    except (OSError, TypeError, ValueError) as error:
        log.debug("upload size of %s unknown: %s", path, error)
        return
    observe("ytmp3_upload_bytes", size, platform=platform)


def api_error(platform: str, error: BaseException) -> None:
    """A chat platform's API answered with an error (its class and, where it has one, its HTTP status)."""
    status = getattr(error, "status", None)
    count("ytmp3_api_errors_total", platform=platform, error=type(error).__name__,
          status=str(status) if isinstance(status, int) else "")


def flush(timeout: float = 5.0) -> None:
    """Wait until the writes handed to the background thread are done (tests, and before exiting)."""
    done = threading.Event()
    if _background().put(done.set, block=True, timeout=timeout):
        done.wait(timeout)


def _counter(name: str, amount: float, labels: Mapping[str, object]) -> dict[str, float] | None:
    if not _known(name, "counter") or not isinstance(amount, int | float):
        return None
    return {_field(labels): amount}


def _histogram(name: str, value: float, labels: Mapping[str, object]) -> dict[str, float] | None:
    """The bucket the value falls into and the sum (the count is the buckets' total)."""
    if not _known(name, "histogram") or not isinstance(value, int | float) or value != value:  # NaN
        return None
    base = _field(labels)
    bound = next((b for b in FAMILIES[name].buckets if value <= b), None)
    le = "+Inf" if bound is None else repr(float(bound))
    return {f"{base}|le={le}": 1, f"{base}|sum": float(value)}


def _known(name: str, kind: str) -> bool:
    family = FAMILIES.get(name)
    if family is None or family.kind != kind:
        log.warning("metric %s is not a known %s; not recorded", name, kind)
        return False
    return True


def _field(labels: Mapping[str, object]) -> str:
    return urlencode(sorted((key, str(value)) for key, value in labels.items()))


def _record(name: str, increments: dict[str, float]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no event loop on this thread: write now
        _write(name, increments)
        return
    _background().put(partial(_write, name, increments))


def _write(name: str, increments: dict[str, float]) -> None:
    try:
        client, keys = _sink()
        pipe = client.pipeline(transaction=False)
        _queue(pipe, keys.metric(name), increments)
        pipe.execute()
    except Exception as error:  # a metric is never worth a failed job or a missing reply
        log.debug("metric %s not recorded: %s", name, error)


def _queue(pipe: Pipeline, key: str, increments: dict[str, float]) -> None:
    for field_name, amount in increments.items():
        if isinstance(amount, int):
            pipe.hincrby(key, field_name, amount)
        else:
            pipe.hincrbyfloat(key, field_name, amount)


def _sink() -> tuple[redis.Redis, Keys]:
    settings = get_settings()
    return _client(settings.redis_url), Keys(settings.key_prefix)


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    """A client of the metrics' own: short timeouts, no retries (a lost increment beats a stalled caller)."""
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))


class _Writer:
    """One thread that writes what the event loop's thread hands it; at most QUEUE_CAP writes wait.

    While Redis is away each write waits out its timeout, so the queue fills: what comes then is
    dropped (a metric is never worth a bot's memory), and the drops are logged now and then.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[Callable[[], None]] = queue.Queue(QUEUE_CAP)
        self.dropped = 0
        threading.Thread(target=self._run, name="metrics", daemon=True).start()

    def put(self, write: Callable[[], None], block: bool = False, timeout: float | None = None) -> bool:
        try:
            self.queue.put(write, block=block, timeout=timeout)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("metrics: %d writes dropped (Redis slow or away)", self.dropped)
            return False
        return True

    def _run(self) -> None:
        while True:
            self.queue.get()()


_writer: _Writer | None = None
_writer_lock = threading.Lock()


def _background() -> _Writer:
    """One writer thread per process (made again in a forked child, where the parent's thread does not run)."""
    global _writer
    with _writer_lock:
        if _writer is None or _writer.pid != os.getpid():
            _writer = _Writer()
        return _writer


# -- reading (the exporter) --------------------------------------------------------------------------------------


@dataclass
class Histogram:
    buckets: list[tuple[float, float]] = field(default_factory=list)
    """(upper bound, observations at or below it), cumulative, the last bound +Inf."""
    sum: float = 0.0

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


def read(client: redis.Redis, keys: Keys) -> dict[str, dict[Labels, float] | dict[Labels, Histogram]]:
    """Every family's values by label set, read in one round trip: a number per counter, a Histogram per histogram."""
    pipe = client.pipeline(transaction=False)
    for name in FAMILIES:
        pipe.hgetall(keys.metric(name))
    found: dict[str, dict[Labels, float] | dict[Labels, Histogram]] = {}
    for (name, family), raw in zip(FAMILIES.items(), pipe.execute(), strict=True):
        fields = {k.decode(): float(v) for k, v in raw.items()}
        found[name] = _histograms(fields, family.buckets) if family.kind == "histogram" else {
            _labels(f): value for f, value in fields.items()}
    return found


def _labels(encoded: str) -> Labels:
    return tuple(parse_qsl(encoded, keep_blank_values=True))


def _histograms(fields: dict[str, float], bounds: tuple[float, ...]) -> dict[Labels, Histogram]:
    """Cumulative buckets from the per-bucket counts (a count under a bound no longer configured goes to the next)."""
    per_bucket: dict[Labels, dict[float, float]] = {}
    sums: dict[Labels, float] = {}
    for name, value in fields.items():
        encoded, _, suffix = name.rpartition("|")
        labels = _labels(encoded)
        if suffix == "sum":
            sums[labels] = value
        elif suffix.startswith("le="):
            counts = per_bucket.setdefault(labels, {})
            bound = float(suffix[3:])
            counts[bound] = counts.get(bound, 0.0) + value
    found = {}
    for labels in per_bucket.keys() | sums.keys():
        counts = per_bucket.get(labels, {})
        cumulative = [(b, sum(n for at, n in counts.items() if at <= b)) for b in bounds]
        cumulative.append((float("inf"), sum(counts.values())))
        found[labels] = Histogram(cumulative, sums.get(labels, 0.0))
    return found
