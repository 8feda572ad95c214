"""Operational figures for the admin chat commands and the terminal monitor, and their plain-text rendering.

Everything comes from Redis: the workers' presence keys (written every few seconds
by each worker, see tasks/housekeeping.py), Celery's queue lists and its
``unacked`` hash, and our own bookkeeping (``finished``, ``dead``, ``running``,
cache counters). A caller that can reach the Celery app passes an ``inspector``
(``tasks.monitor.inspect_workers``) to add what each worker runs and holds;
this module imports neither Celery nor ``tasks``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import redis

from common import context, i18n
from common.i18n import Lang
from common.jobs import JobStore, State
from common.keys import QUEUES, Keys
from common.redisio import Batch, Plan, command, run, scored
from common.settings import Settings, get_settings

log = logging.getLogger(__name__)

PLATFORMS = ("telegram", "discord")
# kombu's priority sub-queues, in the order a worker takes from them.
PRIORITY_STEPS = range(10)
HOUR = 3600.0
DAY = 86400.0


@dataclass
class Inspection:
    """What Celery's remote inspection answered, per worker hostname."""

    active: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reserved: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


# Asks the named workers (active, reserved, stats); given by whoever can reach the Celery app.
Inspector = Callable[[list[str]], Inspection]


@dataclass
class WorkerInfo:
    hostname: str
    queues: list[str]
    concurrency: int
    pid: int
    started: float
    seen: float
    answered: bool | None = None
    """Whether it answered the inspection; None when there was none."""
    running: list[str] = field(default_factory=list)
    """From the inspection: 'task job_id' for each task it runs."""
    reserved: int | None = None

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo:
        data = json.loads(raw)
        return cls(hostname=data["hostname"], queues=list(data.get("queues", [])),
                   concurrency=int(data.get("concurrency", 0)), pid=int(data.get("pid", 0)),
                   started=float(data.get("started", 0.0)), seen=float(data.get("time", 0.0)))


@dataclass
class BotInfo:
    """A running bot's liveness, as it writes it every few seconds (times are time.time())."""

    platform: str
    pid: int = 0
    started: float = 0.0
    seen: float = 0.0
    """When the bot wrote this."""
    turned: float = 0.0
    """When its loop that follows the jobs last turned (it turns at least once a second)."""
    event: float = 0.0
    """When it last handled a job event (0: none since it started)."""
    owed: int = 0
    """Requests it has taken and not yet answered."""
    block: float = 0.0
    """The longest time its event loop was kept from running (seconds) since its previous record."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> BotInfo:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def loop_age(self, now: float) -> float:
        return max(0.0, now - (self.turned or self.started))

    def event_age(self, now: float) -> float | None:
        return max(0.0, now - self.event) if self.event else None


@dataclass
class QueueInfo:
    name: str
    waiting: int
    """Messages in the queue (priority sub-queues included), not yet taken by a worker."""
    unacked: int
    """Taken by a worker and not finished (reserved + active), from the broker's own bookkeeping."""
    workers: int
    """Workers online that consume the queue."""
    reserved: int | None = None
    active: int | None = None


@dataclass
class Outcomes:
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    def add(self, state: str) -> None:
        if state in (State.READY, State.DELIVERED):
            self.done += 1
        elif state == State.FAILED:
            self.failed += 1
        elif state == State.CANCELLED:
            self.cancelled += 1


@dataclass
class RunningJob:
    id: str
    state: str
    percent: float
    title: str
    seen: float


@dataclass
class CacheInfo:
    platform: str
    entries: int
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass
class Stats:
    time: float
    workers: list[WorkerInfo]
    queues: list[QueueInfo]
    running: list[RunningJob]
    last_hour: Outcomes
    last_day: Outcomes
    median: float | None
    """Seconds from submission to ready of the jobs done in the last day."""
    p95: float | None
    dead: int
    temp_bytes: int
    storage_bytes: int
    cache: list[CacheInfo]
    inspected: bool = False
    bots: list[BotInfo] = field(default_factory=list)


