"""Routes through a real worker: a pool of two recording proxies, a cookie file, a PO-token provider.

One prefork worker of its own (its own key prefix, so its own queues) downloads with
PROXY_URL = a proxy that answers every request 403, then a good one (both asking for a
password), COOKIES_FILE and POT_PROVIDER_URL. The tests run in order: the first job meets
the 403 and fails over; the refusing proxy then rests.
"""

from __future__ import annotations

import http.cookies
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from common import context, metrics
from common.errors import Code
from common.jobs import Job, State
from common.routes import RouteBook, RouteStatus
from common.settings import get_settings
from tasks import exporter, pipeline
from tests.conftest import ROOT, YTDLP_PLUGINS, connections, origin, start_worker, stop_process, use_prefix, wait_job
from tests.cookiefiles import HEADER, SECRET, cookies_text
from tests.media import PRIVATE_COOKIE, MediaServer
from tests.services import FakePotProvider, RecordingProxy

PASSWORD = "pr0xy-pa55word"
STRANGER_COOKIE = "ytmp3_elsewhere"  # a cookie of another site in the same file: must never reach ours
SET_COOKIE = "ytmp3_set"


@dataclass
class Routed:
    env: dict[str, str]
    refusing: RecordingProxy
    good: RecordingProxy
    pot: FakePotProvider
    cookies: Path
    second: Path
    log: Path

    def report(self) -> dict[str, RouteStatus]:
        book = RouteBook(context.redis_client(), context.keys(), get_settings())
        return {status.route.id: status for status in book.report()}


def cookie_file(path: Path, which: str, youtube_login: bool) -> Path:
    """A cookie set for the media server (``ytmp3_set`` says which), another site's, and maybe a YouTube sign-in."""
    name, value = PRIVATE_COOKIE
    youtube = cookies_text(login=True).removeprefix(HEADER) if youtube_login else ""
    path.write_text(HEADER + f"127.0.0.1\tFALSE\t/\tFALSE\t0\t{name}\t{value}\n"
                    f"127.0.0.1\tFALSE\t/\tFALSE\t0\t{SET_COOKIE}\t{which}\n"
                    f".example.com\tTRUE\t/\tFALSE\t0\t{STRANGER_COOKIE}\t{SECRET}-elsewhere\n"
                    f"127.0.0.1\tFALSE\t/\tFALSE\tsoon\t{name}\t{SECRET}-malformed\n" + youtube)
    path.chmod(0o600)
    return path


def sets_sent(media: MediaServer, prefix: str) -> list[str]:
    """Which cookie set (``ytmp3_set``) each request to paths starting so carried, in order."""
    found = []
    for request in media.requests_for(prefix):
        jar = http.cookies.SimpleCookie(request.headers.get("Cookie", ""))
        found.append(jar[SET_COOKIE].value if SET_COOKIE in jar else "")
    return found


