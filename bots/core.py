"""What both bots do alike: take a link, follow its job, keep the status current, deliver.

A platform adapter says how to post, edit and upload; everything else is here:
the URL check, the cache, the limits, submitting, following the job events,
throttled status edits, delivery bookkeeping, cancel and retry, and resuming
after a restart (the requests a bot still owes are kept in Redis).

Nothing here waits for one chat on behalf of another. The follow loop only reads
events, applies them to the jobs it keeps, and hands each chat its work: status
edits go to the chat's lane (coalesced, sent by the lane's own task), uploads and
the last words of a request run as tasks of their own. Every loop is supervised
(bots/loops.py). Redis is reached with `redis.asyncio` through the same plans the
workers run (common/redisio.py); only what has no async form (publishing to
Celery, cancelling through Celery, the admin reports) runs in a small pool of
threads of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypedDict, TypeVar

import kombu.exceptions
import redis
import redis.asyncio

from bots.loops import Loops
from bots.throttle import ChatGone, Lanes, MessageGone, Priority
from common import alerts, cache, i18n, jobs, limits, metrics, redisio, stats, usersettings
from common.context import async_redis_client, keys
from common.delivery import delivered, remove_output
from common.errors import sentences
from common.i18n import N_, Msg
from common.jobs import Job, State
from common.limits import DISK_FULL, disk_full
from common.redisio import Plan, arun
from common.render import Markup, QueueInfo, StatusView, render, render_album, split_offer, split_tracks
from common.settings import Settings
from common.urlguard import parse_target, precheck
from common.usersettings import UserSettings
from tasks import pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")

# What users read (common/i18n.py: each in the reader's language).
UNAVAILABLE = N_("The bot is temporarily unavailable; please try again in a minute.")
UPLOAD_FAILED = N_("Sending the MP3 failed; please try again.")
ENDED = N_("This job has ended.")
GONE = N_("That job is gone; please send the link again.")
NOT_YOURS = N_("Only the person who sent this link (or an admin) can do that.")
OTHERS_SETTINGS = N_("These are someone else's settings: send /settings for your own.")
NO_SETTING = N_("That setting no longer exists: send /settings again.")
SAVED = N_("Saved.")
CANCELLED = N_("Cancelled.")
STARTING = N_("Starting…")
QUEUE_REFRESH = 3.0  # seconds between refreshes of the jobs we follow (queue positions, anything missed)
HOUSEKEEPING = 5.0  # seconds between liveness writes and pruning
LAG_TICK = 0.05  # seconds: the event-loop block watcher's sleep
ALIVE_TTL = 20  # seconds a liveness record outlives its last write: a bot that died soon has none
SYNC_THREADS = 2  # threads for what has no async form (Celery, the admin reports)
SLOW_NAME = Msg(N_("The site of this link couldn't be found in time: its name took too long to resolve."))
DNS_THREADS = 8  # lookups at once; one user holds at most USER_CONCURRENT_JOBS of them
ALERT_POLL = 1.0  # seconds between looks at the admin alerts
ALBUM_GROUP = 10  # files in one album message: Telegram's media group and Discord's attachments allow 10
PUBLISH_RETRY, PUBLISH_RETRY_MAX = 1.0, 30.0  # seconds between tries to send a job while the broker is away
ALERT_RETRY = 60.0  # seconds before alerts that could not be delivered are tried again


class Where(TypedDict, total=False):
    """Where to answer a request: each adapter fills in what its platform needs (stored as JSON)."""

    message_id: int | None
    """The message to answer: the user's (Telegram), the interaction's first response (Discord)."""
    app_id: int
    """Discord: the application and the interaction token that may answer for 15 minutes from `created`."""
    token: str
    created: float


class Status(TypedDict, total=False):
    """Where a request's status message is: the adapter's to fill in and move (stored as JSON)."""

    chat_id: int
    message_id: int | None
    """None while it has none (Discord, after moving to another place)."""
    mode: str
    """Discord: how it answers now (its `Mode`: webhook, channel, dm or nowhere)."""
    channel_id: int | None
    earlier: list[int]
    """Discord: the status messages left behind in earlier places (their buttons still work)."""


@dataclass
class Request:
    """One link from one user in one chat, from the moment it arrives until it is answered."""

    id: str
    url: str
    user_id: int
    chat_id: int
    bitrate: int
    limit_bytes: int | None
    where: Where = field(default_factory=Where)
    clip: str = ""  # the range asked for (common.clip's Clip.key), "" for all of it
    loudness: float | None = None  # the MP3's LUFS target, None: as the source is
    status: Status = field(default_factory=Status)
    job_id: str = ""
    created: float = field(default_factory=time.time)
    split: bool = False  # one MP3 per chapter, when the source has chapters
    confirm_albums: bool = True  # an album of more than ALBUM_CONFIRM tracks waits for the requester's Start
    items: str = ""  # of a playlist, the entries asked for ("2-5")
    sent: int = 0  # of an album, the tracks sent (or skipped) so far, in playlist order
    charged: bool = False  # of an album, its tracks counted against the user's hourly limit
    lang: str = ""  # the language the requester is answered in (common/i18n.py code; "": DEFAULT_LANGUAGE)

    @property
    def variant(self) -> str:
        """Which delivery of the video this request wants, for the cache."""
        return cache.variant(self.clip, self.split, self.loudness)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, data: Any) -> Request:
        """A request as stored (by this version or another): unknown fields are ignored; ValueError if unusable."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            req = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:  # a field it cannot do without is missing
            raise ValueError(str(error)) from error
        if not (isinstance(req.id, str) and isinstance(req.url, str) and isinstance(req.job_id, str)
                and all(isinstance(n, int) for n in (req.user_id, req.chat_id, req.bitrate, req.sent))
                and isinstance(req.where, dict) and isinstance(req.status, dict)):
            raise ValueError("a field has the wrong type")
        return req


