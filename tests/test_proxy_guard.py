"""The network guard with the route's proxy: real yt-dlp through a recording proxy on 127.0.0.1.

The link's host is resolved and checked before the proxy is asked for it, each redirect
too; for HTTPS the proxy is asked to CONNECT to the checked address (the TLS name stays the
link's). The bot's own proxies and provider are never a link's target. Nothing leaves
loopback: the guard's connections are watched (``dialed``) and the proxy only connects to
127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from yt_dlp.networking.common import Request

from common import urlguard
from common.urlguard import Allowlist, UrlRejected
from tasks import netguard
from tasks.netguard import GuardedYoutubeDL, GuardRefused, refusal_of
from tests.conftest import connections
from tests.media import MediaServer
from tests.services import RecordingProxy, RecordingSocks
from tests.test_urlguard import BODY, _Handler, _MediaServer, fake_resolver
from tests.test_urlguard import dialed as dialed  # a fixture

PASSWORD = "pr0xy-pa55word"
TLS_NAME = "media.example.test"


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy(auth=("user", PASSWORD)) as running:
        yield running


@pytest.fixture(params=["requests", "urllib"])
def compat(request: pytest.FixtureRequest) -> list[str]:
    """The preferred transport: with a proxy, the urllib one hands over to the requests one (never direct)."""
    return ["prefer-legacy-http-handler"] if request.param == "urllib" else []


def ydl(proxy: str | None, allowlist: list[str], compat: list[str], tmp_path: Path, resolve: Any = None,
        reserved: tuple[str, ...] = (), provider: str | None = None) -> GuardedYoutubeDL:
    params = {"outtmpl": str(tmp_path / "%(id)s.%(ext)s"), "quiet": True, "no_warnings": True, "noprogress": True,
              "socket_timeout": 3, "retries": 0, "cachedir": False, "compat_opts": compat,
              "nocheckcertificate": True}
    return GuardedYoutubeDL(params, allowlist=Allowlist(allowlist), resolve=resolve, proxy=proxy,
                            reserved=reserved, provider=provider)


def refused(run: Any) -> UrlRejected:
    with pytest.raises(Exception) as caught:
        run()
    rejection = refusal_of(caught.value)
    assert rejection is not None, repr(caught.value)
    return rejection


def test_a_download_goes_through_the_proxy(proxy: RecordingProxy, media: MediaServer, compat: list[str],
                                           tmp_path: Path, dialed: list[Any]) -> None:
    url = media.media_url("opus.webm")
    with ydl(proxy.url, [f"127.0.0.1:{media.port}"], compat, tmp_path) as y:
        y.download([url])
        assert not y.netguard_refusals
    assert (tmp_path / "opus.webm").read_bytes() == (media.root / "opus.webm").read_bytes()
    assert proxy.asked and all(line.startswith(("GET ", "HEAD ")) and media.base_url in line for line in proxy.asked)
    assert all(headers.get("proxy-authorization", "").startswith("Basic ") for headers in proxy.headers)
    assert {addr[1] for addr in dialed} == {proxy.port}  # every connection went to the proxy, none direct


def test_an_inside_link_is_refused_before_the_proxy_is_asked(proxy: RecordingProxy, listener: socket.socket,
                                                             compat: list[str], tmp_path: Path,
                                                             dialed: list[Any]) -> None:
    port = listener.getsockname()[1]
    resolve = fake_resolver({"localhost": ["127.0.0.1"], "inside.example.test": ["10.1.2.3"]})
    with ydl(proxy.url, [], compat, tmp_path, resolve) as y:
        for link in (f"http://localhost:{port}/a.webm", "http://inside.example.test/a.webm",
                     f"https://localhost:{port}/a.webm"):
            rejection = refused(lambda link=link: y.download([link]))
            assert rejection.reason == urlguard.PRIVATE, link
    assert proxy.asked == [] and dialed == [] and connections(listener) == 0


def test_a_redirect_inside_is_refused_before_the_proxy_is_asked(proxy: RecordingProxy, media: MediaServer,
                                                                listener: socket.socket, compat: list[str],
                                                                tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    resolve = fake_resolver({"localhost": ["127.0.0.1"]})
    link = media.redirect_url(f"http://localhost:{port}/a.webm")
    with ydl(proxy.url, [f"127.0.0.1:{media.port}"], compat, tmp_path, resolve) as y:
        assert refused(lambda: y.download([link])).reason == urlguard.PRIVATE
    assert len(proxy.asked) == 1 and proxy.asked[0].endswith(link.removeprefix(media.base_url))  # the first hop only
    assert connections(listener) == 0


def test_the_bots_own_services_are_no_target(proxy: RecordingProxy, media: MediaServer, compat: list[str],
                                             tmp_path: Path) -> None:
    """Neither through the proxy nor direct: not the proxy itself, not another of the pool, not the provider."""
    other = "http://127.0.0.1:3"  # another proxy of the pool
    provider = "http://127.0.0.1:4"
    everything = [f"127.0.0.1:{media.port}", "127.0.0.1"]  # as if this machine were public
    for route_proxy in (proxy.url, None):
        with ydl(route_proxy, everything, compat, tmp_path, reserved=(proxy.url, other), provider=provider) as y:
            for link in (f"http://127.0.0.1:{proxy.port}/", "http://127.0.0.1:3/", "http://127.0.0.1:4/ping",
                         media.redirect_url(f"http://127.0.0.1:{proxy.port}/")):
                rejection = refused(lambda link=link: y.urlopen(link).read())
                assert rejection.reason == urlguard.PRIVATE and "bot's own services" in rejection.detail, link
    assert all("/redirect" in line for line in proxy.asked)


def test_no_other_proxy_is_used(proxy: RecordingProxy, compat: list[str], tmp_path: Path) -> None:
    with RecordingProxy() as stranger, ydl(proxy.url, ["127.0.0.1"], compat, tmp_path) as y:
        for proxies in ({"all": stranger.url}, {"http": stranger.url}, {"https": f"socks5://127.0.0.1:{stranger.port}"}):
            with pytest.raises(GuardRefused) as caught:
                y.urlopen(Request("http://127.0.0.1:9/", proxies=proxies))
            assert caught.value.rejection.reason == netguard.PROXY
        with pytest.raises(GuardRefused):
            y.urlopen(Request("http://127.0.0.1:9/", headers={"Ytdl-request-proxy": stranger.url}))
    assert stranger.asked == [] and proxy.asked == []


# ------------------------------------------------------------------ HTTPS through CONNECT

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for TLS_NAME, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={TLS_NAME}",
                    "-addext", f"subjectAltName=DNS:{TLS_NAME}"], check=True, capture_output=True, timeout=60)
    return cert, key


class _TlsHandler(_Handler):
    server: _TlsServer

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers.get("Host", ""))
        super().do_GET()


class _TlsServer(_MediaServer):
    daemon_threads = True
    hosts: list[str]
    names: list[str | None]


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[_TlsServer]:
    server = _TlsServer(("127.0.0.1", 0), _TlsHandler)
    server.paths, server.hosts, server.names = [], [], []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda sock, name, ctx: server.names.append(name)  # type: ignore[assignment,func-returns-value]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_https_goes_through_connect_to_the_checked_address(proxy: RecordingProxy, tls_server: _TlsServer,
                                                           compat: list[str], tmp_path: Path) -> None:
    port = tls_server.server_address[1]
    resolve = fake_resolver({TLS_NAME: ["127.0.0.1"]})
    with ydl(proxy.url, [TLS_NAME], compat, tmp_path, resolve) as y:
        assert y.urlopen(f"https://{TLS_NAME}:{port}/tiny.mp3").read() == BODY
    assert proxy.asked == [f"CONNECT 127.0.0.1:{port}"]  # the address checked, not a name to resolve again
    assert tls_server.names == [TLS_NAME] and tls_server.hosts == [f"{TLS_NAME}:{port}"]  # TLS and HTTP: the name


def test_a_name_that_rebinds_before_the_tunnel_is_refused(proxy: RecordingProxy, tls_server: _TlsServer,
                                                          compat: list[str], tmp_path: Path) -> None:
    port = tls_server.server_address[1]
    answers = iter([["93.184.216.34"]])
    calls: list[str] = []

    def rebinding(host: str, *rest: Any) -> list[Any]:
        calls.append(host)
        return fake_resolver({host: next(answers, ["127.0.0.1"])})(host, *rest)

    with ydl(proxy.url, [], compat, tmp_path, rebinding) as y:
        rejection = refused(lambda: y.urlopen(f"https://rebind.example.test:{port}/tiny.mp3"))
    assert rejection.reason == urlguard.PRIVATE and calls == ["rebind.example.test"] * 2
    assert proxy.asked == [] and tls_server.names == []


# ------------------------------------------------------------------ SOCKS

@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_is_asked_for_the_checked_address(media: MediaServer, compat: list[str], tmp_path: Path,
                                                scheme: str) -> None:
    """Even socks5h (the proxy would resolve): the proxy gets the address the guard checked, the site its name."""
    name = "media.example.test"
    resolve = fake_resolver({name: ["127.0.0.1"], "inside.example.test": ["10.1.2.3"]})
    with RecordingSocks(auth=("user", PASSWORD)) as socks:
        with ydl(socks.proxy_url(scheme), [f"{name}:{media.port}"], compat, tmp_path, resolve) as y:
            link = f"http://{name}:{media.port}/media/opus.webm?socks={scheme}"
            assert y.urlopen(link).read() == (media.root / "opus.webm").read_bytes()
            assert refused(lambda: y.urlopen("http://inside.example.test/a.webm")).reason == urlguard.PRIVATE
        assert socks.asked == [f"CONNECT address 127.0.0.1:{media.port}"]
    request = next(r for r in media.requests if f"socks={scheme}" in r.path)
    assert request.headers["Host"] == f"{name}:{media.port}"
