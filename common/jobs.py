"""The job model and its live state in Redis: one hash per job, an event per change.

Every change is written with its event in one step (a MULTI, or the Lua script
WRITE_SCRIPT), so a reader that takes a snapshot and the stream's last id in one
MULTI, then reads events after that id, sees every change exactly once.  The script
also checks a change's conditions in the same step: that the job has not finished,
and that the writer holds the job's lease (a stage's run, tasks/progress.py), so a
run that lost its lease changes nothing.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import IntEnum, StrEnum
from functools import cache
from string import Template
from typing import Any, cast

import redis
from redis.client import Pipeline

from common.errors import english, sentences
from common.i18n import Lang, Msg
from common.keys import Keys
from common.redisio import Batch, Plan, command, run, text

EVENTS_MAXLEN = 100_000


class State(StrEnum):
    QUEUED = "queued"
    """Waiting in the download queue."""
    DOWNLOADING = "downloading"
    """yt-dlp is fetching the audio."""
    CONVERTING = "converting"
    """ffmpeg is encoding the MP3."""
    CLEANING = "cleaning"
    """Temp files are being removed."""
    READY = "ready"
    """The MP3 files are in storage, waiting for the chat to pick them up."""
    DELIVERED = "delivered"
    """Every requester got the MP3; the files are gone."""
    FAILED = "failed"
    """Stopped with an error code and a human message."""
    CANCELLED = "cancelled"
    """Stopped on request; the files are gone."""

    @property
    def finished(self) -> bool:
        """No worker will touch the job again."""
        return self in (State.READY, State.DELIVERED, State.FAILED, State.CANCELLED)


# Overall percent range of each stage.
PERCENT = {
    State.QUEUED: (0, 10),
    State.DOWNLOADING: (10, 50),
    State.CONVERTING: (60, 90),
    State.CLEANING: (90, 100),
}


def overall_percent(state: State, fraction: float) -> float:
    low, high = PERCENT.get(state, (100, 100))
    return round(low + (high - low) * min(max(fraction, 0.0), 1.0), 1)


@dataclass
class Job:
    id: str
    url: str
    state: State = State.QUEUED
    percent: float = 0.0
    speed: float | None = None  # bytes per second while downloading, × realtime while converting
    eta: float | None = None
    message: str = ""  # a note under the progress (a retry's wait), in English: logs, the CLI
    message_i18n: list[dict[str, Any]] = field(default_factory=list)  # the same as i18n.Msg JSON (`said`)
    title: str = ""
    uploader: str = ""
    duration: float | None = None
    video_key: str = ""  # extractor:id, or url:<link key> for direct files and pages: the cache's identity
    direct: bool = False  # a bare media file: its own tags name it better than its URL
    bitrate: int = 192
    limit_bytes: int | None = None  # delivery limit of the place it goes to
    clip: str = ""  # the range to convert, as common.clip's Clip.key ("90-245"); "" for all of it
    loudness: float | None = None  # LUFS target of the MP3 (EBU R128, tasks.loudness); None: as the source is
    step: str = ""  # a named part of the stage now running ("normalising"), for the status
    replaygain: list[float] = field(default_factory=list)  # the MP3's [gain dB, peak], as tagged (an album's sum)
    files: list[str] = field(default_factory=list)
    split: bool = False  # one MP3 per chapter, when the source has chapters
    chapters: list[dict[str, Any]] = field(default_factory=list)  # the source's: title, start, end (tasks.chapters)
    cover: str = ""
    error_code: str = ""
    error_text: str = ""  # the user's sentences in English: logs, the dead letters, admins, the CLI
    error_text_i18n: list[dict[str, Any]] = field(default_factory=list)  # the same as i18n.Msg JSON (`said`)
    retryable: bool = False
    fingerprint: str = ""
    items: str = ""  # of a playlist, the entries the user picked ("2-5"; common.albums.entry_range)
    entries: list[str] = field(default_factory=list)  # an album: its tracks' job ids, in playlist order
    album: str = ""  # a track of an album (and the album itself): the playlist's title
    album_artist: str = ""  # the playlist's channel or the feed's author
    track: int = 0  # a track's number in its album, from 1
    tracks: int = 0  # how many tracks the album has
    parent: str = ""  # a track: its album's job id
    covers: list[str] = field(default_factory=list)  # a track: images if its link has none (entry's, album's)
    confirm: bool = False  # an album whose tracks wait for its requester's yes (more than ALBUM_CONFIRM)
    confirm_albums: bool = True  # the requester's /settings: False, a large album starts without that yes
    restarts: int = 0  # stages taken up again after their worker vanished
    losses: int = 0  # stages whose worker process died under them while the worker lived (the OOM killer)
    download_run: str = ""  # the download run whose folder the conversion reads (tasks/lifecycle.py)
    created: float = 0.0
    updated: float = 0.0
    started: float | None = None
    finished: float | None = None

    def to_redis(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, raw: dict[bytes | str, bytes | str]) -> Job:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else k
            if name in known:
                values[name] = json.loads(v)
        values["state"] = State(values.get("state", State.QUEUED))
        return cls(**values)

    def said(self, name: str, lang: Lang) -> str:
        """A user's text of the job ("message" or "error_text") in `lang`: from its Msg JSON, read tolerantly
        (a record without it, from another version, has the English text only)."""
        stored = getattr(self, f"{name}_i18n")
        msgs = [m for m in map(Msg.load, stored if isinstance(stored, list) else []) if m is not None]
        return sentences(lang, msgs) if msgs else str(getattr(self, name))

    def changed(self, changes: dict[str, Any]) -> Job:
        """This job with an event's changes applied (an event carries every field it changed; others are ignored)."""
        known = {f.name for f in fields(self)}
        values = {k: v for k, v in changes.items() if k in known}
        if "state" in values:
            values["state"] = State(values["state"])
        return replace(self, **values)