def collect(
    inspector: Inspector | None = None,
    *,
    client: redis.Redis | None = None,
    keys: Keys | None = None,
    settings: Settings | None = None,
    now: float | None = None,
) -> Stats:
    """Every figure of the admin /stats and the monitor, read once."""
    client = client or context.redis_client()
    keys = keys or context.keys()
    settings = settings or get_settings()
    now = now or time.time()
    online = workers(client, keys)
    unacked = unacked_by_queue(client, keys)
    queues = [QueueInfo(name, queue_depth(name, client, keys), unacked[name], serving(online, name))
              for name in QUEUES]
    hour, day, seconds = outcomes(client, keys, now)
    stats = Stats(
        time=now, workers=online, queues=queues, running=running_jobs(client, keys, settings),
        last_hour=hour, last_day=day, median=percentile(seconds, 50), p95=percentile(seconds, 95),
        dead=client.llen(keys.dead), temp_bytes=disk_usage(settings.temp_dir),
        storage_bytes=disk_usage(settings.storage_dir), cache=cache_stats(client, keys), bots=bots(client, keys),
    )
    if inspector is not None and online:
        try:
            apply_inspection(stats, inspector([w.hostname for w in online]))
        except Exception:  # the figures from Redis stand on their own; the inspection only adds detail
            log.warning("worker inspection failed", exc_info=True)
    return stats


def workers(client: redis.Redis | None = None, keys: Keys | None = None) -> list[WorkerInfo]:
    """Workers whose presence is fresh, by hostname."""
    return run(client or context.redis_client(), online(keys or context.keys()))


def online(keys: Keys) -> Plan[list[WorkerInfo]]:
    """Workers whose presence is fresh, by hostname."""
    [names] = yield command("zrange", keys.workers, 0, -1)
    if not names:
        return []
    [raws] = yield command("mget", [keys.worker(name.decode()) for name in names])
    found = []
    for raw in raws:
        if raw is None:
            continue
        try:
            found.append(WorkerInfo.from_json(raw))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable worker presence: %r", raw)
    return sorted(found, key=lambda w: w.hostname)


def bots(client: redis.Redis | None = None, keys: Keys | None = None) -> list[BotInfo]:
    """The bots running now (a liveness record expires soon after its bot stops writing it)."""
    client = client or context.redis_client()
    keys = keys or context.keys()
    found = []
    for raw in client.mget([keys.bot(platform) for platform in PLATFORMS]):
        if raw is None:
            continue
        try:
            found.append(BotInfo.from_json(raw))
        except (ValueError, TypeError):
            log.warning("unreadable bot liveness: %r", raw)
    return found


def alive(keys: Keys, bot: BotInfo, ttl: int) -> Plan[None]:
    """A bot says it is alive (the record expires after `ttl` seconds unless written again)."""
    yield command("set", keys.bot(bot.platform), bot.to_json(), ex=ttl)


def workers_for(queue: str, client: redis.Redis | None = None, keys: Keys | None = None) -> int:
    """How many workers online consume `queue` (0: its jobs wait until one comes)."""
    return serving(workers(client, keys), queue)


def serving(online: Iterable[WorkerInfo], queue: str) -> int:
    return sum(queue in w.queues for w in online)


def queue_depth(queue: str, client: redis.Redis | None = None, keys: Keys | None = None) -> int:
    """Messages waiting in a Celery queue, its priority sub-queues included."""
    return run(client or context.redis_client(), depth(keys or context.keys(), queue))


def depth(keys: Keys, queue: str) -> Plan[int]:
    """Messages waiting in a Celery queue, its priority sub-queues included."""
    def queue_lengths(pipe: Any) -> None:
        for step in PRIORITY_STEPS:
            pipe.llen(keys.broker_queue(queue, step))

    return sum((yield Batch(queue_lengths, atomic=False)))


def queue_position(job_id: str, queue: str = "download", client: redis.Redis | None = None,
                   keys: Keys | None = None) -> int | None:
    """How many messages wait ahead of the job's message in `queue`; None when it is not waiting there."""
    return run(client or context.redis_client(), positions(keys or context.keys(), queue)).get(job_id)


def positions(keys: Keys, queue: str = "download") -> Plan[dict[str, int]]:
    """Job id -> how many messages wait ahead of its message in `queue`, for every job waiting there.

    kombu LPUSHes and a worker BRPOPs the sub-queues in step order, so the next
    message is the right end of the first non-empty sub-queue.
    """
    def queue_contents(pipe: Any) -> None:
        for step in PRIORITY_STEPS:
            pipe.lrange(keys.broker_queue(queue, step), 0, -1)

    found: dict[str, int] = {}
    ahead = 0
    for messages in (yield Batch(queue_contents)):
        for raw in reversed(messages):
            job_id = message_job_id(raw)
            if job_id is not None:
                found.setdefault(job_id, ahead)
            ahead += 1
    return found


