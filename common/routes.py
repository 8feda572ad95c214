"""Routes: the ways out a download can take, and what each has met lately.

A route is a proxy of PROXY_URL (or direct, which counts as one unless PROXY_ONLY) with
a cookie set of COOKIES_FILE (or none). A download that a site refuses for the route's
sake (``common.errors.ROUTE_FAILURES``, or a proxy that fails) is tried again at once
through the next route, cookie set by cookie set, the proxy changing first (the address
is what sites distrust most). A route that failed so rests ``ROUTE_REST`` seconds for
that site (``tasks.sitehold.site_of``: "youtube", or the host): for it, it is taken only
when every route rests. Rests are per site because any site can answer 403: a stranger's
links to one that always does must not put YouTube's routes to rest. A cookie set the
site calls no longer valid is stale and skipped until its file changes: the mark holds
the fingerprint of the content found stale, so a replaced file (``/cookies``) is used
again at once. When every set is stale, downloads go without cookies.

State lives in Redis (key names in ``common.keys``): per route its counters, last error,
last outcomes and rests (site -> end); the stale marks. ``report`` gives the figures the doctor,
/health and the Prometheus exporter show. Proxy URLs carry passwords: only ``Route.proxy``
holds one, for yt-dlp; every name, log line and figure uses ``mask``.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.typing import EncodableT, FieldT

from common import cookies, metrics
from common.i18n import N_, Msg
from common.keys import Keys
from common.redisio import scored, text
from common.settings import Settings

RECENT = 20  # outcomes kept per route
SHOWN_SITES = 3  # a route's rests named in its line; the rest counted
IDLE_TTL = 30 * 86400  # the state of a route unused this long (taken out of the settings) goes
DIRECT, NO_COOKIES = "direct", "none"


def mask(url: str) -> str:
    """A proxy URL without its credentials: ``http://***@host:port`` (or as it was, when it has none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` with every credential of these proxy URLs replaced by ``***`` (raw and URL-decoded)."""
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        secrets = {userinfo, parts.password or "", urllib.parse.unquote(parts.password or "")}
        for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
            text = text.replace(secret, "***")
    return text


def fingerprint(data: bytes) -> str:
    """Identifies a cookie file's content (says nothing about the values)."""
    return hashlib.sha256(data).hexdigest()[:16]


def _file_fingerprint(path: str) -> str | None:
    try:
        return fingerprint(Path(path).read_bytes())
    except OSError:
        return None