@pytest.fixture(scope="module")
def routed(test_env: dict[str, str], media: MediaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    folder = tmp_path_factory.mktemp("routes")
    refusing = RecordingProxy(refuse_status=403, auth=("user", PASSWORD))
    good = RecordingProxy(auth=("user", PASSWORD))
    with refusing, good, FakePotProvider() as pot, pytest.MonkeyPatch.context() as patch:
        first = cookie_file(folder / "cookies.txt", "one", youtube_login=False)
        second = cookie_file(folder / "second.txt", "two", youtube_login=True)
        plugins = os.pathsep.join(filter(None, [str(YTDLP_PLUGINS), os.environ.get("PYTHONPATH")]))
        env = {**test_env, "KEY_PREFIX": f"{test_env['KEY_PREFIX']}routes{uuid.uuid4().hex[:4]}:",
               "PROXY_URL": f"{refusing.url},{good.url}", "COOKIES_FILE": f"{first},{second}",
               "POT_PROVIDER_URL": pot.url, "ROUTE_REST": "3600", "PYTHONPATH": plugins}
        for key, value in env.items():
            patch.setenv(key, value)
        use_prefix(env["KEY_PREFIX"])
        log = folder / "worker.log"
        proc = start_worker(env, log, name="routes")
        try:
            yield Routed(env, refusing, good, pot, first, second, log)
        finally:
            stop_process(proc)
            client = context.redis_client()
            doomed = list(client.scan_iter(f"{env['KEY_PREFIX']}*"))
            if doomed:
                client.delete(*doomed)
            patch.undo()
            use_prefix(test_env["KEY_PREFIX"])


def run(url: str) -> Job:
    job_id, _ = pipeline.submit(url, origin=origin())
    return wait_job(job_id, timeout=90)


def everything_kept(job: Job, routed: Routed) -> str:
    """What the job left in Redis and the worker's log, as text."""
    store = context.store()
    letters = context.redis_client().lrange(context.keys().dead, 0, -1)
    record = {k.decode(): v.decode() for k, v in store.redis.hgetall(store.keys.job(job.id)).items()}
    return "\n".join([json.dumps(record),
                      json.dumps(store.history(job.id)), *(raw.decode() for raw in letters), routed.log.read_text()])


def test_a_refusing_proxy_fails_over_to_the_next_and_rests(routed: Routed, media: MediaServer) -> None:
    assert routed.report()["proxy1+cookies1"].ok + routed.report()["proxy1+cookies1"].failed == 0
    job = run(media.media_url("opus.webm") + "?n=failover")
    assert job.state == State.READY, job.error_text
    assert MP3(job.files[0]).info.length > 7
    assert len(routed.refusing.asked) == 1 and routed.refusing.asked[0].startswith(f"GET {media.base_url}/media/")
    assert routed.good.asked and all(media.base_url in line for line in routed.good.asked)
    history = [change for _, change in context.store().history(job.id)]
    assert not any(change.get("state") == State.FAILED or "Trying again" in change.get("message", "")
                   for change in history)  # the user saw none of it
    figures = routed.report()
    first, second = figures["proxy1+cookies1"], figures["proxy2+cookies1"]
    assert (first.failed, first.last_error, second.ok) == (1, Code.REFUSED, 1)
    assert 3500 < first.resting <= 3600 and "resting for 59 min for 127.0.0.1" in first.line()
    tries = metrics.read(context.redis_client(), context.keys())["ytmp3_route_tries_total"]
    assert tries[(("outcome", "refused"), ("route", "proxy1+cookies1"))] == 1
    assert tries[(("outcome", "ok"), ("route", "proxy2+cookies1"))] == 1
    scraped = list(exporter.RedisCollector(context.redis_client(), context.keys(), get_settings()).collect())
    resting = next(family for family in scraped if family.name == "ytmp3_route_resting")
    assert {s.labels["route"]: s.value for s in resting.samples}["proxy1+cookies1"] == 1

    asked = len(routed.good.asked)
    again = run(media.media_url("opus.webm") + "?n=rested")  # the first proxy rests: not asked again
    assert again.state == State.READY and len(routed.refusing.asked) == 1 and len(routed.good.asked) > asked
    kept = everything_kept(job, routed) + everything_kept(again, routed) + "\n".join(s.line() for s in figures.values())
    assert f"refused through proxy1 (http://***@127.0.0.1:{routed.refusing.port})" in kept  # the log names it, masked
    assert PASSWORD not in kept


def test_the_doctor_shows_each_route_and_never_a_password(routed: Routed) -> None:
    """`python -m tasks doctor` (what /health shows admins) after the failover above.

    A deployment with all YouTube needs (provider, cookies, proxies, workers) passes: exit 0.
    """
    result = subprocess.run([sys.executable, "-m", "tasks", "doctor"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **routed.env}, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"PO tokens   {routed.pot.url} answers") for line in lines), result.stdout
    first = f"routes      proxy1 (http://***@127.0.0.1:{routed.refusing.port}) with cookies1 ({routed.cookies}): "
    assert any(line.startswith(first + "0 ok, 1 failed of the last 1; last failure refused") and "resting for 59 min"
               in line for line in lines), result.stdout
    assert any(f"proxy2 (http://***@127.0.0.1:{routed.good.port}) with cookies1" in line and ": 2 ok" in line
               for line in lines), result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_cookies_go_to_their_own_site_only_and_the_file_stays_untouched(routed: Routed, media: MediaServer) -> None:
    before = routed.cookies.read_bytes(), routed.second.read_bytes()
    with ThreadPoolExecutor(4) as pool:
        jobs = list(pool.map(run, [media.url("/private/opus.webm", n=f"cookie{i}") for i in range(4)]))
    assert [job.state for job in jobs] == [State.READY] * 4, [job.error_text for job in jobs]
    assert (routed.cookies.read_bytes(), routed.second.read_bytes()) == before  # yt-dlp wrote into its own copies
    assert set(sets_sent(media, "/private/opus.webm?n=cookie")) == {"one"}
    name, value = PRIVATE_COOKIE
    sent = [r.headers.get("Cookie", "") for r in media.requests_for("/private/") if "n=cookie" in r.path]
    assert sent and all(f"{name}={value}" in cookie for cookie in sent)
    assert not any(STRANGER_COOKIE in r.headers.get("Cookie", "") for r in media.requests)
    for job in jobs:
        assert not (Path(routed.env["TEMP_DIR"]) / job.id).exists()  # the copy went with the job's files
        assert value not in everything_kept(job, routed) and SECRET not in everything_kept(job, routed)


