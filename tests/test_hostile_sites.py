"""Hostile sites: two allowlisted servers stand in for two public sites, `localhost` for a denied one.

A world of its own (key prefix, worker, Telegram bot against the fake Bot API) whose allowlist
holds both sites, so that what one site delivered can be asked for through the other's link;
`localhost` (site A's server by another name) is allowlisted too but in DOMAINS_DENY, so only the
domain lists can stop it. PLAYLIST=first, and the worker has a test-only yt-dlp extractor
(tests/ytdlp_plugins) for a site whose long lists come in pages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mutagen.mp3 import MP3

from common import context
from common.cache import DeliveryCache
from common.keys import Keys
from tests.conftest import YTDLP_PLUGINS, BotProcess, _clean_db, start_worker, stop_process
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer, make_tone
from tests.test_telegram import TOKEN, audios, new_chat, started, wait_audios, wait_status

EPISODE = "episode1.webm"
TITLES = {"a": "Episode One, as site A has it", "b": "Episode One, as site B has it"}
SECONDS = {"a": 6.0, "b": 3.0}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MediaServer]]:
    """Site A and site B: each serves its own episode1.webm (same name, other audio)."""
    servers = {}
    for name in ("a", "b"):
        folder = tmp_path_factory.mktemp(f"site-{name}")
        make_tone(folder / EPISODE, SECONDS[name], TITLES[name])
        servers[name] = MediaServer(folder).start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def world(test_env: dict[str, str], sites: dict[str, MediaServer],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Its own prefix (own queues, cache and jobs) served by its own worker; both sites allowlisted."""
    plugins = os.pathsep.join(filter(None, [str(YTDLP_PLUGINS), os.environ.get("PYTHONPATH")]))
    env = {**test_env, "KEY_PREFIX": f"{test_env['KEY_PREFIX']}{uuid.uuid4().hex[:6]}:",
           "NETWORK_ALLOWLIST": ",".join([*(f"127.0.0.1:{s.port}" for s in sites.values()),
                                          f"localhost:{sites['a'].port}"]),
           "DOMAINS_DENY": "localhost", "PLAYLIST": "first", "PYTHONPATH": plugins}
    proc = start_worker(env, tmp_path_factory.mktemp("hostile") / "worker.log", name="hostile")
    yield env
    stop_process(proc)
    _clean_db(env["REDIS_URL"], env["KEY_PREFIX"])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(flood_limit=None) as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeTelegram, world: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BotProcess]:
    env = {**world, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url, "TELEGRAM_FILE_URL": fake.file_url}
    process = BotProcess("telegram", env, tmp_path_factory.mktemp("hostile-bot") / "bot.log")
    process.start(started(fake))
    yield process
    process.stop()


def heard(audio: dict[str, Any]) -> tuple[str, float]:
    """What a user got: the title and the length of the MP3 itself."""
    mp3 = MP3(io.BytesIO(audio["data"]))
    return str(mp3.tags["TIT2"]), round(mp3.info.length)


def ask(fake: FakeTelegram, url: str, user: int) -> dict[str, Any]:
    chat = new_chat()
    fake.push_message(chat, user, url)
    [audio] = wait_audios(fake, chat, timeout=60)
    return audio


def test_one_site_cannot_take_over_what_another_delivered(fake: FakeTelegram, bot: BotProcess,
                                                          sites: dict[str, MediaServer]) -> None:
    link = {name: server.url(f"/media/{EPISODE}", n=uuid.uuid4().hex[:8]) for name, server in sites.items()}
    first = ask(fake, link["a"], user=1)
    assert heard(first) == (TITLES["a"], SECONDS["a"])
    second = ask(fake, link["b"], user=2)  # site B's own episode1.webm, delivered and cached after A's
    assert heard(second) == (TITLES["b"], SECONDS["b"])

    third = ask(fake, link["a"], user=3)  # a third person asks for site A's link
    assert heard(third) == (TITLES["a"], SECONDS["a"])
    assert third["uploaded"] is False and third["file_id"] == first["file_id"]  # A's, from the cache
    again = ask(fake, link["b"], user=4)
    assert heard(again) == (TITLES["b"], SECONDS["b"]) and again["file_id"] == second["file_id"]