def saying(name: str, msgs: Sequence[Msg]) -> dict[str, Any]:
    """The changes that give a job a user's text ("message" or "error_text"): in English, and as Msg JSON that
    each requester's bot says in their own language (Job.said)."""
    return {name: english(msgs), f"{name}_i18n": [m.to_dict() for m in msgs]}


JOB_ID = re.compile(r"[0-9a-f]{12}")


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


# -- what is sent to Redis, once for both clients (common/redisio.py) -------------------------------------------


def get(keys: Keys, job_id: str) -> Plan[Job | None]:
    [raw] = yield command("hgetall", keys.job(job_id))
    return Job.from_redis(raw) if raw else None


def origins(keys: Keys, job_id: str) -> Plan[list[dict[str, Any]]]:
    [raws] = yield command("lrange", keys.job_origins(job_id), 0, -1)
    return [json.loads(o) for o in raws]


def create(keys: Keys, ttl: int, job: Job, origin: dict[str, Any] | None = None) -> Plan[None]:
    job.created = job.updated = time.time()

    def queue(pipe: Any) -> None:
        pipe.hset(keys.job(job.id), mapping=job.to_redis())
        pipe.expire(keys.job(job.id), ttl)
        if origin is not None:
            pipe.rpush(keys.job_origins(job.id), json.dumps(origin))
            pipe.expire(keys.job_origins(job.id), ttl)
        queue_event(pipe, keys, ttl, job.id, {"state": job.state, "percent": job.percent})

    yield Batch(queue)


def claim(keys: Keys, ttl: int, job: Job, origin: dict[str, Any] | None = None) -> Plan[tuple[str, bool]]:
    """Join the identical job in flight (same fingerprint), or create `job`: (job id, joined)."""
    key = keys.inflight(job.fingerprint)
    for _ in range(5):
        [existing] = yield command("get", key)
        if existing:
            job_id = existing.decode()
            [state] = yield command("hget", keys.job(job_id), "state")
            if state is not None and not State(json.loads(state)).finished:
                if origin is not None:
                    yield command("rpush", keys.job_origins(job_id), json.dumps(origin))
                return job_id, True
            yield command("delete", key)
        yield from create(keys, ttl, job, origin)
        [claimed] = yield command("set", key, job.id, nx=True, ex=ttl)
        if claimed:
            return job.id, False
        yield command("delete", keys.job(job.id), keys.job_origins(job.id), keys.job_events(job.id))
        job = replace(job, id=new_job_id())
    raise RuntimeError("could not claim a job for this request")


