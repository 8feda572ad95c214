"""The URL guard through the real pipeline: a prefork worker, real yt-dlp, the media server on 127.0.0.1.

The media server's host:port is the only allowlisted destination (``NETWORK_ALLOWLIST`` of the test
environment). Every link below reaches, or is redirected to, somewhere else on this machine, or is
no web link at all: each job must end FAILED ``not_allowed`` at once (no retry), with a plain
sentence for the user, no file left behind and no connection made to the forbidden place.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from common import context, urlguard
from common.errors import TEXT, Code
from common.jobs import Job, State
from tasks import lifecycle, pipeline
from tests.conftest import connections, origin, wait_job
from tests.media import MediaServer

pytestmark = pytest.mark.usefixtures("worker")

PRIVATE_TEXT = urlguard.USER_TEXT[urlguard.PRIVATE]
SCHEME_TEXT = urlguard.USER_TEXT[urlguard.SCHEME]


def tag() -> str:
    return uuid.uuid4().hex


def refused(url: str, env: dict[str, str], text: str) -> tuple[Job, dict]:
    """Submit, wait, and check everything a refusal promises; return the job and its dead letter."""
    job_id, joined = pipeline.submit(url, origin=origin())
    assert not joined
    job = wait_job(job_id, timeout=30)
    assert job.state == State.FAILED, (job.state, job.error_text)
    assert job.error_code == Code.NOT_ALLOWED
    assert job.error_text == text
    assert not job.retryable
    for leak in ("127.0.0.1", "localhost", "6379", "Traceback", "/etc/passwd"):
        assert leak not in job.error_text
    # No retry: the download stage started once and never said it would try again.
    history = [change for _, change in context.store().history(job_id)]
    assert [c["state"] for c in history if c.get("state") == State.DOWNLOADING] == [State.DOWNLOADING]
    assert not any("Trying again" in c.get("message", "") for c in history)
    assert not any(c.get("state") == State.CONVERTING for c in history)
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    assert not (Path(env["STORAGE_DIR"]) / job_id).exists()
    letters = [json.loads(raw) for raw in context.redis_client().lrange(context.keys().dead, 0, 100)]
    letter = next(item for item in letters if item["job_id"] == job_id)
    assert letter["code"] == Code.NOT_ALLOWED and letter["task"] == "tasks.download"
    return job, letter


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "0x7f000001", "[::ffff:127.0.0.1]"])
def test_redirect_to_another_local_port_is_refused_before_connecting(
    media: MediaServer, listener: socket.socket, test_env: dict[str, str], host: str
) -> None:
    n = tag()
    target = f"http://{host}:{listener.getsockname()[1]}/song.webm"
    _, letter = refused(media.redirect_url(target) + f"&n={n}", test_env, PRIVATE_TEXT)
    assert [r.status for r in media.requests_for("/redirect") if n in r.path] == [302]  # the first hop was fine
    assert connections(listener) == 0
    assert f":{listener.getsockname()[1]}" in letter["error"]  # the log names the refused hop


def test_redirect_to_the_redis_port_is_refused(media: MediaServer, test_env: dict[str, str]) -> None:
    redis_port = urlparse(test_env["REDIS_URL"]).port or 6379
    n = tag()
    _, letter = refused(media.redirect_url(f"http://127.0.0.1:{redis_port}/x.webm") + f"&n={n}",
                        test_env, PRIVATE_TEXT)
    assert f"127.0.0.1:{redis_port} -> 127.0.0.1" in letter["error"]
    assert [r.status for r in media.requests_for("/redirect") if n in r.path] == [302]


def test_redirect_to_a_file_link_is_refused(media: MediaServer, test_env: dict[str, str]) -> None:
    refused(media.redirect_url("file:///etc/passwd") + f"&n={tag()}", test_env, SCHEME_TEXT)


def test_media_url_on_a_page_pointing_inside_is_refused(
    media: MediaServer, listener: socket.socket, test_env: dict[str, str]
) -> None:
    page = media.register_page(f"inside-{tag()[:8]}", file=f"http://127.0.0.1:{listener.getsockname()[1]}/a.webm")
    refused(page, test_env, PRIVATE_TEXT)
    assert connections(listener) == 0


def test_thumbnail_pointing_inside_costs_only_the_cover(
    media: MediaServer, listener: socket.socket, test_env: dict[str, str]
) -> None:
    page = media.register_page(f"thumb-{tag()[:8]}", thumb=f"http://127.0.0.1:{listener.getsockname()[1]}/c.jpg")
    job = wait_job(pipeline.submit(page, origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert not (Path(job.files[0]).parent / "cover.jpg").exists()
    assert connections(listener) == 0
    lifecycle.remove_files(job.id)  # nobody will collect it: leave storage as we found it


@pytest.mark.parametrize(
    ("make_url", "text"),
    [
        (lambda media, other: f"http://127.0.0.1:{other}/song.webm", PRIVATE_TEXT),
        (lambda media, other: f"http://localhost:{media.port}/media/opus.webm", PRIVATE_TEXT),
        (lambda media, other: f"http://[::1]:{media.port}/media/opus.webm", PRIVATE_TEXT),
        (lambda media, other: f"http://2130706433:{other}/song.webm", PRIVATE_TEXT),
        (lambda media, other: "http://169.254.169.254/latest/meta-data/", PRIVATE_TEXT),
        (lambda media, other: "file:///etc/passwd", SCHEME_TEXT),
        (lambda media, other: f"ftp://127.0.0.1:{other}/song.mp3", SCHEME_TEXT),
        (lambda media, other: "ftp://ftp.example.com/song.mp3", SCHEME_TEXT),
    ],
    ids=["other-port", "localhost-by-name", "ipv6-loopback", "decimal-ip", "metadata", "file", "ftp-local", "ftp"],
)
def test_direct_links_inside_or_not_web_are_refused(
    media: MediaServer, listener: socket.socket, test_env: dict[str, str], make_url, text: str
) -> None:
    n = tag()
    url = make_url(media, listener.getsockname()[1])
    if url.startswith("http"):
        url += f"?n={n}"
    refused(url, test_env, text)
    assert connections(listener) == 0
    assert not [r for r in media.requests if n in r.path]  # not even the allowlisted server was asked


def test_private_address_text_is_the_not_allowed_text() -> None:
    assert TEXT[Code.NOT_ALLOWED] == PRIVATE_TEXT