class Adapter(Protocol):
    # Read-only here: a class attribute or a property will do.
    @property
    def platform(self) -> str: ...

    @property
    def markup(self) -> Markup: ...

    async def post_status(self, req: Request, view: StatusView) -> Status:
        """Send the first status message; return how to find it again."""

    async def edit_status(self, req: Request, view: StatusView) -> None:
        """Show a new view in the status message (may raise RateLimited, MessageGone or ChatGone)."""

    async def upload(self, req: Request, job: Job, part: int) -> dict[str, Any]:
        """Send the job's MP3 number `part`; return what the cache should keep of it."""

    async def upload_group(self, req: Request, files: list[tuple[Job, int]]) -> None:
        """Send several MP3s (of an album: up to ALBUM_GROUP), in this order."""

    async def send_cached(self, req: Request, part: dict[str, Any], buttons: StatusView | None = None) -> bool:
        """Send one cached part (with the `buttons` of this view under it, if any); False when the platform no
        longer has it."""

    def cached_usable(self, req: Request, parts: list[dict[str, Any]]) -> bool:
        """Asked before any cached part is sent: a platform whose cached files may be gone, or too
        large for this chat, says no (then it counts as a miss and a job runs)."""

    def room(self, chat_id: int, priority: Priority) -> bool:
        """Whether the bot's budget with the platform has room for a call of this priority into this chat
        (a platform whose client paces the bot by itself always says yes)."""

    @property
    def admin_ids(self) -> list[int]: ...

    async def notify(self, user_id: int, text: str) -> None:
        """Send a plain text privately to a user (an admin: alerts)."""

    # An adapter may change `req.status` in any call (e.g. it moved the status message); the core saves it.