def test_jobs_in_flight_are_not_shared_across_sites(fake: FakeTelegram, bot: BotProcess,
                                                     sites: dict[str, MediaServer]) -> None:
    tag = uuid.uuid4().hex[:8]
    # Served slowly, so that both jobs are in flight at once.
    link = {name: server.url(f"/slow/12000/{EPISODE}", n=tag) for name, server in sites.items()}
    chats = {name: new_chat() for name in link}
    for user, name in enumerate(link):
        fake.push_message(chats[name], 10 + user, link[name])
    for name in link:
        [audio] = wait_audios(fake, chats[name], timeout=60)
        assert heard(audio) == (TITLES[name], SECONDS[name])
        assert audio["uploaded"] is True


def test_entries_under_the_old_keys_are_not_trusted(world: dict[str, str], sites: dict[str, MediaServer]) -> None:
    """Before, a direct file's identity was `generic:<file name>`: such an entry may be another site's."""
    keys = Keys(world["KEY_PREFIX"])
    client = context.redis_client()
    url = sites["a"].url(f"/media/{EPISODE}", n=uuid.uuid4().hex[:8])
    old_link_key = hashlib.sha256(url.encode()).hexdigest()[:24]  # the old key: scheme, host, path, query
    client.set(f"{keys.prefix}source:{old_link_key}", "generic:episode1")
    client.set(f"{keys.prefix}cache:telegram:generic:episode1:192", json.dumps([{"file_id": "site-b-file"}]))
    cache = DeliveryCache(client, keys, "telegram", ttl=60)
    assert cache.lookup(url, 192) is None
    cache.store(url, "url:abc", 192, [{"file_id": "site-a-file"}])
    assert cache.lookup(url, 192) == [{"file_id": "site-a-file"}]
    assert cache.lookup(url.replace("http://", "https://"), 192) == [{"file_id": "site-a-file"}]
    assert cache.lookup(sites["b"].url(f"/media/{EPISODE}"), 192) is None



@pytest.mark.parametrize(("first", "text"), [
    ("file:///etc/passwd", "only http:// and https:// links"),
    ("http://localhost:{port}/media/episode1.webm?n={tag}", "Links to this site aren't allowed here."),
], ids=["file", "denied-domain"])
def test_a_playlists_first_entry_passes_the_guard(fake: FakeTelegram, bot: BotProcess,
                                                  sites: dict[str, MediaServer], first: str, text: str) -> None:
    """PLAYLIST=first: the entry a podcast feed names is checked like a link the user sent."""
    tag = uuid.uuid4().hex[:8]
    feed = sites["a"].url("/feed", count=3, file=EPISODE, first=first.format(port=sites["a"].port, tag=tag), n=tag)
    chat = new_chat()
    asked = fake.push_message(chat, 5, feed)
    status = wait_status(fake, chat, asked, "❌", timeout=30)
    assert text in status["text"] and "localhost" not in status["text"] and "passwd" not in status["text"]
    assert not audios(fake, chat)
    assert [r.path for r in sites["a"].requests if tag in r.path] == [f"/feed?{feed.split('?', 1)[1]}"]


def test_a_long_paged_playlist_is_not_fetched_in_full(fake: FakeTelegram, bot: BotProcess,
                                                      sites: dict[str, MediaServer]) -> None:
    """300 pages of 10 entries: taking the first entry reads the first page only."""
    list_id = uuid.uuid4().hex[:8]
    audio = ask(fake, sites["a"].url(f"/paged/{list_id}", file=EPISODE), user=6)
    assert heard(audio) == (TITLES["a"], SECONDS["a"])
    pages = [r.path for r in sites["a"].requests if r.path.startswith(f"/paged/{list_id}/")]
    assert pages == [f"/paged/{list_id}/0?file={EPISODE}"]


def test_a_redirect_into_a_denied_domain_is_refused(fake: FakeTelegram, bot: BotProcess,
                                                    sites: dict[str, MediaServer]) -> None:
    """Site A sends the worker on to `localhost` (in DOMAINS_DENY, though its address is allowlisted)."""
    tag = uuid.uuid4().hex[:8]
    target = f"http://localhost:{sites['a'].port}/media/{EPISODE}?n={tag}"
    chat = new_chat()
    asked = fake.push_message(chat, 8, sites["a"].redirect_url(target) + f"&n={tag}")
    status = wait_status(fake, chat, asked, "❌", timeout=30)
    assert "Links to this site aren't allowed here." in status["text"] and "localhost" not in status["text"]
    assert not audios(fake, chat)
    assert [r.path.split("?")[0] for r in sites["a"].requests if tag in r.path] == ["/redirect"]
