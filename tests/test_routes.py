"""Routes (common/routes.py): their order, rests and stale cookie sets, kept in the real Redis, on a test clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import context, routes
from common.errors import Code
from common.keys import Keys
from common.routes import Route, RouteBook
from common.settings import Settings
from tasks import doctor
from tests.cookiefiles import write_cookies
from tests.test_stats import own_keys as own_keys  # a fixture: keys under a prefix of the test's own

PASSWORD = "pr0xy-pa55word"
SITE = "youtube"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def book(keys: Keys, clock: Clock, **settings: object) -> RouteBook:
    return RouteBook(context.redis_client(), keys, Settings(route_rest=600, **settings), clock)  # type: ignore[arg-type]


def ids(found: list[Route]) -> list[str]:
    return [route.id for route in found]


def test_routes_change_proxy_first_and_direct_counts_as_one(tmp_path: Path) -> None:
    one, two = write_cookies(tmp_path / "one.txt"), write_cookies(tmp_path / "two.txt")
    pool = ["http://u:p@a.test:3128", "socks5://b.test:1080"]
    settings = Settings(proxy_url=pool, cookies_file=[str(one), str(two)])
    assert ids(routes.all_routes(settings)) == [
        "proxy1+cookies1", "proxy2+cookies1", "direct+cookies1", "proxy1+cookies2", "proxy2+cookies2",
        "direct+cookies2", "proxy1+none", "proxy2+none", "direct+none"]
    assert ids(routes.all_routes(Settings(proxy_url=pool, proxy_only=True)))[:2] == ["proxy1+none", "proxy2+none"]
    assert "direct+none" not in ids(routes.all_routes(Settings(proxy_url=pool, proxy_only=True)))
    assert ids(routes.all_routes(Settings())) == ["direct+none"]
    with pytest.raises(ValueError, match="proxy_only needs"):
        Settings(proxy_only=True)


def test_names_and_figures_never_show_a_proxy_password() -> None:
    url = f"http://user-session-1:{PASSWORD}@gate.example:7000"
    route = Route("proxy1", url, "none", None)
    assert routes.mask(url) == "http://***@gate.example:7000"
    assert routes.mask("socks5://gate.example:1080") == "socks5://gate.example:1080"
    assert PASSWORD not in route.name and "user-session-1" not in route.name
    text = f"ProxyError: {url} said no; password {PASSWORD}; encoded {PASSWORD.replace('-', '%2D')}"
    scrubbed = routes.scrub(text, [url, "http://a%2Db:c%3Dd@x:1"])
    assert PASSWORD not in scrubbed and "user-session-1" not in scrubbed
    assert routes.scrub("a%2Db:c%3Dd@x and c=d", ["http://a%2Db:c%3Dd@x:1"]) == "***@x and ***"


def test_a_failed_route_rests_and_the_next_one_is_taken(own_keys: Keys) -> None:
    clock = Clock()
    pool = book(own_keys, clock, proxy_url=[f"http://u:{PASSWORD}@a.test:3128", "http://b.test:3128"])
    first = pool.next(SITE)
    assert first is not None and first.id == "proxy1+none"
    pool.failed(first, Code.BOT_CHECK, SITE)
    second = pool.next(SITE, [first.id])
    assert second is not None and second.id == "proxy2+none"
    pool.succeeded(second, SITE)
    assert ids([pool.next(SITE)]) == ["proxy2+none"]  # a new job: the first proxy still rests
    clock.now += 601
    assert ids([pool.next(SITE)]) == ["proxy1+none"]  # rested
    figures = {status.route.id: status for status in pool.report()}
    assert (figures["proxy1+none"].failed, figures["proxy1+none"].last_error) == (1, "bot_check")
    assert figures["proxy2+none"].ok == 1 and figures["proxy2+none"].resting == 0
    assert all(PASSWORD not in status.line(clock.now) for status in figures.values())


def test_when_every_route_rests_the_first_to_wake_is_taken_once(own_keys: Keys) -> None:
    clock = Clock()
    pool = book(own_keys, clock, proxy_url=["http://a.test:3128"])
    proxy, direct = routes.all_routes(pool.settings)
    pool.failed(proxy, Code.RATE_LIMITED, SITE)
    clock.now += 10
    pool.failed(direct, Code.RATE_LIMITED, SITE)
    assert ids([pool.next(SITE)]) == ["proxy1+none"]  # a job is never refused for want of a route
    assert pool.next(SITE, ["proxy1+none"]) is None  # but it gets no second resting one
    status = {s.route.id: s for s in pool.report()}["direct+none"]
    assert status.resting == 600 and "resting for 10 min for youtube" in status.line(clock.now)
    pool.succeeded(direct, SITE)
    assert ids([pool.next(SITE)]) == ["direct+none"]  # a success ends the rest


def test_a_route_rests_only_for_the_site_that_refused_it(own_keys: Keys) -> None:
    """Any site can answer 403: one that always does (a stranger's links) rests the routes for itself only."""
    clock = Clock()
    pool = book(own_keys, clock, proxy_url=["http://a.test:3128"])
    for _ in range(20):
        for route in routes.all_routes(pool.settings):
            pool.failed(route, Code.REFUSED, "refuses.example")
    assert pool.next("refuses.example", ["proxy1+none"]) is None  # its jobs get one try
    assert ids([pool.next(SITE)]) == ["proxy1+none"]
    assert ids([pool.next(SITE, ["proxy1+none"])]) == ["direct+none"]  # YouTube's failover is whole
    for site in ("a.example", "b.example", "c.example"):
        clock.now += 60
        pool.failed(routes.all_routes(pool.settings)[0], Code.REFUSED, site)
    line = {s.route.id: s for s in pool.report()}["proxy1+none"].line(clock.now)
    assert "resting for 10 min for c.example; for 9 min for b.example; for 8 min for a.example; and 1 more site" \
        in line
    clock.now += 601
    assert {s.route.id: s.rests for s in pool.report()} == {"proxy1+none": (), "direct+none": ()}


def test_the_doctor_names_the_sites_every_route_rests_for(own_keys: Keys, test_env: dict[str, str]) -> None:
    settings = Settings(proxy_url=["http://a.test:3128"], route_rest=600, redis_url=test_env["REDIS_URL"],
                        key_prefix=own_keys.prefix)
    pool = RouteBook(context.redis_client(), own_keys, settings)
    proxy, direct = routes.all_routes(settings)
    pool.failed(proxy, Code.BOT_CHECK, SITE)
    pool.failed(proxy, Code.REFUSED, "refuses.example")
    assert doctor.routes(settings, timeout=3).problems == []  # direct still carries both
    pool.failed(direct, Code.REFUSED, "refuses.example")
    assert [problem.english() for problem in doctor.routes(settings, timeout=3).problems] == [
        "every download route rests for refuses.example after failures (bot checks, refusals): each download from "
        "there gets one try until one recovers; add proxies to PROXY_URL or refresh the cookies"]


def test_a_stale_cookie_set_is_skipped_until_its_file_changes(own_keys: Keys, tmp_path: Path) -> None:
    clock = Clock()
    one, two = write_cookies(tmp_path / "one.txt"), write_cookies(tmp_path / "two.txt")
    pool = book(own_keys, clock, cookies_file=[str(one), str(two)])
    first = pool.next(SITE)
    assert first is not None and first.id == "direct+cookies1"
    assert pool.mark_stale(str(one), routes.fingerprint(one.read_bytes()))
    assert not pool.mark_stale(str(one), routes.fingerprint(one.read_bytes()))  # told once
    assert ids([pool.next(SITE)]) == ["direct+cookies2"]
    assert [s.route.id for s in pool.report() if s.stale] == ["direct+cookies1"]
    assert pool.mark_stale(str(two), routes.fingerprint(two.read_bytes()))
    assert ids([pool.next(SITE)]) == ["direct+none"]  # every set stale: without cookies
    write_cookies(one, expires=clock.now + 86400 * 200)  # the admin sent a new file
    assert ids([pool.next(SITE)]) == ["direct+cookies1"]


def test_unreadable_or_refused_cookie_files_are_not_routes(own_keys: Keys, tmp_path: Path) -> None:
    clock = Clock()
    present = write_cookies(tmp_path / "present.txt")
    pool = book(own_keys, clock, cookies_file=[str(tmp_path / "gone.txt"), str(present)])
    assert ids([pool.next(SITE)]) == ["direct+cookies2"]
    refused = write_cookies(tmp_path / "refused.txt", '[{"name": "SID", "value": "x"}]')  # JSON: yt-dlp refuses it
    pool = book(own_keys, clock, cookies_file=[str(refused), str(present)])
    assert ids([pool.next(SITE)]) == ["direct+cookies2"]