def test_an_inside_link_is_refused_without_asking_the_proxy(routed: Routed, media: MediaServer,
                                                            listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    asked = len(routed.good.asked), len(routed.refusing.asked)
    pinged = routed.pot.seen  # the worker's start-up check (the doctor) pings the provider
    for link in (f"http://localhost:{port}/a.webm", f"http://localhost:{routed.pot.port}/ping"):
        job = run(link)
        assert (job.state, job.error_code) == (State.FAILED, Code.NOT_ALLOWED), link
    assert (len(routed.good.asked), len(routed.refusing.asked)) == asked
    job = run(media.redirect_url(f"http://localhost:{port}/a.webm"))
    assert job.error_code == Code.NOT_ALLOWED
    assert len(routed.good.asked) == asked[0] + 1  # the redirect itself, not where it points
    assert connections(listener) == 0 and routed.pot.seen == pinged


def test_a_cookie_set_the_site_calls_rotated_is_skipped_for_the_next(routed: Routed, media: MediaServer) -> None:
    """It leaves every route resting for YouTube. YouTube's answers come from the tests' yt-dlp plugin."""
    refused = {"playabilityStatus": {"status": "LOGIN_REQUIRED", "reason": "Sign in to confirm you\u2019re not a bot"},
               "videoDetails": {"videoId": "refused", "title": "A video"}}
    rotated = media.register_youtube(f"rotated-{uuid.uuid4().hex[:6]}",
                                     {"player_response": refused, "environment": {"cookies_rotated": True}})
    job = run(rotated)
    # With the first set (through proxy2: proxy1 refuses, its 403 never reaching the site; its rest for 127.0.0.1
    # does not count for YouTube) YouTube found the sign-in rotated away; the second set is signed in, and every
    # route with it meets the bot check: proxy1 (403), proxy2, direct.
    # The fake YouTube asks twice per try (the rotation shows on the second request).
    assert (job.state, job.error_code) == (State.FAILED, Code.BOT_CHECK), job.error_text
    assert sets_sent(media, rotated.removeprefix(media.base_url)) == ["one", "one", "two", "two", "two", "two"]
    figures = routed.report()
    assert [figures[route].last_error for route in ("proxy1+cookies1", "proxy1+cookies2", "proxy2+cookies2",
                                                    "direct+cookies2")] == [
        Code.REFUSED, Code.REFUSED, Code.BOT_CHECK, Code.BOT_CHECK]
    assert figures["proxy2+cookies1"].stale and figures["proxy2+cookies1"].last_error == Code.COOKIES_EXPIRED
    assert not figures["proxy2+cookies2"].stale
    kinds = [fields[b"kind"] for _, fields in context.redis_client().xrange(context.keys().alerts)]
    assert kinds.count(b"cookies_expired") == 1

    wake_up(figures)  # an hour on: every rest is over (the stale mark is not)
    plain = media.register_youtube(f"plain-{uuid.uuid4().hex[:6]}", {"player_response": refused})
    assert run(plain).error_code == Code.BOT_CHECK
    assert sets_sent(media, plain.removeprefix(media.base_url)) == ["two", "two"]  # the stale set is skipped
    result = subprocess.run([sys.executable, "-m", "tasks", "doctor"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **routed.env}, timeout=120)
    assert (f"- cookies {routed.cookies}: the site called this sign-in no longer valid, so it is skipped: "
            "send a fresh export with /cookies") in result.stdout

    routed.cookies.write_text(routed.cookies.read_text() + "# exported again\n")  # a new file: used again
    assert not routed.report()["proxy2+cookies1"].stale


def test_a_site_that_refuses_everything_rests_the_routes_for_itself_only(routed: Routed, media: MediaServer) -> None:
    """A stranger's links to a site that answers every request 403 do not put YouTube's routes to rest."""
    wake_up(routed.report())
    for n in range(3):
        job = run(media.url("/status/403/song.webm", n=f"hostile{n}"))
        assert (job.state, job.error_code) == (State.FAILED, Code.REFUSED)
    figures = routed.report()
    assert all("resting for 59 min for 127.0.0.1" in status.line() for status in figures.values()), figures
    asked = len(routed.refusing.asked)
    plain = media.register_youtube(f"after-{uuid.uuid4().hex[:6]}", {"player_response": {
        "playabilityStatus": {"status": "LOGIN_REQUIRED", "reason": "Sign in to confirm you\u2019re not a bot"},
        "videoDetails": {"videoId": "refused", "title": "A video"}}})
    assert run(plain).error_code == Code.BOT_CHECK
    # Every route was tried for YouTube: proxy1 (which refuses it), then proxy2 and direct with each cookie set.
    assert sets_sent(media, plain.removeprefix(media.base_url)) == ["one", "one", "two", "two"]
    assert len(routed.refusing.asked) == asked + 2


def wake_up(figures: dict[str, RouteStatus]) -> None:
    """Every route's rests are over, as an hour later."""
    context.redis_client().delete(*(context.keys().route_rests(route) for route in figures))