def update(keys: Keys, ttl: int, job_id: str, changes: dict[str, Any]) -> Plan[None]:
    """Write changes and publish them as one event."""
    changes = {**changes, "updated": time.time()}

    def queue(pipe: Any) -> None:
        pipe.hset(keys.job(job_id), mapping={k: json.dumps(v) for k, v in changes.items()})
        queue_event(pipe, keys, ttl, job_id, changes)

    yield Batch(queue)


# The expected lease of a write made by no run (the watchdog, a failure before any run began):
# it applies only while nobody holds the job's lease.
LEASE_FREE = "-"

_FINISHED = ", ".join(f"[{json.dumps(json.dumps(s.value))}] = true" for s in State if s.finished)

# A change to a job and its event, on conditions, with bookkeeping, in one step.
# KEYS: the job's hash, every job's events, the job's events, the job's lease.
# ARGV: job id; the lease expected ('' any, LEASE_FREE nobody's, else the holder's token); '1' to leave
# a finished (or deleted) job alone; '1' to give the lease back (also when the job has finished);
# the job events' TTL; the events' length; the event (JSON); more commands to run with the change
# (JSON list of argument lists); then field, value pairs (none: only the conditions are checked).
# Returns a Written.
WRITE_SCRIPT = Template("""
local lease = redis.call('GET', KEYS[4])
if ARGV[2] == '$free' then
  if lease then return -1 end
elseif ARGV[2] ~= '' then
  if lease ~= ARGV[2] then return -1 end
  if ARGV[4] == '1' then redis.call('DEL', KEYS[4]) end
end
if ARGV[3] == '1' then
  local state = redis.call('HGET', KEYS[1], 'state')
  if not state or ({$finished})[state] then return 0 end
end
if #ARGV > 8 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 9))
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'job', ARGV[1], 'data', ARGV[7])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'data', ARGV[7])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
for _, command in ipairs(cjson.decode(ARGV[8])) do redis.call(unpack(command)) end
return 1
""").substitute(free=LEASE_FREE, finished=_FINISHED)


class Written(IntEnum):
    """What became of a conditional write to a job."""

    LEASE_LOST = -1
    """Nothing written: another run holds the job's lease (or, for LEASE_FREE, some run does)."""
    FINISHED = 0
    """Nothing written: the job has finished (cancelled, failed...) or is gone."""
    DONE = 1
    """Written, with its event and bookkeeping."""


def write(keys: Keys, ttl: int, job_id: str, changes: dict[str, Any], *, lease: str | None = None,
          unless_finished: bool = True, release: bool = False,
          also: Callable[[Pipeline], None] | None = None) -> Plan[Written]:
    """Write changes and their event in one step, if the conditions hold.

    `lease`: only while the job's lease is this token (LEASE_FREE: nobody's); `release` gives
    it back in the same step.  `also` queues commands (bookkeeping) that land with the change
    and only with it.  With no changes, only the conditions are checked (and `also` run).
    """
    changes = {**changes, "updated": time.time()} if changes else {}
    args = [job_id, lease or "", "1" if unless_finished else "0", "1" if release else "0", str(ttl),
            str(EVENTS_MAXLEN), json.dumps(changes), json.dumps(_commands(also) if also is not None else [])]
    for name, value in changes.items():
        args += [name, json.dumps(value)]
    [written] = yield command("eval", WRITE_SCRIPT, 4, keys.job(job_id), keys.events, keys.job_events(job_id),
                              keys.job_lease(job_id), *args)
    return Written(int(written))


def _commands(also: Callable[[Pipeline], None]) -> list[list[str]]:
    """The commands `also` queues on a pipeline, as argument lists for WRITE_SCRIPT."""
    pipe = _recorder().pipeline(transaction=False)
    also(pipe)
    return [[_arg(arg) for arg in args] for args, _options in pipe.command_stack]


@cache
def _recorder() -> redis.Redis:
    """A client that never connects: its pipelines only record what is queued on them."""
    return redis.Redis()


def _arg(arg: object) -> str:
    if isinstance(arg, bytes):
        return arg.decode()
    return repr(arg) if isinstance(arg, float) else str(arg)  # as redis-py encodes a float