def message_job_id(raw: bytes | str) -> str | None:
    """The job id (first task argument) of a Celery message as kombu stores it in Redis."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def unacked_by_queue(client: redis.Redis, keys: Keys) -> Counter[str]:
    """Messages taken by workers and not acked yet, per queue (routing key)."""
    counts: Counter[str] = Counter()
    for raw in client.hvals(keys.broker_unacked):
        try:
            counts[json.loads(raw)[2]] += 1
        except (ValueError, IndexError, TypeError):
            continue
    return counts


def outcomes(client: redis.Redis, keys: Keys, now: float) -> tuple[Outcomes, Outcomes, list[float]]:
    """Jobs ended in the last hour and day, and the run times of those done in the last day."""
    hour, day, seconds = Outcomes(), Outcomes(), []
    for member, score in scored(client.zrangebyscore(keys.finished, now - DAY, "+inf", withscores=True)):
        try:
            _job_id, state, took = member.split(" ")
            took_seconds = float(took)
        except ValueError:
            continue
        day.add(state)
        if score >= now - HOUR:
            hour.add(state)
        if state in (State.READY, State.DELIVERED):
            seconds.append(took_seconds)
    return hour, day, seconds


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile, interpolated linearly between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def running_jobs(client: redis.Redis, keys: Keys, settings: Settings) -> list[RunningJob]:
    """Jobs with a stage under way, from their heartbeats and records."""
    store = JobStore(client, keys, settings.job_ttl)
    found = []
    for member, seen in scored(client.zrange(keys.running, 0, -1, withscores=True)):
        job = store.get(member)
        if job is not None and not job.state.finished:
            found.append(RunningJob(job.id, str(job.state), job.percent, job.title, seen))
    return found


def disk_usage(root: Path) -> int:
    """Bytes in the files under root (0 when it does not exist)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while we walked
                continue
    return total


def cache_stats(client: redis.Redis, keys: Keys) -> list[CacheInfo]:
    """Entries and hit/miss counters of each platform's cache."""
    entries: Counter[str] = Counter()
    for key in client.scan_iter(match=keys.cache_pattern(), count=1000):
        entries[keys.cache_platform(key.decode())] += 1
    counters = {}
    for key in client.scan_iter(match=keys.cache_hits_pattern, count=100):
        counters[keys.cache_hits_platform(key.decode())] = client.hgetall(key)
    found = []
    for platform in sorted(set(entries) | set(counters)):
        numbers = counters.get(platform, {})
        found.append(CacheInfo(platform, entries[platform], int(numbers.get(b"hits", 0)),
                               int(numbers.get(b"misses", 0))))
    return found


def apply_inspection(stats: Stats, inspection: Inspection) -> None:
    """Add what each worker runs and holds, and per queue reserved and active, from an inspection."""
    stats.inspected = True
    answered = set(inspection.stats) | set(inspection.active) | set(inspection.reserved)
    for worker in stats.workers:
        worker.answered = worker.hostname in answered
        worker.running = [_describe(task) for task in inspection.active.get(worker.hostname, [])]
        worker.reserved = len(inspection.reserved.get(worker.hostname, []))
    active = Counter(_queue_of(t) for tasks in inspection.active.values() for t in tasks)
    reserved = Counter(_queue_of(t) for tasks in inspection.reserved.values() for t in tasks)
    for queue in stats.queues:
        queue.active, queue.reserved = active[queue.name], reserved[queue.name]


def _describe(task: dict[str, Any]) -> str:
    args = task.get("args") or []
    job = f" {args[0]}" if isinstance(args, list | tuple) and args else ""
    return f"{task.get('name', '?')}{job}"


def _queue_of(task: dict[str, Any]) -> str:
    return (task.get("delivery_info") or {}).get("routing_key") or "?"


# -- rendering ---------------------------------------------------------------------------------------------------


def render_stats(stats: Stats, lang: Lang | None = None) -> str:
    """The figures as plain text (no markup): in English for a terminal, in an admin's language for their chat.
    Queue names, job ids, states and hostnames are identifiers and stay as they are."""
    lang = lang or i18n.get(i18n.SOURCE)
    hour, day = stats.last_hour, stats.last_day
    lines = _render_workers(stats, lang) + _render_bots(stats, lang) + _render_queues(stats, lang) + \
        _render_running(stats, lang) + [
            lang.gettext("Jobs last hour: %(done)s done, %(failed)s failed, %(cancelled)s cancelled",
                         done=hour.done, failed=hour.failed, cancelled=hour.cancelled),
            lang.gettext("Jobs last day: %(done)s done, %(failed)s failed, %(cancelled)s cancelled",
                         done=day.done, failed=day.failed, cancelled=day.cancelled),
            lang.gettext("Job time (last day): median %(median)s, 95th percentile %(p95)s",
                         median=human_seconds(stats.median, lang), p95=human_seconds(stats.p95, lang)),
            lang.gettext("Dead letters: %(n)s", n=stats.dead),
            lang.gettext("Disk: temp %(temp)s, storage %(storage)s", temp=lang.size(stats.temp_bytes),
                         storage=lang.size(stats.storage_bytes)),
            *_render_cache(stats, lang),
        ]
    return "\n".join(lines)


