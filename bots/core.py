"""What both bots do alike: take a link, follow its job, keep the status current, deliver.

A platform adapter says how to post, edit and upload; everything else is here:
the URL check, the cache, the limits, submitting, following the job events,
throttled status edits, delivery bookkeeping, cancel and retry, and resuming
after a restart (the requests a bot still owes are kept in Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis

from bots.throttle import Lanes, MessageGone
from common import alerts, metrics, stats
from common.cache import DeliveryCache
from common.context import keys, redis_client, store
from common.delivery import mark_delivered
from common.jobs import Job, State
from common.limits import DISK_FULL, Limits, disk_full
from common.render import Markup, QueueInfo, StatusView, render
from common.settings import Settings
from common.urlguard import parse_target, precheck
from tasks import pipeline

log = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE = "The bot is temporarily unavailable; please try again in a minute."
UPLOAD_FAILED = "Sending the MP3 failed; please try again."
ENDED = "This job has ended."
GONE = "That job is gone; please send the link again."
NOT_YOURS = "Only the person who sent this link (or an admin) can do that."
QUEUE_REFRESH = 3.0  # seconds between queue-position refreshes of waiting jobs
SLOW_NAME = "The site of this link couldn't be found in time: its name took too long to resolve."
DNS_THREADS = 8  # lookups at once; one user holds at most USER_CONCURRENT_JOBS of them
ALERT_RETRY = 60.0  # seconds before alerts that could not be delivered are tried again


@dataclass
class Request:
    """One link from one user in one chat, from the moment it arrives until it is answered."""

    id: str
    url: str
    user_id: int
    chat_id: int
    bitrate: int
    limit_bytes: int | None
    where: dict[str, Any] = field(default_factory=dict)  # the adapter's: where to answer
    status: dict[str, Any] = field(default_factory=dict)  # the adapter's: the status message
    job_id: str = ""
    created: float = field(default_factory=time.time)


class Adapter(Protocol):
    platform: str
    markup: Markup

    async def post_status(self, req: Request, view: StatusView) -> dict[str, Any]:
        """Send the first status message; return how to find it again."""

    async def edit_status(self, req: Request, view: StatusView) -> None:
        """Show a new view in the status message (may raise RateLimited or MessageGone)."""

    async def upload(self, req: Request, job: Job, part: int) -> dict[str, Any]:
        """Send the job's MP3 number `part`; return what the cache should keep of it."""

    async def send_cached(self, req: Request, part: dict[str, Any]) -> bool:
        """Send one cached part; False when the platform no longer has it."""

    def cached_usable(self, req: Request, parts: list[dict[str, Any]]) -> bool:
        """Asked before any cached part is sent: a platform whose cached files may be gone, or too
        large for this chat, says no (then it counts as a miss and a job runs)."""

    admin_ids: list[int]

    async def notify(self, user_id: int, text: str) -> None:
        """Send a plain text privately to a user (an admin: alerts)."""

    # An adapter may change `req.status` in any call (e.g. it moved the status message); the core saves it.


