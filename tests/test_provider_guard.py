"""The PO-token provider exception of the network guard, with the real bgutil plugin and yt-dlp's YouTube extractor.

The provider (a fake bgutil server on 127.0.0.1) is reached by the plugin's own calls, made
through yt-dlp's PO-token framework exactly as during a YouTube extraction; the same host:port
stays refused for links and redirects, whichever transport yt-dlp picks.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from yt_dlp.extractor.youtube.pot.provider import PoTokenContext

from common import urlguard
from common.settings import Settings
from common.urlguard import Allowlist
from tasks.download import ydl_options
from tasks.netguard import GuardedYoutubeDL, GuardRefused
from tests.media import MediaServer
from tests.services import POT_TOKEN, FakePotProvider

WEB = {"INNERTUBE_CONTEXT": {"client": {"clientName": "WEB", "clientVersion": "2.20260101.00.00"}}}


@pytest.fixture
def pot() -> Iterator[FakePotProvider]:
    with FakePotProvider() as provider:
        yield provider


@pytest.fixture(params=["requests", "urllib"])
def compat(request: pytest.FixtureRequest) -> list[str]:
    return ["prefer-legacy-http-handler"] if request.param == "urllib" else []


def youtube_ydl(base_url: str, provider: str | None, compat: list[str], allowlist: Allowlist | None = None,
                resolve: Any = None) -> GuardedYoutubeDL:
    """A guarded YoutubeDL configured as the worker configures it: the plugin pointed at ``base_url``."""
    params = {"quiet": True, "no_warnings": True, "socket_timeout": 3, "compat_opts": compat,
              "extractor_args": {"youtubepot-bgutilhttp": {"base_url": [base_url]},
                                 "youtube": {"fetch_pot": ["always"]}}}
    return GuardedYoutubeDL(params, allowlist=allowlist or Allowlist(), resolve=resolve, provider=provider)


def player_token(ydl: GuardedYoutubeDL, video_id: str) -> str | None:
    """What the YouTube extractor does when a client needs a PO token for a video.

    yt-dlp caches tokens in memory per process, bound to the video: each test asks for its own video.
    """
    ie = ydl.get_info_extractor("Youtube")
    ie.initialize()
    return ie.fetch_po_token(client="web", context=PoTokenContext.PLAYER, video_id=video_id, ytcfg=WEB)


@pytest.fixture
def video() -> str:
    return "v" + uuid.uuid4().hex[:10]


def test_the_plugins_own_calls_reach_the_provider(pot: FakePotProvider, compat: list[str], video: str) -> None:
    with youtube_ydl(pot.url, pot.url, compat) as ydl:
        assert player_token(ydl, video) == POT_TOKEN
        assert not ydl.netguard_refusals
    assert [(method, path) for method, path, _ in pot.seen] == [("GET", "/ping"), ("POST", "/get_pot")]
    assert pot.seen[1][2]["content_binding"] == video


def test_a_link_to_the_provider_is_refused_even_after_its_calls(pot: FakePotProvider, compat: list[str],
                                                                video: str) -> None:
    """Also the very spelling the plugin used: a keep-alive connection to it must not be reused for a link."""
    with youtube_ydl(pot.url, pot.url, compat) as ydl:
        assert player_token(ydl, video) == POT_TOKEN
        for link in (f"{pot.url}/ping", f"http://127.0.0.1:{pot.port}/get_pot", f"http://2130706433:{pot.port}/ping",
                     f"http://[::ffff:127.0.0.1]:{pot.port}/ping"):
            with pytest.raises(GuardRefused) as caught:
                ydl.urlopen(link)
            assert caught.value.rejection.reason == urlguard.PRIVATE
        assert len(ydl.netguard_refusals) == 4
    assert len(pot.seen) == 2  # the plugin's ping and token request, nothing else


def test_a_redirect_to_the_provider_is_refused(pot: FakePotProvider, media: MediaServer, compat: list[str],
                                              video: str) -> None:
    allowlist = Allowlist([f"127.0.0.1:{media.port}"])
    with youtube_ydl(pot.url, pot.url, compat, allowlist) as ydl:
        assert player_token(ydl, video) == POT_TOKEN
        with pytest.raises(GuardRefused) as caught:
            ydl.urlopen(media.redirect_url(f"{pot.url}/ping"))
        assert caught.value.rejection.reason == urlguard.PRIVATE
    assert len(pot.seen) == 2


def test_a_public_provider_is_refused_for_links_by_address_too(pot: FakePotProvider, compat: list[str]) -> None:
    """Had the provider a public address, another name for it must not reach it either."""
    def resolve(host: str, port: int, *rest: Any) -> list[Any]:
        assert host == "pot.example.test", host
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    allowlist = Allowlist(["pot.example.test", "127.0.0.1"])  # as if both were public
    with youtube_ydl(pot.url, pot.url, compat, allowlist, resolve) as ydl:
        with pytest.raises(GuardRefused) as caught:
            ydl.urlopen(f"http://pot.example.test:{pot.port}/ping")
        assert "bot's own services" in caught.value.rejection.detail
    assert pot.seen == []


def test_without_the_setting_the_plugin_reaches_nothing(pot: FakePotProvider, compat: list[str], video: str) -> None:
    """No POT_PROVIDER_URL: the plugin's call is refused like any private address, and blamed on no link."""
    with youtube_ydl(pot.url, None, compat) as ydl:
        assert player_token(ydl, video) is None
        assert not ydl.netguard_refusals  # the operator's problem (logged), not the user's link
    assert pot.seen == []


def test_the_exception_is_for_exactly_the_configured_host_and_port(pot: FakePotProvider, compat: list[str],
                                                                   video: str) -> None:
    with FakePotProvider() as other, youtube_ydl(other.url, pot.url, compat) as ydl:
        assert player_token(ydl, video) is None
        assert other.seen == []
    assert pot.seen == []


def test_the_worker_points_the_plugin_at_the_provider(tmp_path: Path) -> None:
    """Over whatever YTDLP_EXTRACTOR_ARGS says: the guard lets the plugin reach POT_PROVIDER_URL only."""
    settings = Settings(pot_provider_url="http://pot:4416", ytdlp_extractor_args=[
        "youtubepot-bgutilhttp:base_url=http://elsewhere:4416;extra=1", "youtube:player_client=default"])
    args = ydl_options(settings, tmp_path, None)["extractor_args"]
    assert args["youtubepot-bgutilhttp"] == {"base_url": ["http://pot:4416"], "extra": ["1"]}
    assert args["youtube"] == {"player_client": ["default"]}
    assert "youtubepot-bgutilhttp" not in ydl_options(Settings(), tmp_path, None)["extractor_args"]