def _render_workers(stats: Stats, lang: Lang) -> list[str]:
    lines = [lang.gettext("Workers: %(n)s online", n=len(stats.workers))]
    for w in stats.workers:
        line = "  " + lang.gettext("%(host)s: %(queues)s, concurrency %(concurrency)s, pid %(pid)s", host=w.hostname,
                                   queues=", ".join(w.queues) or lang.gettext("no queue"),
                                   concurrency=w.concurrency, pid=str(w.pid))
        if w.answered is False:
            line += " — " + lang.gettext("did not answer the inspection")
        elif w.answered:
            line += ", " + (lang.gettext("running %(tasks)s", tasks="; ".join(w.running)) if w.running
                            else lang.gettext("running nothing"))
            line += ", " + lang.ngettext("%(n)s reserved", "%(n)s reserved", w.reserved) if w.reserved else ""
        lines.append(line)
    return lines


def _render_bots(stats: Stats, lang: Lang) -> list[str]:
    return [lang.gettext("Bot %(liveness)s", liveness=bot_line(bot, stats.time, lang)) for bot in stats.bots]


def bot_line(bot: BotInfo, now: float, lang: Lang | None = None) -> str:
    """One bot's liveness in words: 'telegram: loop turned 0.4 s ago, last event 3.0 s ago, 2 owed, longest block
    4 ms'."""
    lang = lang or i18n.get(i18n.SOURCE)
    event = bot.event_age(now)
    last = lang.gettext("no event yet") if event is None else \
        lang.gettext("last event %(age)s ago", age=human_seconds(event, lang))
    return lang.gettext("%(platform)s: loop turned %(age)s ago, %(last)s, %(owed)s owed, longest block %(block)s ms",
                        platform=bot.platform, age=human_seconds(bot.loop_age(now), lang), last=last, owed=bot.owed,
                        block=bot.block * 1000)


def _render_queues(stats: Stats, lang: Lang) -> list[str]:
    lines = [lang.gettext("Queues:")]
    for q in stats.queues:
        taken = lang.gettext("%(n)s in progress", n=q.unacked) if q.active is None else \
            lang.gettext("%(reserved)s reserved, %(active)s active", reserved=q.reserved or 0, active=q.active)
        served = lang.ngettext("%(n)s worker", "%(n)s workers", q.workers) if q.workers else \
            lang.gettext("no worker online: jobs wait safely")
        lines.append("  " + lang.gettext("%(queue)s: %(waiting)s waiting, %(taken)s, %(served)s", queue=q.name,
                                         waiting=q.waiting, taken=taken, served=served))
    return lines


def _render_running(stats: Stats, lang: Lang) -> list[str]:
    lines = [lang.gettext("Running jobs: %(n)s", n=len(stats.running))]
    for job in stats.running:
        title = f" {lang.ltr(job.title)}" if job.title else ""
        lines.append(f"  {job.id} {job.state} {lang.percent(job.percent)}{title}")
    return lines


def _render_cache(stats: Stats, lang: Lang) -> list[str]:
    if not stats.cache:
        return [lang.gettext("Cache: empty")]
    lines = []
    for c in stats.cache:
        rate = lang.gettext("no lookups yet") if c.hit_rate is None else \
            lang.gettext("hit rate %(rate)s (%(hits)s of %(lookups)s)", rate=lang.percent(c.hit_rate * 100),
                         hits=c.hits, lookups=c.hits + c.misses)
        lines.append(lang.gettext("Cache %(platform)s: %(entries)s, %(rate)s", platform=c.platform, rate=rate,
                                  entries=lang.ngettext("%(n)s entry", "%(n)s entries", c.entries)))
    return lines


def human_seconds(seconds: float | None, lang: Lang | None = None) -> str:
    """'4.2 s', '3 min 05 s', '1 h 02 min'."""
    lang = lang or i18n.get(i18n.SOURCE)
    if seconds is None:
        return "–"
    if seconds < 60:
        return lang.gettext("%(seconds)s s", seconds=lang.number(seconds, 1))
    hours, minutes, rest = (str(int(part)) for part in (seconds // 3600, seconds % 3600 // 60, seconds % 60))
    if seconds < 3600:
        return lang.gettext("%(minutes)s min %(seconds)s s", minutes=str(int(seconds // 60)), seconds=rest.zfill(2))
    return lang.gettext("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes.zfill(2))