class BotCore:
    def __init__(self, adapter: Adapter, settings: Settings) -> None:
        self.adapter = adapter
        self.settings = settings
        self.platform = adapter.platform
        self.lanes = Lanes(interval=1.0)
        self.requests: dict[str, Request] = {}
        self._delivering: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, Job] = {}
        # DNS lookups can't be cancelled: they get threads of their own, never the shared default pool.
        self._dns = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="dns")
        self._alerting: asyncio.Task[None] | None = None
        self._alerts_due = 0.0  # monotonic time of the next look at the admin alerts

    # -- clients, made lazily so that constructing a bot touches nothing
    @property
    def store(self):
        return store()

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(redis_client(), keys(), self.platform, s.user_concurrent_jobs, s.user_jobs_per_hour,
                      s.queue_cap)

    @property
    def cache(self) -> DeliveryCache:
        return DeliveryCache(redis_client(), keys(), self.platform, self.settings.job_ttl * 4)

    # -- taking a link
    def new_request(self, url: str, user_id: int, chat_id: int, bitrate: int | None, limit_bytes: int | None,
                    where: dict[str, Any]) -> Request:
        rid = f"{self.platform}:{chat_id}:{uuid.uuid4().hex[:10]}"
        return Request(rid, url, user_id, chat_id, bitrate or self.settings.mp3_bitrate, limit_bytes, where)

    async def take(self, req: Request) -> None:
        """Answer a link: refuse it clearly, serve it from the cache, or start (or join) its job."""
        try:
            await self._take(req)
        except redis.RedisError:
            log.warning("redis unavailable while taking a link")
            await self._say(req, StatusView(UNAVAILABLE))

    async def _take(self, req: Request) -> None:
        # Cheapest refusals first: the link's form and site, the cache, the limits; DNS last.
        reason = precheck(req.url, self.settings, dns=False)
        if reason:
            await self._say(req, StatusView(f"⛔ {self.adapter.markup.escape(reason)}"))
            return
        if await self._from_cache(req):
            return
        if await asyncio.to_thread(disk_full, self.settings):
            await self._say(req, StatusView(f"⏸ {self.adapter.markup.escape(DISK_FULL.text)}"))
            return
        waiting = await asyncio.to_thread(stats.queue_depth, "download")
        refusal = await asyncio.to_thread(self.limits.reserve, req.user_id, req.id, waiting)
        if refusal:
            await self._say(req, StatusView(f"⏸ {self.adapter.markup.escape(refusal.text)}"))
            return
        reason = await self._resolves(req)
        if reason:
            await self._say(req, StatusView(f"⛔ {self.adapter.markup.escape(reason)}"))
            return
        origin = {"id": req.id, "platform": self.platform, "request": asdict(req)}
        req.job_id, _ = await asyncio.to_thread(pipeline.submit, req.url, req.bitrate, req.limit_bytes, origin)
        await self._remember(req)  # owed from now on: the MP3 arrives even if no status can be shown
        job = await asyncio.to_thread(self.store.get, req.job_id)
        view = render(job, self.adapter.markup, await self._queue_info(job))
        try:
            req.status = await self.lanes(req.chat_id).call(lambda: self.adapter.post_status(req, view))
        except Exception:  # the job goes on; its status can't be shown
            log.warning("status of %s could not be posted", req.id, exc_info=True)
        else:
            self.lanes(req.chat_id).shown(req.id, view)
            await self._remember(req)
        await self._show(req.job_id)  # anything that happened while we posted

    async def _resolves(self, req: Request) -> str | None:
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
            self._spawn(self._release_after(lookup, req))
            return SLOW_NAME
        if reason:
            await asyncio.to_thread(self.limits.release, req.user_id, req.id)
        return reason

    async def _release_after(self, lookup: asyncio.Future[str | None], req: Request) -> None:
        with contextlib.suppress(Exception):
            await lookup
        await asyncio.to_thread(self.limits.release, req.user_id, req.id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _from_cache(self, req: Request) -> bool:
        parts = await asyncio.to_thread(self.cache.lookup, req.url, req.bitrate)
        if not parts:
            return False
        if not self.adapter.cached_usable(req, parts):
            return False
        for part in parts:
            if not await self.lanes(req.chat_id).call(lambda p=part: self.adapter.send_cached(req, p)):
                await asyncio.to_thread(self.cache.forget, req.url, req.bitrate)
                return False
        return True

    async def _say(self, req: Request, view: StatusView) -> None:
        await self.lanes(req.chat_id).call(lambda: self.adapter.post_status(req, view))

    # -- following jobs
    async def run(self) -> None:
        """Resume what we still owe, then follow job events forever."""
        while True:
            try:
                await self._resume()
                await self._follow()
            except redis.RedisError as error:
                log.warning("redis unavailable (%s); retrying in 2s", error)
                await asyncio.sleep(2)

    async def _resume(self) -> None:
        raw = await asyncio.to_thread(redis_client().hgetall, keys().pending(self.platform))
        for value in raw.values():
            req = Request(**json.loads(value))
            self.requests[req.id] = req
        if self.requests:
            log.info("resuming %d requests", len(self.requests))

    async def _follow(self) -> None:
        job_ids = sorted({r.job_id for r in self.requests.values()})
        jobs, cursor = await asyncio.to_thread(self.store.snapshot, job_ids)
        for job in jobs:
            self._jobs[job.id] = job
        for job_id in job_ids:
            await self._show(job_id, refresh=False)
        last_refresh = time.monotonic()
        while True:
            events, cursor = await asyncio.to_thread(self.store.read_events, cursor, 1000)
            self._check_alerts()
            for job_id, change in events:
                if change.get("state") == State.QUEUED and not self._wanted(job_id):
                    await self._adopt(job_id)
            changed = {job_id for job_id, _ in events if self._wanted(job_id)}
            for job_id in changed:
                await self._show(job_id)
            if time.monotonic() - last_refresh > QUEUE_REFRESH:
                last_refresh = time.monotonic()
                for job_id in {r.job_id for r in self.requests.values()} - changed:
                    await self._show(job_id, only_queued=True)

    async def _adopt(self, job_id: str) -> None:
        """A job re-run for our users (an admin's retry): answer it like one of ours."""
        for origin in await asyncio.to_thread(self.store.origins, job_id):
            if origin.get("platform") != self.platform or "retry_of" not in origin or "request" not in origin:
                continue
            req = Request(**{**origin["request"], "job_id": job_id, "status": {}})
            job = await asyncio.to_thread(self.store.get, job_id)
            if job is None:
                return
            view = render(job, self.adapter.markup)
            req.status = await self.lanes(req.chat_id).call(lambda r=req, v=view: self.adapter.post_status(r, v))
            self.lanes(req.chat_id).shown(req.id, view)
            await self._remember(req)

    # -- admin alerts: looked at on every turn of the event loop above, delivered beside it
    def _check_alerts(self) -> None:
        if (self._alerting is None or self._alerting.done()) and time.monotonic() >= self._alerts_due:
            self._alerting = asyncio.create_task(self._deliver_alerts())

    async def _deliver_alerts(self) -> None:
        """Each alert once on this platform, to every admin; when none of them could be reached
        (the platform is away), the same alert is tried again a minute later."""
        try:
            for alert_id, alert in await asyncio.to_thread(alerts.unread, self.platform):
                text = alerts.message(alert)
                if text and not await self._tell_admins(text):
                    raise RuntimeError(f"no admin could be reached for alert {alert.get('kind')}")
                await asyncio.to_thread(alerts.delivered, self.platform, alert_id)
        except Exception:
            log.warning("admin alerts not delivered; trying again in %ds", ALERT_RETRY, exc_info=True)
            self._alerts_due = time.monotonic() + ALERT_RETRY

    async def _tell_admins(self, text: str) -> bool:
        """False when there are admins and none of them could be reached (an admin who never
        opened a chat with the bot, or refuses its messages, is skipped)."""
        reached = 0
        for admin_id in self.adapter.admin_ids:
            try:  # in the admin's lane: spaced like every write to that chat, a rate limit waited out
                await self.lanes(admin_id).call(lambda a=admin_id: self.adapter.notify(a, text))
                reached += 1
            except Exception as error:
                log.warning("alert not delivered to admin %s: %s", admin_id, error)
        return reached > 0 or not self.adapter.admin_ids

    def _wanted(self, job_id: str) -> bool:
        return any(r.job_id == job_id for r in self.requests.values())

    async def _show(self, job_id: str, refresh: bool = True, only_queued: bool = False) -> None:
        """Bring every status message of this job up to date, and deliver when it is ready."""
        job = await asyncio.to_thread(self.store.get, job_id) if refresh or job_id not in self._jobs else None
        job = job or self._jobs.get(job_id)
        if job is None:
            return
        self._jobs[job_id] = job
        if only_queued and job.state != State.QUEUED:
            return
        queue = await self._queue_info(job)
        for req in [r for r in self.requests.values() if r.job_id == job_id]:
            if job.state == State.READY:
                self._start_delivery(req, job)
            elif job.state.finished:
                await self._finish(req, render(job, self.adapter.markup))
            else:
                self._edit(req, render(job, self.adapter.markup, queue))

    async def _queue_info(self, job: Job) -> QueueInfo | None:
        if job.state != State.QUEUED:
            return None
        ahead = await asyncio.to_thread(stats.queue_position, job.id)
        workers = await asyncio.to_thread(stats.workers_for, "download")
        return QueueInfo(ahead=ahead, workers=workers)

    def _edit(self, req: Request, view: StatusView) -> None:
        self.lanes(req.chat_id).edit(req.id, view, lambda v: self._saving(req, self.adapter.edit_status(req, v)))

    async def _saving(self, req: Request, call: Awaitable[T]) -> T:
        """Run an adapter call; if it moved the status message, remember where it is now."""
        before = dict(req.status)
        try:
            return await call
        finally:
            if req.status != before and req.id in self.requests:
                await self._remember(req)

    # -- delivering and ending
    def _start_delivery(self, req: Request, job: Job) -> None:
        if req.id in self._delivering:
            return
        self._delivering.add(req.id)
        self._spawn(self._deliver(req, job))

    async def _deliver(self, req: Request, job: Job) -> None:
        try:
            self._edit(req, render(job, self.adapter.markup))
            parts = []
            lane = self.lanes(req.chat_id)
            for number in range(len(job.files)):
                part = await lane.call(lambda n=number: self._saving(req, self.adapter.upload(req, job, n)),
                                      urgent=number == 0)
                parts.append(part)
                metrics.uploaded(self.platform, job.files[number])
            if job.video_key and parts:
                await asyncio.to_thread(self.cache.store, req.url, job.video_key, req.bitrate, parts)
            view = render(Job(**{**asdict(job), "state": State.DELIVERED}), self.adapter.markup)
        except Exception:  # the upload failed: say so, keep nothing
            log.exception("delivery of %s failed", req.id)
            view = StatusView(f"❌ {self.adapter.markup.escape(UPLOAD_FAILED)}")
        try:
            await asyncio.to_thread(mark_delivered, self.store, job, req.id)
            await self._finish(req, view)
        finally:
            self._delivering.discard(req.id)

    async def _finish(self, req: Request, view: StatusView) -> None:
        """The request is answered: last status shown, slot released, nothing left owed."""
        if self.requests.pop(req.id, None) is None:
            return
        self._edit(req, view)
        with contextlib.suppress(MessageGone):
            await self.lanes(req.chat_id).settled()
        self.lanes(req.chat_id).forget(req.id)
        await asyncio.to_thread(self.limits.release, req.user_id, req.id)
        await asyncio.to_thread(redis_client().hdel, keys().pending(self.platform), req.id)

    async def _remember(self, req: Request) -> None:
        self.requests[req.id] = req
        await asyncio.to_thread(redis_client().hset, keys().pending(self.platform), req.id, json.dumps(asdict(req)))

    # -- buttons and commands
    def request_by_status(self, match: dict[str, Any]) -> Request | None:
        """The request whose status message matches (e.g. chat id and message id)."""
        for req in self.requests.values():
            if all(req.status.get(k) == v for k, v in match.items()):
                return req
        return None

    async def cancel(self, req: Request | None, job_id: str, user_id: int, is_admin: bool) -> str:
        """Cancel for the requester or an admin; a job others share goes on for them.

        `req` is our own record of the request whose status message the button is on; the job id
        the button carries must be that request's job, whatever else it says.
        """
        if req is None:
            return ENDED
        if req.job_id != job_id or (user_id != req.user_id and not is_admin):
            return NOT_YOURS
        others = [r for r in self.requests.values() if r.job_id == req.job_id and r.id != req.id]
        origins = await asyncio.to_thread(self.store.origins, req.job_id)
        if others or len(origins) > 1:
            job = await asyncio.to_thread(self.store.get, req.job_id)
            if job:
                await asyncio.to_thread(mark_delivered, self.store, job, req.id)
            await self._finish(req, StatusView("🚫 Cancelled."))
        else:
            await asyncio.to_thread(pipeline.cancel, req.job_id)
            await self._show(req.job_id)
        return "Cancelled."

    async def retry(self, job_id: str, user_id: int, is_admin: bool, chat_id: int,
                    accepted: Callable[[], Awaitable[dict[str, Any]]]) -> str:
        """Run a job's link again for someone who asked for it, or an admin; "" when it runs, else why not.

        Who asked is read from the job's own origins, never from the button: a forged button naming
        another person's job gets nothing. `accepted()` answers the press and says where to reply.
        """
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            return GONE
        if not is_admin and not await self._asked_by(job_id, user_id):
            return NOT_YOURS
        req = self.new_request(job.url, user_id, chat_id, job.bitrate, job.limit_bytes, await accepted())
        await self.take(req)
        return ""

    async def _asked_by(self, job_id: str, user_id: int) -> bool:
        origins = await asyncio.to_thread(self.store.origins, job_id)
        return any(o.get("platform") == self.platform and (o.get("request") or {}).get("user_id") == user_id
                   for o in origins)


def cover_of(job: Job) -> Path | None:
    """The small JPEG cover the worker left beside the MP3s."""
    if not job.files:
        return None
    cover = Path(job.files[0]).parent / "cover.jpg"
    return cover if cover.is_file() else None
