"""Routes (common/routes.py): their order, rests and stale cookie sets, kept in the real Redis, on a test clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import context, routes
from common.errors import Code
from common.keys import Keys
from common.routes import Route, RouteBook
from common.settings import Settings
from tests.cookiefiles import write_cookies
from tests.test_stats import own_keys as own_keys  # a fixture: keys under a prefix of the test's own

PASSWORD = "pr0xy-pa55word"


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
    first = pool.next()
    assert first is not None and first.id == "proxy1+none"
    pool.failed(first, Code.BOT_CHECK)
    second = pool.next([first.id])
    assert second is not None and second.id == "proxy2+none"
    pool.succeeded(second)
    assert ids([pool.next()]) == ["proxy2+none"]  # a new job: the first proxy still rests
    clock.now += 601
    assert ids([pool.next()]) == ["proxy1+none"]  # rested
    figures = {status.route.id: status for status in pool.report()}
    assert (figures["proxy1+none"].failed, figures["proxy1+none"].last_error) == (1, "bot_check")
    assert figures["proxy2+none"].ok == 1 and figures["proxy2+none"].resting == 0
    assert all(PASSWORD not in status.line(clock.now) for status in figures.values())


def test_when_every_route_rests_the_first_to_wake_is_taken_once(own_keys: Keys) -> None:
    clock = Clock()
    pool = book(own_keys, clock, proxy_url=["http://a.test:3128"])
    proxy, direct = routes.all_routes(pool.settings)
    pool.failed(proxy, Code.RATE_LIMITED)
    clock.now += 10
    pool.failed(direct, Code.RATE_LIMITED)
    assert ids([pool.next()]) == ["proxy1+none"]  # a job is never refused for want of a route
    assert pool.next(["proxy1+none"]) is None  # but it gets no second resting one
    status = {s.route.id: s for s in pool.report()}["direct+none"]
    assert status.resting == 600 and "resting for 10 min" in status.line(clock.now)
    pool.succeeded(direct)
    assert ids([pool.next()]) == ["direct+none"]  # a success ends the rest


def test_a_stale_cookie_set_is_skipped_until_its_file_changes(own_keys: Keys, tmp_path: Path) -> None:
    clock = Clock()
    one, two = write_cookies(tmp_path / "one.txt"), write_cookies(tmp_path / "two.txt")
    pool = book(own_keys, clock, cookies_file=[str(one), str(two)])
    first = pool.next()
    assert first is not None and first.id == "direct+cookies1"
    assert pool.mark_stale(str(one), routes.fingerprint(one.read_bytes()))
    assert not pool.mark_stale(str(one), routes.fingerprint(one.read_bytes()))  # told once
    assert ids([pool.next()]) == ["direct+cookies2"]
    assert [s.route.id for s in pool.report() if s.stale] == ["direct+cookies1"]
    assert pool.mark_stale(str(two), routes.fingerprint(two.read_bytes()))
    assert ids([pool.next()]) == ["direct+none"]  # every set stale: without cookies
    write_cookies(one, expires=clock.now + 86400 * 200)  # the admin sent a new file
    assert ids([pool.next()]) == ["direct+cookies1"]


def test_unreadable_or_refused_cookie_files_are_not_routes(own_keys: Keys, tmp_path: Path) -> None:
    clock = Clock()
    present = write_cookies(tmp_path / "present.txt")
    pool = book(own_keys, clock, cookies_file=[str(tmp_path / "gone.txt"), str(present)])
    assert ids([pool.next()]) == ["direct+cookies2"]
    refused = write_cookies(tmp_path / "refused.txt", '[{"name": "SID", "value": "x"}]')  # JSON: yt-dlp refuses it
    pool = book(own_keys, clock, cookies_file=[str(refused), str(present)])
    assert ids([pool.next()]) == ["direct+cookies2"]