def queue_event(pipe: Any, keys: Keys, ttl: int, job_id: str, changes: dict[str, Any]) -> None:
    """The event of a change, on the global stream (the bots follow it) and the job's own."""
    data = json.dumps(changes)
    pipe.xadd(keys.events, {"job": job_id, "data": data}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.xadd(keys.job_events(job_id), {"data": data}, maxlen=1000, approximate=True)
    pipe.expire(keys.job_events(job_id), ttl)


def snapshot(keys: Keys, job_ids: list[str]) -> Plan[tuple[list[Job], str]]:
    """Current records and the id of the last event they include."""
    def queue(pipe: Any) -> None:
        pipe.xrevrange(keys.events, count=1)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))

    last, *raws = yield Batch(queue)
    cursor = last[0][0].decode() if last else "0-0"
    return [Job.from_redis(raw) for raw in raws if raw], cursor


def read_events(keys: Keys, cursor: str, block_ms: int = 1000, count: int = 500
                ) -> Plan[tuple[list[tuple[str, dict[str, Any]]], str]]:
    """Events after cursor: [(job_id, changes)] and the new cursor."""
    [reply] = yield Batch(lambda pipe: pipe.xread({keys.events: cursor}, block=block_ms, count=count), atomic=False)
    events = []
    for _stream, entries in reply or []:
        for event_id, data in entries:
            cursor = event_id.decode()
            events.append((data[b"job"].decode(), json.loads(data[b"data"])))
    return events, cursor


class JobStore:
    """Reads and writes job records, their events and their origins."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl: int) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = ttl

    def create(self, job: Job, origin: dict[str, Any] | None = None) -> None:
        run(self.redis, create(self.keys, self.ttl, job, origin))

    def claim(self, job: Job, origin: dict[str, Any] | None = None) -> tuple[str, bool]:
        return run(self.redis, claim(self.keys, self.ttl, job, origin))

    def get(self, job_id: str) -> Job | None:
        return run(self.redis, get(self.keys, job_id))

    def state(self, job_id: str) -> State | None:
        raw = self.redis.hget(self.keys.job(job_id), "state")
        return State(json.loads(raw)) if raw else None

    def update(self, job_id: str, **changes: Any) -> None:
        """Write changes and publish them as one event."""
        run(self.redis, update(self.keys, self.ttl, job_id, changes))

    def update_unless_finished(self, job_id: str, also: Callable[[Pipeline], None] | None = None,
                               **changes: Any) -> bool:
        """Like update, but leaves a finished (cancelled, failed...) job alone.

        `also` adds commands that land with the change, and only with it (bookkeeping).
        """
        return self.write(job_id, changes, also=also) is Written.DONE

    def write(self, job_id: str, changes: dict[str, Any], *, lease: str | None = None, unless_finished: bool = True,
              release: bool = False, also: Callable[[Pipeline], None] | None = None) -> Written:
        """A conditional write (see `write` above)."""
        return run(self.redis, write(self.keys, self.ttl, job_id, changes, lease=lease,
                                     unless_finished=unless_finished, release=release, also=also))

    def origins(self, job_id: str) -> list[dict[str, Any]]:
        return run(self.redis, origins(self.keys, job_id))

    def add_origin(self, job_id: str, origin: dict[str, Any]) -> None:
        self.redis.rpush(self.keys.job_origins(job_id), json.dumps(origin))

    def snapshot(self, job_ids: list[str]) -> tuple[list[Job], str]:
        """Current records and the id of the last event they include."""
        return run(self.redis, snapshot(self.keys, job_ids))

    def read_events(self, cursor: str, block_ms: int = 1000, count: int = 500) -> tuple[list[tuple[str, dict]], str]:
        """Events after cursor: [(job_id, changes)] and the new cursor."""
        return run(self.redis, read_events(self.keys, cursor, block_ms, count))

    def history(self, job_id: str, after: str = "-") -> list[tuple[str, dict]]:
        entries = self.redis.xrange(self.keys.job_events(job_id), min=after) or []
        return [(text(i), json.loads(d[b"data"])) for i, d in entries if i is not None and d is not None]

    def job_events(self, job_id: str, cursor: str, block_ms: int = 1000) -> tuple[list[dict], str]:
        """One job's changes after cursor, blocking up to block_ms."""
        reply = self.redis.xread({self.keys.job_events(job_id): cursor}, block=block_ms)
        changes = []
        for _stream, entries in cast("list[list[Any]]", reply or []):  # RESP2: [[stream, [(id, fields)...]]]
            for event_id, data in entries:
                cursor = event_id.decode()
                changes.append(json.loads(data[b"data"]))
        return changes, cursor