class BotCore:
    def __init__(self, adapter: Adapter, settings: Settings) -> None:
        self.adapter = adapter
        self.settings = settings
        self.platform = adapter.platform
        self.lanes = Lanes(interval=1.0, room_for=adapter.room)
        self.loops = Loops(self.platform)
        self.requests: dict[str, Request] = {}
        self.jobs: dict[str, Job] = {}  # the jobs of our requests, kept current by their events
        self.alive = stats.BotInfo(self.platform, pid=os.getpid(), started=time.time())
        self._queue = QueueInfo()  # download queue: workers serving it, as of the last refresh
        self._positions: dict[str, int] = {}
        self._delivering: set[str] = set()
        self._album_of: dict[str, str] = {}  # a track's job id -> its album's
        self._posting: set[str] = set()
        self._sync: ThreadPoolExecutor | None = None
        # DNS lookups can't be cancelled: they get threads of their own, never the shared default pool.
        self._dns = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="dns")

    # -- clients, made lazily so that constructing a bot touches nothing
    @property
    def redis(self) -> redis.asyncio.Redis:
        return async_redis_client()

    async def io(self, plan: Plan[T]) -> T:
        """Carry out a Redis plan (common/redisio.py) on the bot's asyncio client."""
        return await arun(async_redis_client(), plan)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking work that has no async form, in the bot's own small pool (never the loop's default one)."""
        if self._sync is None:
            self._sync = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix=f"{self.platform}-sync")
        return await asyncio.get_running_loop().run_in_executor(self._sync, partial(fn, *args))

    # -- running
    def start(self) -> None:
        """Start the background loops (each supervised: it starts again after any error)."""
        self.loops.start("follow", self._follow)
        self.loops.start("refresh", self._refresh)
        self.loops.start("housekeeping", self._housekeeping)
        self.loops.start("alerts", self._alerts)
        self.loops.start("lag", self._lag)

    async def stop(self) -> None:
        await self.loops.stop()
        self.lanes.close()
        with contextlib.suppress(redis.RedisError):
            await self.redis.delete(keys().bot(self.platform))
        for pool in (self._sync, self._dns):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    # -- taking a link
    def new_request(self, url: str, user_id: int, chat_id: int, chosen: UserSettings, limit_bytes: int | None,
                    where: Where, clip: str = "", *, bitrate: int | None = None, split: bool | None = None,
                    lang: str = "") -> Request:
        """A request made as the user's settings say (`chosen`: their /settings, both bots alike); `bitrate`
        and `split` given (a command's options) win for this one. `clip`: the range asked for, as
        common.clip's Clip.key ("" for all of it)."""
        rid = f"{self.platform}:{chat_id}:{uuid.uuid4().hex[:10]}"
        return Request(rid, url, user_id, chat_id, bitrate or chosen.bitrate, limit_bytes, where, clip=clip,
                       loudness=chosen.loudness, split=chosen.split_chapters if split is None else split,
                       confirm_albums=chosen.confirm_albums, lang=lang)

    async def take(self, req: Request) -> None:
        """Answer a link: refuse it clearly, serve it from the cache, or start (or join) its job."""
        req.lang = req.lang or self.settings.default_language  # from now on the adapter's calls know it too
        try:
            await self._take(req)
        except ChatGone as error:  # before it had a job (one that has one ends by itself: _gone)
            log.info("%s: the chat no longer takes messages (%s); the link is left unanswered", req.id, error)
        except redis.RedisError:
            log.warning("redis unavailable while taking a link")
            await self._say(req, self._note(req, "", Msg(UNAVAILABLE)))

    async def _take(self, req: Request) -> None:
        # Cheapest refusals first: the link's form and site, the cache, the limits; DNS last.
        reason = precheck(req.url, self.settings, dns=False)
        if reason:
            await self._say(req, self._note(req, "⛔", reason))
            return
        if not req.items and await self._from_cache(req):
            return
        if await asyncio.to_thread(disk_full, self.settings):
            await self._say(req, self._note(req, "⏸", *DISK_FULL.said))
            return
        s = self.settings
        waiting = await self.io(stats.depth(keys(), "download"))
        refusal = await self.io(limits.reserve(keys(), self.platform, req.user_id, req.id, s.user_concurrent_jobs,
                                               s.user_jobs_per_hour, s.queue_cap, waiting))
        if refusal:
            await self._say(req, self._note(req, "⏸", *refusal.said))
            return
        reason = await self._resolves(req)
        if reason:
            await self._say(req, self._note(req, "⛔", reason))
            return
        origin = {"id": req.id, "platform": self.platform, "request": asdict(req)}
        job = pipeline.new_job(req.url, req.bitrate, req.limit_bytes, req.items, split=req.split, clip=req.clip,
                               loudness=req.loudness, confirm_albums=req.confirm_albums)
        req.job_id, joined = await self.io(jobs.claim(keys(), s.job_ttl, job, origin))
        await self._remember(req)  # owed from now on: the MP3 arrives even if no status can be shown
        current = await self.io(jobs.get(keys(), req.job_id)) if joined else job
        for track in current.entries if joined and current is not None else []:  # an album under way: its tracks
            await self.redis.rpush(keys().job_origins(track), json.dumps({**origin, "album": req.job_id}))
        if current is not None:
            self._install(current)
            await self._post_status(req, self._view(current, req))
        if not joined:  # after the first reply: the job is recorded and waits for its stages meanwhile
            self.loops.spawn(f"publish:{req.job_id}", self._publish(req.job_id))
        self._show(req.job_id)  # anything that happened while we posted

    async def _publish(self, job_id: str) -> None:
        """Send the job's stages to Celery. Redis (the broker) may have gone since the job was recorded: the
        status already says the job waits, so try again, more slowly each time, until it is sent; a job
        recorded but never sent would wait for ever. Sent twice is harmless: a stage is fenced by its job."""
        delay = PUBLISH_RETRY
        while True:
            try:
                await self.offload(pipeline.send, job_id)
                return
            except (redis.RedisError, kombu.exceptions.OperationalError) as error:
                log.warning("job %s not sent to the workers yet (%s); trying again in %.0f s", job_id, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, PUBLISH_RETRY_MAX)

    async def _resolves(self, req: Request) -> Msg | None:
        """The DNS pre-check of a request holding a slot: None, or the sentence to reply.

        In a small pool of its own, with a deadline: a name that resolves slowly holds its
        sender's slot (until the lookup really ends) and one of these threads, never the bot.
        """
        if parse_target(req.url).host.ip is not None:
            return None  # an address, not a name: checked already, nothing to resolve
        lookup = asyncio.wrap_future(self._dns.submit(precheck, req.url, self.settings))
        try:
            reason = await asyncio.wait_for(asyncio.shield(lookup), self.settings.dns_timeout)
        except TimeoutError:
            self.loops.spawn(f"release:{req.id}", self._release_after(lookup, req))
            return SLOW_NAME
        if reason:
            await self._release(req)
        return reason

    async def _release_after(self, lookup: asyncio.Future[Msg | None], req: Request) -> None:
        with contextlib.suppress(Exception):
            await lookup
        await self._release(req)

    async def _release(self, req: Request) -> None:
        """The request's running slot is free again."""
        await self.io(limits.release(keys(), self.platform, req.user_id, req.id))

    async def _from_cache(self, req: Request) -> bool:
        """Send what the platform already has; the last part carries the split its first delivery offered."""
        parts = await self.io(cache.lookup(keys(), self.platform, req.url, req.bitrate, req.variant))
        if not parts or not self.adapter.cached_usable(req, parts):
            return False
        offer = await self._split_offer(req, parts)
        for number, part in enumerate(parts):
            buttons = offer if number == len(parts) - 1 else None
            if not await self.lanes(req.chat_id).call(partial(self.adapter.send_cached, req, part, buttons)):
                await self.io(cache.forget(keys(), self.platform, req.url, req.bitrate, req.variant))
                return False
        return True

    async def _split_offer(self, req: Request, parts: cache.Parts) -> StatusView | None:
        """A "Split into N tracks" button for a cached whole of a source with chapters: it names an offer kept
        for this requester (the job that made the MP3 may be gone, and they never asked for it)."""
        tracks = 0 if req.split else cache.chapters(parts)
        if not tracks:
            return None
        wanted = cache.SplitOffer(req.user_id, req.url, req.bitrate, req.limit_bytes, req.clip, req.loudness)
        ref = await self.io(cache.offer(keys(), self.platform, self.settings.job_ttl, wanted))
        return split_offer(ref, tracks, self.lang(req))

    async def _say(self, req: Request, view: StatusView) -> None:
        await self.lanes(req.chat_id).call(lambda: self.adapter.post_status(req, view))

    async def _post_status(self, req: Request, view: StatusView) -> None:
        """The request's first status message; the job goes on (and is delivered) if it can't be shown,
        unless the chat takes no messages at all.

        Until it is out, the job's events leave the request alone (an edit must not overtake the message
        it edits); the caller shows the job's state afterwards.
        """
        self._posting.add(req.id)
        try:
            req.status = await self.lanes(req.chat_id).call(lambda: self.adapter.post_status(req, view))
        except ChatGone as error:
            self._gone(req, error)
            return
        except Exception as error:
            log.warning("status of %s could not be posted: %s: %s", req.id, type(error).__name__, error)
            return
        finally:
            self._posting.discard(req.id)
        self.lanes(req.chat_id).shown(req.id, view)
        if req.id in self.requests:
            try:
                await self._remember(req)
            except redis.RedisError as error:  # the request is owed already; only where its status is waits
                log.warning("where the status of %s is was not saved (%s)", req.id, error)

    # -- following jobs
    async def _follow(self) -> None:
        """Resume what we still owe, then apply every job event as it comes."""
        await self._resume()
        job_ids = sorted({r.job_id for r in self.requests.values()})
        found, cursor = await self.io(jobs.snapshot(keys(), job_ids))
        for job in found:
            self._install(job)
        for job_id in job_ids:
            self._show(job_id)
        while True:
            events, cursor = await self.io(jobs.read_events(keys(), cursor, 1000))
            self.alive.turned = time.time()
            if events:
                self.alive.event = self.alive.turned
                self._apply(events)

    async def _resume(self) -> None:
        """Load the requests we owe; a record this version can't use is dropped with a warning."""
        raw = await self.redis.hgetall(keys().pending(self.platform))
        for rid, value in raw.items():
            try:
                req = Request.load(json.loads(value))
            except ValueError as error:
                log.warning("dropping an unusable pending request %r (%s)", redisio.text(rid, errors="replace"), error)
                await self.redis.hdel(keys().pending(self.platform), rid)
                continue
            self.requests.setdefault(req.id, req)
        if self.requests:
            log.info("resuming %d requests", len(self.requests))

    def _apply(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Each event's changes onto the job we keep; then every changed job's chats get their work."""
        changed = set()
        for job_id, change in events:
            job = self.jobs.get(job_id)
            if job is not None:
                self.jobs[job_id] = job.changed(change)
                changed.add(job_id)
            elif change.get("state") == State.QUEUED:
                self.loops.spawn(f"adopt:{job_id}", self._adopt(job_id))
        for job_id in changed:
            self._show(job_id)

    def _install(self, job: Job) -> None:
        """A job read whole: kept unless what we have is newer (an event applied meanwhile)."""
        known = self.jobs.get(job.id)
        # A finished job never goes back: a read taken before its last event is only older.
        if known is None or (job.updated >= known.updated and not (known.state.finished and not job.state.finished)):
            self.jobs[job.id] = job

    async def _adopt(self, job_id: str) -> None:
        """A job re-run for our users (an admin's retry): answer it like one of ours."""
        origins = await self.io(jobs.origins(keys(), job_id))
        retried = [o for o in origins if o.get("platform") == self.platform and "retry_of" in o]
        if not retried or job_id in self.jobs:
            return
        job = await self.io(jobs.get(keys(), job_id))
        if job is None:
            return
        self._install(job)
        for origin in retried:
            try:
                req = Request.load({**dict(origin.get("request") or {}), "job_id": job_id, "status": {}})
            except (ValueError, TypeError) as error:
                log.warning("a retried job's request is unusable (%s)", error)
                continue
            await self._remember(req)
            await self._post_status(req, render(job, self.adapter.markup, self.lang(req)))
        self._show(job_id)

    def _show(self, job_id: str) -> None:
        """Bring every status message of this job up to date, and deliver when it is ready (never waits)."""
        if job_id in self._album_of:
            job_id = self._album_of[job_id]
        job = self.jobs.get(job_id)
        if job is None:
            return
        if job.entries and job.state not in (State.CANCELLED, State.FAILED):
            self._show_album(job)
            return
        busy = self._delivering | self._posting
        for req in [r for r in self.requests.values() if r.job_id == job_id and r.id not in busy]:
            if job.state == State.READY:
                self._start_delivery(req, job)
            elif job.state.finished:
                self._end(req, render(job, self.adapter.markup, self.lang(req)))
            else:
                self._edit(req, self._view(job, req))

    # -- albums: the tracks followed through their album's job, sent in playlist order
    def _show_album(self, album: Job) -> None:
        missing = [t for t in album.entries if t not in self.jobs]
        for track in album.entries:
            self._album_of[track] = album.id
        if missing:
            self.loops.spawn(f"tracks:{album.id}", self._load_tracks(missing))
        tracks = [self.jobs.get(t) for t in album.entries]
        for req in [r for r in self.requests.values() if r.job_id == album.id and r.id not in self._delivering]:
            if not req.charged:
                req.charged = True
                self.loops.spawn(f"charge:{req.id}", self._charge(req, len(album.entries)))
            following = tracks[req.sent] if req.sent < len(tracks) else None
            if not missing and (req.sent >= len(tracks) or (following is not None and following.state.finished)):
                self._delivering.add(req.id)
                self.loops.spawn(f"deliver:{req.id}", self._deliver_tracks(req, album))
            else:
                self._edit(req, render_album(album, tracks, self.adapter.markup, self.lang(req), req.sent))

    async def _charge(self, req: Request, tracks: int) -> None:
        await self.io(limits.charge(keys(), self.platform, req.user_id, req.id, tracks))
        await self._remember(req)

    async def start_album(self, req: Request | None, job_id: str, user_id: int, is_admin: bool) -> str:
        """The requester's (or an admin's) yes to a large album: its tracks start. The answer, a message id."""
        if req is None:
            return ENDED
        if req.job_id != job_id or (user_id != req.user_id and not is_admin):
            return NOT_YOURS
        return STARTING if await self.offload(pipeline.start_album, job_id) else ENDED

    async def _load_tracks(self, track_ids: list[str]) -> None:
        found, _ = await self.io(jobs.snapshot(keys(), track_ids))
        for job in found:
            self._install(job)
        for job in found[:1]:
            self._show(job.id)

    async def _deliver_tracks(self, req: Request, album: Job) -> None:
        """Send the finished tracks that are next in playlist order (a failed one is skipped); the album ends
        when all are sent."""
        lane = self.lanes(req.chat_id)
        try:
            while req.sent < len(album.entries) and self._album_running(album.id):
                batch = self._next_tracks(album, req.sent)
                if not batch:
                    break
                done = [t for t in batch if t.state == State.READY]  # delivered: sent to all who asked, files gone
                files = [(t, n) for t in done for n in range(len(t.files))]
                for group in [files[i:i + ALBUM_GROUP] for i in range(0, len(files), ALBUM_GROUP)]:
                    if len(group) == 1:
                        await lane.call(partial(self._upload, req, *group[0]), priority=Priority.DELIVERY)
                    else:
                        await lane.call(partial(self._upload_group, req, group), priority=Priority.DELIVERY)
                    for track, number in group:
                        metrics.uploaded(self.platform, track.files[number])
                for track in batch:
                    if track.files:
                        await self._delivered(track, req.id)
                req.sent += len(batch)
                await self._remember(req)
        except ChatGone as error:  # nowhere to send them: the album goes on only for others who asked for it
            self._log_gone(req, error)
            self._end(req, None)
            self._delivering.discard(req.id)
            await self._withdraw(req)
            return
        except Exception:  # the upload failed: say so; the tracks not sent are cancelled
            log.exception("delivery of %s failed", req.id)
            await self.offload(pipeline.cancel, album.id)
            self._end(req, self._note(req, "❌", Msg(UPLOAD_FAILED)))
            self._delivering.discard(req.id)
            return
        current = self.jobs.get(album.id) or album
        tracks = [self.jobs.get(t) for t in album.entries]
        if current.state == State.CANCELLED:
            self._end(req, render(current, self.adapter.markup, self.lang(req)))
        elif req.sent >= len(album.entries):
            await self._delivered(current, req.id)
            self._end(req, render_album(current, tracks, self.adapter.markup, self.lang(req), req.sent))
        self._delivering.discard(req.id)
        self._show(album.id)

    def _next_tracks(self, album: Job, start: int) -> list[Job]:
        """The finished tracks from `start` on, in playlist order, up to the first one still running."""
        batch = []
        for track_id in album.entries[start:]:
            track = self.jobs.get(track_id)
            if track is None or not track.state.finished:
                break
            batch.append(track)
        return batch

    def _album_running(self, album_id: str) -> bool:
        album = self.jobs.get(album_id)
        return album is not None and album.state not in (State.CANCELLED, State.FAILED)

    def _view(self, job: Job, req: Request) -> StatusView:
        """The job's status as its requester reads it."""
        if job.state != State.QUEUED:
            return render(job, self.adapter.markup, self.lang(req))
        return render(job, self.adapter.markup, self.lang(req),
                      QueueInfo(self._positions.get(job.id), self._queue.workers))

    def _note(self, req: Request, icon: str, *said: Msg) -> StatusView:
        """A status of a few sentences of ours (a refusal, a failure of the bot's), in the requester's language."""
        text = self.adapter.markup.escape(sentences(self.lang(req), said))
        return StatusView(f"{icon} {text}" if icon else text)

    async def _refresh(self) -> None:
        """Every few seconds: the download queue's positions and workers, read once for all waiting jobs,
        and the jobs we follow read afresh (an event missed while a request was being taken)."""
        while True:
            wanted = sorted({r.job_id for r in self.requests.values()})
            if wanted:
                tracks = [t for j in wanted if j in self.jobs for t in self.jobs[j].entries]
                found, _ = await self.io(jobs.snapshot(keys(), wanted + tracks))
                for job in found:
                    self._install(job)
                gone = set(wanted) - {job.id for job in found}  # expired: nothing will ever come of it
                for req in [r for r in self.requests.values() if r.job_id in gone]:
                    self._end(req, self._note(req, "❌", Msg(GONE)))
            self._positions = await self.io(stats.positions(keys(), "download"))
            self._queue = QueueInfo(workers=stats.serving(await self.io(stats.online(keys())), "download"))
            for job_id in wanted:
                self._show(job_id)
            await asyncio.sleep(QUEUE_REFRESH)

    def _edit(self, req: Request, view: StatusView, priority: Priority = Priority.EDIT) -> None:
        self.lanes(req.chat_id).edit(req.id, view, partial(self._edit_now, req), priority)

    async def _edit_now(self, req: Request, view: StatusView) -> None:
        try:
            await self._saving(req, self.adapter.edit_status(req, view))
        except ChatGone as error:
            self._gone(req, error)
            raise  # the lane lets the message go

    async def _saving(self, req: Request, call: Awaitable[T]) -> T:
        """Run an adapter call; if it moved the status message, remember where it is now."""
        before = dict(req.status)
        try:
            return await call
        finally:
            if req.status != before and req.id in self.requests:
                await self._remember(req)

    async def _upload(self, req: Request, job: Job, number: int) -> dict[str, Any]:
        return await self._saving(req, self.adapter.upload(req, job, number))

    async def _upload_group(self, req: Request, group: list[tuple[Job, int]]) -> None:
        await self._saving(req, self.adapter.upload_group(req, group))  # it may move on, as a single upload may

    # -- delivering and ending
    def _start_delivery(self, req: Request, job: Job) -> None:
        self._delivering.add(req.id)  # from now on the delivery alone ends this request
        self.loops.spawn(f"deliver:{req.id}", self._deliver(req, job))

    async def _deliver(self, req: Request, job: Job) -> None:
        view: StatusView | None
        try:
            lang = self.lang(req)
            self._edit(req, render(job, self.adapter.markup, lang))
            parts = []
            lane = self.lanes(req.chat_id)
            for number in range(len(job.files)):
                part = await lane.call(partial(self._upload, req, job, number), urgent=number == 0,
                                       priority=Priority.DELIVERY)
                parts.append(part)
                metrics.uploaded(self.platform, job.files[number])
            if job.video_key and parts:
                await self.io(cache.store(keys(), self.platform, self.settings.job_ttl * 4, req.url, job.video_key,
                                          req.bitrate, parts, req.variant, split_tracks(job)))
            view = render(job.changed({"state": State.DELIVERED}), self.adapter.markup, lang)
        except ChatGone as error:  # nowhere to send it: the request ends, nothing more is said
            self._log_gone(req, error)
            view = None
        except Exception:  # the upload failed: say so, keep nothing
            log.exception("delivery of %s failed", req.id)
            view = self._note(req, "❌", Msg(UPLOAD_FAILED))
        await self._delivered(job, req.id)  # if Redis fails here the request stays owed: no second upload
        self._end(req, view)
        self._delivering.discard(req.id)

    async def _delivered(self, job: Job, origin_id: str) -> None:
        """common.delivery.mark_delivered, on the asyncio client: the last requester's delivery removes the files."""
        if await self.io(delivered(keys(), self.settings.job_ttl, job.id, origin_id)):
            await asyncio.to_thread(remove_output, job)
            await self.io(jobs.update(keys(), self.settings.job_ttl, job.id, {"state": State.DELIVERED}))

    def _end(self, req: Request, view: StatusView | None) -> None:
        """The request is answered: its last status goes out (None: nothing more is said), then its slot and
        record are let go."""
        if self.requests.pop(req.id, None) is None:
            return
        if view is None:
            self.lanes(req.chat_id).forget(req.id)
        else:
            self._edit(req, view, Priority.DELIVERY)
        self.loops.spawn(f"end:{req.id}", self._let_go(req))

    def _gone(self, req: Request, error: ChatGone) -> None:
        """The request's chat no longer takes the bot's messages: the request ends without last words, its job
        goes on only for others who asked for it. A delivery under way meets the same refusal and ends it."""
        if req.id not in self.requests or req.id in self._delivering:
            return
        self._log_gone(req, error)
        self._end(req, None)
        self.loops.spawn(f"withdraw:{req.id}", self._withdraw(req))

    @staticmethod
    def _log_gone(req: Request, error: ChatGone) -> None:
        log.info("%s: the chat no longer takes messages (%s); the request ends", req.id, error)

    async def _shared(self, req: Request) -> bool:
        """Whether others asked for this request's job too (here, or through another bot)."""
        if any(r.job_id == req.job_id and r.id != req.id for r in self.requests.values()):
            return True
        return len(await self.io(jobs.origins(keys(), req.job_id))) > 1

    async def _withdraw(self, req: Request, shared: bool | None = None) -> None:
        """The request leaves its job: one that others share goes on for them (ours counts as delivered);
        any other is cancelled. `shared`: `_shared(req)`, if the caller asked already."""
        if not (await self._shared(req) if shared is None else shared):
            await self.offload(pipeline.cancel, req.job_id)
            return
        job = await self.io(jobs.get(keys(), req.job_id))
        if job:
            await self._delivered(job, req.id)

    async def _let_go(self, req: Request) -> None:
        await self._release(req)  # at once: the user may send the next link while the last words wait their turn
        lane = self.lanes(req.chat_id)
        with contextlib.suppress(MessageGone):
            await lane.settled()
        lane.forget(req.id)
        await self.redis.hdel(keys().pending(self.platform), req.id)  # owed until then: a restart says them again

    async def _remember(self, req: Request) -> None:
        self.requests[req.id] = req
        await self.redis.hset(keys().pending(self.platform), req.id, req.to_json())

    # -- admin alerts, delivered beside everything else
    async def _alerts(self) -> None:
        """Each alert once on this platform, to every admin; when none of them could be reached
        (the platform is away), the same alert is tried again a minute later."""
        while True:
            try:
                for alert_id, alert in await self.io(alerts.fetch(keys(), self.platform)):
                    if alerts.message(alert) and not await self._tell_admins(alert):
                        raise RuntimeError(f"no admin could be reached for alert {alert.get('kind')}")
                    await self.io(alerts.ack(keys(), self.platform, alert_id))
            except Exception:
                log.warning("admin alerts not delivered; trying again in %ds", ALERT_RETRY, exc_info=True)
                await asyncio.sleep(ALERT_RETRY)
            await asyncio.sleep(ALERT_POLL)

    async def _tell_admins(self, alert: dict[str, str]) -> bool:
        """Each admin in their own language (their /language, else DEFAULT_LANGUAGE: no client says one here).
        False when there are admins and none of them could be reached (an admin who never opened a chat with
        the bot, or refuses its messages, is skipped)."""
        reached = 0
        for admin_id in self.adapter.admin_ids:
            try:  # in the admin's lane: spaced like every write to that chat, a rate limit waited out
                text = alerts.message(alert, lang=await self.user_lang(admin_id))
                if text is None:  # gone stale meanwhile: the next look drops it
                    continue
                await self.lanes(admin_id).call(partial(self.adapter.notify, admin_id, text))
                reached += 1
            except Exception as error:
                log.warning("alert not delivered to admin %s: %s", admin_id, error)
        return reached > 0 or not self.adapter.admin_ids

    # -- housekeeping
    async def _housekeeping(self) -> None:
        """Say we are alive; let go of what no request needs any more."""
        while True:
            self.alive.seen = time.time()
            self.alive.owed = len(self.requests)
            await self.io(stats.alive(keys(), self.alive, ALIVE_TTL))
            self.alive.block = 0.0  # each record tells the longest block since the one before
            self.prune()
            await asyncio.sleep(HOUSEKEEPING)

    async def _lag(self) -> None:
        """How long the event loop was kept from running: the longest overshoot of a short sleep."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            self.alive.block = max(self.alive.block, time.monotonic() - before - LAG_TICK)

    def prune(self) -> None:
        """Forget jobs no request follows and chats with nothing under way."""
        owners: defaultdict[str, int] = defaultdict(int)
        for req in self.requests.values():
            owners[req.job_id] += 1
        for track, album in self._album_of.items():
            owners[track] += owners[album]
        for job_id in [j for j in self.jobs if not owners[j]]:
            del self.jobs[job_id]
        self._album_of = {t: a for t, a in self._album_of.items() if owners[t]}
        self.lanes.prune()

    # -- a user's settings (common/usersettings.py) and language (common/i18n.py)
    def language(self, record: UserSettings, client: str | None) -> str:
        """Whom to answer in which language: their own choice (/language), else what their app is set to
        (Telegram's language_code, Discord's locale), else DEFAULT_LANGUAGE."""
        return i18n.pick(record.language, client, default=self.settings.default_language)

    def lang(self, req: Request) -> i18n.Lang:
        """The requester's language."""
        return i18n.get(req.lang or self.settings.default_language)

    async def user_lang(self, user_id: int) -> i18n.Lang:
        """The language of a user no message of theirs is at hand for (an admin's alerts), as `language` decides."""
        return i18n.get(self.language(await self.user_settings(user_id), None))

    async def user_settings(self, user_id: int) -> UserSettings:
        """The user's settings; the defaults when Redis is away (a link still gets its MP3)."""
        try:
            return await self.io(usersettings.load(keys(), self.settings, self.platform, user_id))
        except redis.RedisError:
            return UserSettings.defaults(self.settings)

    async def change_setting(self, user_id: int, name: str, value: str) -> UserSettings:
        """Set one of the user's settings; ValueError if it is not one."""
        return await self.io(usersettings.change(keys(), self.settings, self.platform, user_id, name, value))

    async def press_setting(self, owner: str, user_id: int, name: str, value: str) -> tuple[str, UserSettings | None]:
        """A settings button: only its owner (named in the button) changes anything. The answer (a message id),
        and the record to show when it changed."""
        if owner != str(user_id):
            return OTHERS_SETTINGS, None
        try:
            return SAVED, await self.change_setting(user_id, name, value)
        except ValueError:
            return NO_SETTING, None

    # -- buttons and commands
    def request_by_status(self, chat_id: int, message_id: int) -> Request | None:
        """The request whose status message this is."""
        for req in self.requests.values():
            if req.status.get("chat_id") == chat_id and req.status.get("message_id") == message_id:
                return req
        return None

    async def cancel(self, req: Request | None, job_id: str, user_id: int, is_admin: bool) -> str:
        """Cancel for the requester or an admin; a job others share goes on for them. The answer, a message id.

        `req` is our own record of the request whose status message the button is on; the job id
        the button carries must be that request's job, whatever else it says.
        """
        if req is None:
            return ENDED
        if req.job_id != job_id or (user_id != req.user_id and not is_admin):
            return NOT_YOURS
        shared = await self._shared(req)
        await self._withdraw(req, shared)
        if shared:  # the job goes on for the others: ours ends here (else the job's cancellation ends it)
            self._end(req, self._note(req, "🚫", Msg(CANCELLED)))
        return CANCELLED

    async def retry(self, job_id: str, user_id: int, is_admin: bool, chat_id: int,
                    accepted: Callable[[], Awaitable[Where]], client: str | None = None) -> str:
        """Run a job's link again for someone who asked for it, or an admin; "" when it runs, else why not (a
        message id). The new request speaks the presser's language (`language`: `client` is their app's).

        Who asked is read from the job's own origins, never from the button: a forged button naming
        another person's job gets nothing. `accepted()` answers the press and says where to reply.
        """
        return await self._again(job_id, user_id, is_admin, chat_id, accepted, client, split=None)

    async def split(self, ref: str, user_id: int, is_admin: bool, chat_id: int,
                    accepted: Callable[[], Awaitable[Where]], client: str | None = None) -> str:
        """"Split into N tracks" under a delivered MP3: the same link as a job that splits by chapters
        (tasks/chapters.py says why a job of its own), judged as `retry` is. Under an MP3 sent from the cache
        the button names a split offer instead of a job (`_split_offer`): its requester's alone."""
        if not ref.startswith(cache.OFFER):
            return await self._again(ref, user_id, is_admin, chat_id, accepted, client, split=True)
        offer = await self.io(cache.offered(keys(), self.platform, ref))
        if offer is None:
            return GONE
        if user_id != offer.user_id and not is_admin:
            return NOT_YOURS
        asked = replace(await self.user_settings(user_id), bitrate=offer.bitrate, split_chapters=True,
                        loudness=offer.loudness)  # the MP3 offered, as its cache entry was made
        req = self.new_request(offer.url, user_id, chat_id, asked, offer.limit_bytes, await accepted(), offer.clip,
                               lang=self.language(asked, client))
        await self.take(req)
        return ""

    async def _again(self, job_id: str, user_id: int, is_admin: bool, chat_id: int,
                     accepted: Callable[[], Awaitable[Where]], client: str | None, split: bool | None) -> str:
        job = await self.io(jobs.get(keys(), job_id))
        if job is None:
            return GONE
        if not is_admin and not await self._asked_by(job_id, user_id):
            return NOT_YOURS
        asked = replace(await self.user_settings(user_id), bitrate=job.bitrate, split_chapters=job.split,
                        loudness=job.loudness, confirm_albums=job.confirm_albums)  # the MP3 as the job made it
        req = self.new_request(job.url, user_id, chat_id, asked, job.limit_bytes, await accepted(), job.clip,
                               split=split, lang=self.language(asked, client))
        await self.take(req)
        return ""

    async def _asked_by(self, job_id: str, user_id: int) -> bool:
        origins = await self.io(jobs.origins(keys(), job_id))
        return any(o.get("platform") == self.platform and (o.get("request") or {}).get("user_id") == user_id
                   for o in origins)


def cover_of(job: Job) -> Path | None:
    """The small JPEG cover the worker left beside the MP3s."""
    if not job.files:
        return None
    cover = Path(job.files[0]).parent / "cover.jpg"
    return cover if cover.is_file() else None