def _loadable(path: str) -> bool:
    """The cookie file can be read and yt-dlp would load it (the start-up checks and the doctor say why not)."""
    try:
        cookies.for_ytdlp(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Route:
    proxy_id: str  # "proxy1", "proxy2"... or "direct"
    proxy: str | None  # the proxy URL, password and all: for yt-dlp only
    cookies_id: str  # "cookies1"... or "none"
    cookies: str | None  # the cookie file's path

    @property
    def id(self) -> str:
        """``proxy1+cookies2``: the route's key in Redis and its Prometheus label."""
        return f"{self.proxy_id}+{self.cookies_id}"

    @property
    def name(self) -> str:
        """For people and logs: ``proxy1 (http://***@host:3128) with cookies1 (/path/cookies.txt)``."""
        way = f"{self.proxy_id} ({mask(self.proxy)})" if self.proxy else DIRECT
        return f"{way} with {self.cookies_id} ({self.cookies})" if self.cookies else f"{way} without cookies"


def proxies(settings: Settings) -> list[tuple[str, str | None]]:
    """The proxy side of the routes, in order: ``[("proxy1", url), ..., ("direct", None)]``."""
    found: list[tuple[str, str | None]] = [(f"proxy{i}", url) for i, url in enumerate(settings.proxy_url, 1)]
    if not settings.proxy_only:
        found.append((DIRECT, None))
    return found


def cookie_sets(settings: Settings) -> list[tuple[str, str]]:
    """``[("cookies1", path), ...]`` in COOKIES_FILE's order."""
    return [(f"cookies{i}", path) for i, path in enumerate(settings.cookies_file, 1)]


def all_routes(settings: Settings) -> list[Route]:
    """Every route the settings make, cookie set by cookie set, the proxy changing first; without cookies last."""
    sets: list[tuple[str, str | None]] = [*cookie_sets(settings), (NO_COOKIES, None)]
    return [Route(pid, proxy, cid, path) for cid, path in sets for pid, proxy in proxies(settings)]


@dataclass(frozen=True)
class RouteStatus:
    """A route's figures: its last outcomes, its last error, its rest."""

    route: Route
    ok: int = 0  # successes among the last RECENT outcomes
    failed: int = 0
    last_error: str = ""
    last_failed: float | None = None
    rests: tuple[tuple[str, float], ...] = ()  # (site, seconds left), the longest first
    stale: bool = False  # its cookie set is stale

    @property
    def resting(self) -> float:
        """Seconds until the route is used again for every site."""
        return self.rests[0][1] if self.rests else 0.0

    def said(self, now: float | None = None) -> Msg:
        """The route's story in a line, said in its reader's language (`line()` in English)."""
        now = time.time() if now is None else now
        tries = self.ok + self.failed
        facts = [Msg.ngettext("%(ok)s ok, %(failed)s failed of the last %(n)s",
                              "%(ok)s ok, %(failed)s failed of the last %(n)s", tries, ok=self.ok, failed=self.failed)]
        if self.last_error and self.last_failed:
            facts.append(Msg(N_("last failure %(error)s %(ago)s ago"), error=self.last_error,
                             ago=_span(now - self.last_failed)))
        if self.rests:
            sites = [Msg(N_("for %(time)s for %(site)s"), time=_span(left), site=site)
                     for site, left in self.rests[:SHOWN_SITES]]
            more = len(self.rests) - SHOWN_SITES
            if more > 0:
                sites.append(Msg.ngettext("and %(n)s more site", "and %(n)s more sites", more))
            facts.append(Msg(N_("resting %(sites)s"), sites=sites))
        if self.stale:
            facts.append(Msg(N_("cookies stale: refresh them with /cookies")))
        return Msg(N_("%(route)s: %(facts)s"), route=self.route.name, facts=facts)

    def line(self, now: float | None = None) -> str:
        return self.said(now).english()


def _span(seconds: float) -> Msg:
    """Minutes, or hours and minutes: "5 min", "1 h 5 min"."""
    minutes = max(int(seconds // 60), 0)
    if minutes < 60:
        return Msg.ngettext("%(n)s min", "%(n)s min", minutes)
    return Msg(N_("%(hours)s h %(minutes)s min"), hours=minutes // 60, minutes=minutes % 60)


class RouteBook:
    """Chooses the route of each try and keeps what happened, in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.keys = keys
        self.settings = settings
        self.clock = clock

    # -- choosing

    def stale(self) -> set[str]:
        """Paths of the cookie sets whose file still holds the content found stale."""
        marks = self.redis.hgetall(self.keys.stale_cookies)
        found = set()
        for raw_path, raw in marks.items():
            path = text(raw_path)
            if json.loads(raw).get("fingerprint") == _file_fingerprint(path):
                found.add(path)
        return found

    def usable_cookies(self) -> list[tuple[str, str | None]]:
        """The cookie sets to use now (loadable, not stale), or only "none" when there is none."""
        stale = self.stale()
        sets: list[tuple[str, str | None]] = [(cid, path) for cid, path in cookie_sets(self.settings)
                                              if path not in stale and _loadable(path)]
        return sets or [(NO_COOKIES, None)]

    def next(self, site: str, tried: Collection[str] = ()) -> Route | None:
        """The route for the next try of a download from `site`, or None when the job has had its tries.

        The first route in order that does not rest for the site; at a job's first try, when every
        route rests, the one whose rest ends first (a download is never refused for want of a route).
        """
        candidates = [Route(pid, proxy, cid, path) for cid, path in self.usable_cookies()
                      for pid, proxy in proxies(self.settings)]
        candidates = [route for route in candidates if route.id not in tried]
        if not candidates:
            return None
        rests = self._rests(candidates, site)
        now = self.clock()
        awake = [route for route in candidates if rests[route.id] <= now]
        if awake:
            return awake[0]
        return None if tried else min(candidates, key=lambda route: rests[route.id])

    def _rests(self, routes: list[Route], site: str) -> dict[str, float]:
        """When each route's rest for the site ends (0: it does not rest)."""
        pipe = self.redis.pipeline(transaction=False)
        for route in routes:
            pipe.zscore(self.keys.route_rests(route.id), site)
        return {route.id: float(raw or 0) for route, raw in zip(routes, pipe.execute(), strict=True)}

    # -- keeping

    def succeeded(self, route: Route, site: str) -> None:
        """The route carried a download from the site: its rest for the site (if it had one) ends."""
        self._outcome(route, "ok", {"last_ok": self.clock()}, "ok", site, rest=False)

    def failed(self, route: Route, code: str, site: str) -> None:
        """The site refused the route (or its proxy failed): it rests ROUTE_REST seconds for that site."""
        self._outcome(route, "failed", {"last_failed": self.clock(), "last_error": code}, code, site, rest=True)

    def _outcome(self, route: Route, counter: str, fields: Mapping[FieldT, EncodableT], outcome: str, site: str,
                 rest: bool) -> None:
        key, recent = self.keys.route(route.id), self.keys.route_recent(route.id)
        rests = self.keys.route_rests(route.id)
        now = self.clock()
        pipe = self.redis.pipeline()
        pipe.hincrby(key, counter, 1)
        pipe.hset(key, mapping=fields)
        pipe.lpush(recent, f"{now:.0f} {outcome}")
        pipe.ltrim(recent, 0, RECENT - 1)
        pipe.zremrangebyscore(rests, "-inf", now)  # rests that are over go: the set holds the sites resting now
        if rest:
            pipe.zadd(rests, {site: now + self.settings.route_rest})
            pipe.expire(rests, max(1, round(self.settings.route_rest)))  # outlives none of its entries
        else:
            pipe.zrem(rests, site)
        pipe.expire(key, IDLE_TTL)
        pipe.expire(recent, IDLE_TTL)
        pipe.execute()
        metrics.count("ytmp3_route_tries_total", route=route.id, outcome=outcome)

    def mark_stale(self, path: str, content_fingerprint: str) -> bool:
        """The site called this cookie content no longer valid; True when it was not known stale yet."""
        old = self.redis.hget(self.keys.stale_cookies, path)
        if old is not None and json.loads(old).get("fingerprint") == content_fingerprint:
            return False
        mark = {"fingerprint": content_fingerprint, "since": self.clock()}
        self.redis.hset(self.keys.stale_cookies, path, json.dumps(mark))
        return True

    # -- figures

    def report(self) -> list[RouteStatus]:
        """Every route of the settings with its figures (read in one round trip)."""
        routes = all_routes(self.settings)
        pipe = self.redis.pipeline(transaction=False)
        now = self.clock()
        for route in routes:
            pipe.hgetall(self.keys.route(route.id))
            pipe.lrange(self.keys.route_recent(route.id), 0, RECENT - 1)
            pipe.zrevrangebyscore(self.keys.route_rests(route.id), "+inf", f"({now}", withscores=True)
        replies = pipe.execute()
        stale = self.stale()
        found = []
        for i, route in enumerate(routes):
            state = {k.decode(): v.decode() for k, v in replies[3 * i].items()}
            outcomes = [entry.decode().partition(" ")[2] for entry in replies[3 * i + 1]]
            ok = outcomes.count("ok")
            found.append(RouteStatus(
                route, ok=ok, failed=len(outcomes) - ok, last_error=state.get("last_error", ""),
                last_failed=float(state["last_failed"]) if "last_failed" in state else None,
                rests=tuple((site, until - now) for site, until in scored(replies[3 * i + 2])),
                stale=route.cookies in stale))
        return [status for status in found if status.route.cookies_id != NO_COOKIES or status.ok + status.failed
                or not self.settings.cookies_file]
