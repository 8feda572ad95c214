"""URL guard: property tests of the pure checks, and real yt-dlp runs against 127.0.0.1 servers.

No real DNS: every host name goes through a fake resolver. The yt-dlp tests refuse, in
``netguard._connect``, any destination other than 127.0.0.1, so a guard bug cannot send
traffic anywhere else.
"""

from __future__ import annotations

import ipaddress
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yt_dlp.networking.common import Request

from common import urlguard
from common.errors import TEXT, Code
from common.i18n import Msg
from common.settings import Settings
from common.urlguard import Allowlist, UrlRejected, check_url, is_public_address, parse_ipv4_loose, precheck
from tasks import netguard
from tasks.netguard import GuardedYoutubeDL, GuardRefused, install, refusal_of
from tests.conftest import connections

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRIVATE_V4 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
PRIVATE_V6 = [ipaddress.ip_network(n) for n in (
    "::1/128", "::/128", "::/96", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "2001:db8::/32",
    "2001::/32", "100::/64", "64:ff9b:1::/48",
)]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "151.101.1.69", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


# ----------------------------------------------------------------- strategies

def _in(net: Any) -> st.SearchStrategy[Any]:
    cls = IPv4 if net.version == 4 else IPv6
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(cls)


private_v4 = st.sampled_from(PRIVATE_V4).flatmap(_in)
private_v6 = st.sampled_from(PRIVATE_V6).flatmap(_in)
any_v4 = st.integers(0, 2**32 - 1).map(IPv4)


def mapped(ip: IPv4) -> IPv6:
    return IPv6(0xFFFF_0000_0000 | int(ip))


def nat64(ip: IPv4) -> IPv6:
    return IPv6(int(IPv6("64:ff9b::")) | int(ip))


def sixtofour(ip: IPv4, low: int) -> IPv6:
    return IPv6((0x2002 << 112) | (int(ip) << 80) | low)


def _radix(draw: st.DrawFn, value: int) -> str:
    style = draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))
    if style == "hex":
        return hex(value)
    if style == "HEX":
        return "0X" + format(value, "X")
    if style == "oct":
        return "0" + format(value, "o")
    return str(value)


@st.composite
def ipv4_spelling(draw: st.DrawFn, ip: IPv4) -> str:
    """Any spelling inet_aton accepts: 1 to 4 parts, each decimal, hex or octal."""
    raw = ip.packed
    parts = draw(st.integers(1, 4))
    head = list(raw[: parts - 1])
    tail = int.from_bytes(raw[parts - 1:], "big")
    return ".".join(_radix(draw, v) for v in [*head, tail])


@st.composite
def host_spelling(draw: st.DrawFn, ip: IPv4) -> str:
    """A URL host for ``ip``: loose IPv4, or IPv6 that embeds it (mapped, NAT64, 6to4)."""
    kind = draw(st.sampled_from(["v4", "v4dot", "mapped", "mapped_hex", "mapped_long", "nat64", "6to4"]))
    if kind == "v4":
        return draw(ipv4_spelling(ip))
    if kind == "v4dot":
        return str(ip) + "."
    if kind == "mapped":
        return f"[::ffff:{ip}]"
    if kind == "mapped_hex":
        return f"[{mapped(ip).exploded.upper() if draw(st.booleans()) else mapped(ip).compressed}]"
    if kind == "mapped_long":
        return f"[0:0:0:0:0:ffff:{ip}]"
    if kind == "nat64":
        return f"[64:ff9b::{ip}]"
    return f"[{sixtofour(ip, draw(st.integers(0, 2**80 - 1)))}]"


@st.composite
def url_around(draw: st.DrawFn, host: str) -> str:
    scheme = "".join(c.upper() if draw(st.booleans()) else c for c in draw(st.sampled_from(["http", "https"])))
    userinfo = draw(st.sampled_from(["", "user@", "public.example@", "user:pw@", "example.com:80@", "a@b@"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":6379", ":8080", ":"]))
    tail = draw(st.sampled_from(["", "/", "/a.mp3", "?u=http://example.com/", "#@example.com/", "/#@8.8.8.8"]))
    return f"{scheme}://{userinfo}{host}{port}{tail}"


def no_dns(*args: Any) -> Any:
    raise AssertionError(f"numeric host must not be resolved: {args}")


def fake_resolver(table: dict[str, list[str]]) -> Callable[..., list[Any]]:
    """getaddrinfo look-alike answering only from ``table``."""

    def resolve(host: str, port: int, *_: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_addrinfo(ipaddress.ip_address(a), port) for a in table[host]]

    return resolve


def _addrinfo(ip: Any, port: int) -> tuple[Any, ...]:
    if ip.version == 4:
        return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (str(ip), port))
    return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (str(ip), port, 0, 0))


hostnames = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}\.(com|net|test|example)\Z")


# --------------------------------------------------------- is_public_address

@FAST
@given(private_v4)
def test_private_ipv4_ranges_are_refused(ip: IPv4) -> None:
    assert not is_public_address(ip)


@FAST
@given(private_v6)
def test_private_ipv6_ranges_are_refused(ip: IPv6) -> None:
    assert not is_public_address(ip)


@FAST
@given(any_v4, st.integers(0, 2**80 - 1))
def test_embedded_ipv4_is_judged_as_that_ipv4(ip: IPv4, low: int) -> None:
    verdict = is_public_address(ip)
    assert is_public_address(mapped(ip)) == verdict
    assert is_public_address(nat64(ip)) == verdict
    assert is_public_address(sixtofour(ip, low)) == verdict
    if verdict:
        assert ip.is_global and not ip.is_multicast
        assert not any(ip in net for net in PRIVATE_V4)


@FAST
@given(st.integers(0, 2**128 - 1).map(IPv6))
def test_public_ipv6_is_global_unicast(ip: IPv6) -> None:
    if is_public_address(ip) and ip.ipv4_mapped is None and ip.sixtofour is None:
        assert ip in ipaddress.ip_network("2000::/3") or ip in ipaddress.ip_network("64:ff9b::/96")
        assert not any(ip in net for net in PRIVATE_V6)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_examples(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "169.254.169.254", "100.64.0.1", "255.255.255.255", "198.19.255.255", "2001:0:4136:e378::1",
    "::ffff:169.254.169.254", "fe80::1%eth0", "fd00:ec2::254", "::7f00:1", "::ffff:0:7f00:1",
])
def test_special_examples(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


# ---------------------------------------------------------------- check_url

@FAST
@given(private_v4.flatmap(host_spelling).flatmap(url_around))
def test_private_ipv4_in_every_spelling_is_refused(url: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url(url, Allowlist(), resolve=no_dns)
    assert caught.value.reason == urlguard.PRIVATE, url


@FAST
@given(private_v6.map(lambda ip: f"[{ip}]").flatmap(url_around))
def test_private_ipv6_literals_are_refused(url: str) -> None:
    with pytest.raises(UrlRejected):
        check_url(url, Allowlist(), resolve=no_dns)


@FAST
@given(any_v4.flatmap(lambda ip: st.tuples(st.just(ip), ipv4_spelling(ip))))
def test_loose_ipv4_parsing_matches_inet_aton(pair: tuple[IPv4, str]) -> None:
    ip, spelling = pair
    assert IPv4(socket.inet_aton(spelling)) == ip  # libc's reading, what the resolver would do
    assert parse_ipv4_loose(spelling) == ip


@FAST
@given(any_v4.flatmap(lambda ip: st.tuples(st.just(ip), ipv4_spelling(ip))))
def test_numeric_hosts_are_judged_by_their_address(pair: tuple[IPv4, str]) -> None:
    ip, spelling = pair
    url = f"http://{spelling}/x"
    if is_public_address(ip):
        check_url(url, Allowlist(), resolve=no_dns)
    else:
        with pytest.raises(UrlRejected):
            check_url(url, Allowlist(), resolve=no_dns)


@FAST
@given(hostnames, st.lists(st.sampled_from(PUBLIC), max_size=3), st.one_of(private_v4, private_v6),
       st.lists(st.sampled_from(PUBLIC), max_size=3))
def test_any_private_answer_refuses_a_name(name: str, before: list[str], bad: Any, after: list[str]) -> None:
    resolve = fake_resolver({name: [*before, str(bad), *after]})
    with pytest.raises(UrlRejected) as caught:
        check_url(f"https://{name}/watch?v=1", Allowlist(), resolve=resolve)
    assert caught.value.reason == urlguard.PRIVATE


@FAST
@given(hostnames, st.lists(st.sampled_from(PUBLIC), min_size=1, max_size=4), st.booleans())
def test_names_with_only_public_answers_pass(name: str, answers: list[str], trailing_dot: bool) -> None:
    host = name.upper() + ("." if trailing_dot else "")
    check_url(f"HTTPS://{host}/v", Allowlist(), resolve=fake_resolver({name: answers}))


@FAST
@given(st.sampled_from([
    "file:///etc/passwd", "FILE://localhost/etc/passwd", "ftp://8.8.8.8/", "javascript:alert(1)",
    "JavaScript://example.com/%0aalert(1)", "data:text/html,hi", "gopher://8.8.8.8/_x", "dict://127.0.0.1:6379/info",
    "ws://8.8.8.8/", "//8.8.8.8/x", "8.8.8.8/x", "example.com/watch", "hxxp://8.8.8.8/", "view-source:http://8.8.8.8/",
]))
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url(url, Allowlist(), resolve=no_dns)
    assert caught.value.reason == urlguard.SCHEME


@pytest.mark.parametrize("url", [
    "http://public.example@127.0.0.1/", "http://127.0.0.1#@example.com/", "http://127.0.0.1?@example.com/",
    "http://8.8.8.8\\@127.0.0.1/", "http://127.0.0.1\\@8.8.8.8/", "http://[::1]x/", "http://8.8.8.8:80:80/",
    "http:///x", "http://@/", "http://:80/", "http://8.8.8.8:0/", "http://8.8.8.8:99999/", "http://1.2.3.4.5/",
    "http://1.2.3.256/", "http://08.8.8.8/", "http://foo.123/", "http://exa mple.com/", "http://example.com\n/",
    "http://%31%32%37.0.0.1/", "http://[fe80::1%25eth0]/", "http://[v1.fe]/", "http:/8.8.8.8/",
    "http://１２７.０.０.１/", "http://127。0。0。1/", "http://localhost/", "http://a..com/",
])
def test_tricky_links_are_refused(url: str) -> None:
    resolve = fake_resolver({"localhost": ["127.0.0.1"]})
    with pytest.raises(UrlRejected):
        check_url(url, Allowlist(), resolve=resolve)


def test_idna_names_are_resolved_in_ascii() -> None:
    resolve = fake_resolver({"xn--mnchen-3ya.de": ["8.8.8.8"], "xn--bcher-kva.example": ["10.0.0.1"]})
    check_url("https://MÜNCHEN.de/a", Allowlist(), resolve=resolve)
    with pytest.raises(UrlRejected):
        check_url("https://bücher.example/a", Allowlist(), resolve=resolve)


def test_unresolvable_name_is_refused() -> None:
    with pytest.raises(UrlRejected) as caught:
        check_url("https://nowhere.test/", Allowlist(), resolve=fake_resolver({}))
    assert caught.value.reason == urlguard.UNRESOLVABLE


@FAST
@given(private_v4, st.integers(1, 65534))
def test_allowlist_lifts_the_ban_for_that_port_only(ip: IPv4, port: int) -> None:
    allow = Allowlist([f"{ip}:{port}"])
    check_url(f"http://{ip}:{port}/x", allow, resolve=no_dns)
    check_url(f"http://{int(ip)}:{port}/x", allow, resolve=no_dns)
    with pytest.raises(UrlRejected):
        check_url(f"http://{ip}:{port + 1}/x", allow, resolve=no_dns)


def test_allowlist_entries() -> None:
    allow = Allowlist("redis, 127.0.0.1:8080 ,[::1]:9000,::2, MinIO.Local.:9001")
    assert allow.allows("REDIS.", 6379) and allow.allows("0x7f.1", 8080) and allow.allows("::1", 9000)
    assert allow.allows("[::2]", 1) and allow.allows("minio.local", 9001)
    assert not allow.allows("127.0.0.1", 8081) and not allow.allows("::1", 9001) and not allow.allows("redis2", 1)
    assert not Allowlist(None) and not Allowlist("")
    for bad in ("a:b", "[::1]x", "h:0", "h:70000", "1.2.3.256"):
        with pytest.raises(ValueError):
            Allowlist([bad])


def test_allowlisted_name_is_not_checked_other_names_are() -> None:
    resolve = fake_resolver({"redis": ["10.0.0.5"], "evil.test": ["10.0.0.5"]})
    check_url("http://redis:6379/", Allowlist("redis"), resolve=resolve)
    with pytest.raises(UrlRejected):  # the allowlist matches names, not what they resolve to
        check_url("http://evil.test:6379/", Allowlist("10.0.0.5"), resolve=resolve)


def test_domain_allow_and_deny_lists() -> None:
    resolve = fake_resolver({n: ["8.8.8.8"] for n in ("youtube.com", "m.youtube.com", "notyoutube.com", "x.bad.tv")})
    allow = {"domains_allow": ["youtube.com"]}
    check_url("https://m.youtube.com/watch", Allowlist(), resolve, **allow)
    for url in ("https://notyoutube.com/", "https://8.8.8.8/"):
        with pytest.raises(UrlRejected) as caught:
            check_url(url, Allowlist(), resolve, **allow)
        assert caught.value.reason == urlguard.SITE_DENIED
    with pytest.raises(UrlRejected):
        check_url("https://X.Bad.TV./v", Allowlist(), resolve, domains_deny=["*.bad.tv"])
    check_url("https://youtube.com/", Allowlist(), resolve, domains_deny=["bad.tv"])


# --------------------------------------------------------- yt-dlp integration

BODY = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8


class _Handler(BaseHTTPRequestHandler):
    server: _MediaServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass


class _MediaServer(ThreadingHTTPServer):
    paths: list[str]
    redirect_to: str


@pytest.fixture
def server_a(listener: socket.socket) -> Iterator[_MediaServer]:
    server = _MediaServer(("127.0.0.1", 0), _Handler)
    server.paths = []
    server.redirect_to = f"http://127.0.0.1:{listener.getsockname()[1]}/tiny.mp3"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def dialed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address netguard connects to; anything but 127.0.0.1 fails the test unsent."""
    seen: list[Any] = []
    real = netguard._connect

    def loopback_only(info: Any, *args: Any) -> socket.socket:
        seen.append(info[4])
        if info[4][0] != "127.0.0.1":
            raise AssertionError(f"test tried to leave loopback: {info[4]}")
        return real(info, *args)

    monkeypatch.setattr(netguard, "_connect", loopback_only)
    return seen


@pytest.fixture(params=["requests", "urllib"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def port_of(server: Any) -> int:
    return server.server_address[1] if hasattr(server, "server_address") else server.getsockname()[1]


def run(url: str, tmp_path: Path, transport: str, allowlist: Allowlist, resolve: Any = None,
        **guard: Any) -> GuardedYoutubeDL:
    params = {
        "outtmpl": str(tmp_path / "%(id)s.%(ext)s"), "quiet": True, "no_warnings": True, "noprogress": True,
        "socket_timeout": 3, "retries": 0, "cachedir": False, "proxy": "http://127.0.0.1:9/",
        "compat_opts": ["prefer-legacy-http-handler"] if transport == "urllib" else [],
    }
    with GuardedYoutubeDL(params, allowlist=allowlist, resolve=resolve, **guard) as ydl:
        ydl.download([url])
    return ydl


def refused(url: str, tmp_path: Path, transport: str, allowlist: Allowlist, resolve: Any = None,
            **guard: Any) -> UrlRejected:
    with pytest.raises(Exception) as caught:
        run(url, tmp_path, transport, allowlist, resolve, **guard)
    assert isinstance(caught.value, GuardRefused)
    assert netguard.REFUSED_MARKER in str(caught.value)
    rejection = refusal_of(caught.value)
    assert rejection is not None, repr(caught.value)
    assert not list(tmp_path.iterdir())
    return rejection


def test_direct_url_on_allowlisted_port_works(server_a: _MediaServer, tmp_path: Path, transport: str,
                                              dialed: list[Any]) -> None:
    a = port_of(server_a)
    ydl = run(f"http://127.0.0.1:{a}/tiny.mp3", tmp_path, transport, Allowlist([f"127.0.0.1:{a}"]))
    assert (tmp_path / "tiny.mp3").read_bytes() == BODY
    assert "/tiny.mp3" in server_a.paths and dialed and not ydl.netguard_refusals


def test_redirect_to_other_port_is_refused_at_connect(server_a: _MediaServer, listener: socket.socket,
                                                      tmp_path: Path, transport: str, dialed: list[Any]) -> None:
    a = port_of(server_a)
    rejection = refused(f"http://127.0.0.1:{a}/redirect/x.mp3", tmp_path, transport, Allowlist([f"127.0.0.1:{a}"]))
    assert rejection.reason == urlguard.PRIVATE
    assert server_a.paths == ["/redirect/x.mp3"]
    assert connections(listener) == 0
    assert all(addr[1] == a for addr in dialed)


def test_url_straight_to_other_port_is_refused(server_a: _MediaServer, listener: socket.socket,
                                               tmp_path: Path, transport: str, dialed: list[Any]) -> None:
    a, b = port_of(server_a), port_of(listener)
    for host in ("127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "localhost"):
        rejection = refused(f"http://{host}:{b}/tiny.mp3", tmp_path, transport, Allowlist([f"127.0.0.1:{a}"]),
                            fake_resolver({"localhost": ["127.0.0.1"]}))
        assert rejection.reason == urlguard.PRIVATE
    assert connections(listener) == 0 and not dialed


def test_rebinding_answer_with_a_private_address_is_refused(server_a: _MediaServer, tmp_path: Path,
                                                            transport: str, dialed: list[Any]) -> None:
    a = port_of(server_a)
    resolve = fake_resolver({"media.rebind.test": ["93.184.216.34", "127.0.0.1"]})
    rejection = refused(f"http://media.rebind.test:{a}/tiny.mp3", tmp_path, transport,
                        Allowlist([f"127.0.0.1:{a}"]), resolve)
    assert rejection.reason == urlguard.PRIVATE
    assert server_a.paths == [] and dialed == []


def test_rebinding_between_check_and_connect_is_refused(server_a: _MediaServer, tmp_path: Path,
                                                        transport: str, dialed: list[Any]) -> None:
    a = port_of(server_a)
    answers = iter([["93.184.216.34"]])
    calls: list[str] = []

    def rebinding(host: str, port: int, *rest: Any) -> list[Any]:
        calls.append(host)
        return fake_resolver({host: next(answers, ["127.0.0.1"])})(host, port, *rest)

    url = f"http://media.rebind.test:{a}/tiny.mp3"
    check_url(url, Allowlist([f"127.0.0.1:{a}"]), resolve=rebinding)  # the early check sees a public address
    rejection = refused(url, tmp_path, transport, Allowlist([f"127.0.0.1:{a}"]), rebinding)
    assert rejection.reason == urlguard.PRIVATE
    assert len(calls) == 2 and server_a.paths == [] and dialed == []


def test_domain_lists_hold_for_every_connection(server_a: _MediaServer, tmp_path: Path, transport: str,
                                                dialed: list[Any]) -> None:
    """DOMAINS_DENY / DOMAINS_ALLOW judge each hop's host as requested, like the address checks."""
    a = port_of(server_a)
    names = ("media.good.test", "cdn.good.test", "cdn.bad.test", "elsewhere.test")
    resolve = fake_resolver({name: ["127.0.0.1"] for name in names})
    allowlist = Allowlist([f"{name}:{a}" for name in names])  # every address passes: only the lists can refuse
    start = f"http://media.good.test:{a}/redirect/x.mp3"
    server_a.redirect_to = f"http://cdn.bad.test:{a}/tiny.mp3"
    rejection = refused(start, tmp_path, transport, allowlist, resolve, domains_deny=["bad.test"])
    assert rejection.reason == urlguard.SITE_DENIED and rejection.detail == "cdn.bad.test"
    for target in (f"http://elsewhere.test:{a}/tiny.mp3", f"http://127.0.0.1:{a}/tiny.mp3"):
        server_a.redirect_to = target  # out of the allowed ones, by name or by address
        rejection = refused(start, tmp_path, transport, allowlist, resolve, domains_allow=["good.test"])
        assert rejection.reason == urlguard.SITE_DENIED
    assert server_a.paths == ["/redirect/x.mp3"] * 3  # the refused hops were never asked
    server_a.redirect_to = f"http://cdn.good.test:{a}/tiny.mp3"
    run(start, tmp_path, transport, allowlist, resolve, domains_allow=["good.test"], domains_deny=["bad.test"])
    assert (tmp_path / "tiny.mp3").read_bytes() == BODY


def test_allowlisted_name_connects_to_the_address_it_resolved(server_a: _MediaServer, tmp_path: Path,
                                                              transport: str, dialed: list[Any]) -> None:
    a = port_of(server_a)
    run(f"http://media.lan.test:{a}/tiny.mp3", tmp_path, transport, Allowlist([f"media.lan.test:{a}"]),
        fake_resolver({"media.lan.test": ["127.0.0.1"]}))
    assert (tmp_path / "tiny.mp3").read_bytes() == BODY
    assert {addr for addr in dialed} == {("127.0.0.1", a)}


def test_non_http_schemes_and_proxies_are_refused(listener: socket.socket, transport: str,
                                                  dialed: list[Any]) -> None:
    b = port_of(listener)
    with GuardedYoutubeDL({"quiet": True}, allowlist=Allowlist([f"127.0.0.1:{b}"])) as ydl:
        for url in (f"ftp://127.0.0.1:{b}/x", "file:///etc/passwd", f"ws://127.0.0.1:{b}/"):
            with pytest.raises(GuardRefused) as caught:
                ydl.urlopen(url)
            assert caught.value.rejection.reason == urlguard.SCHEME
        with pytest.raises(GuardRefused) as caught:
            ydl.urlopen(Request(f"http://127.0.0.1:{b}/", proxies={"all": f"http://127.0.0.1:{b}"}))
        assert caught.value.rejection.reason == netguard.PROXY
        assert len(ydl.netguard_refusals) == 4
    assert connections(listener) == 0 and not dialed


def test_subprocess_downloaders_are_refused(listener: socket.socket, tmp_path: Path) -> None:
    b = port_of(listener)
    live_hls = {"id": "x", "title": "x", "ext": "mp4", "protocol": "m3u8", "is_live": True,
                "url": f"http://127.0.0.1:{b}/live.m3u8"}
    with GuardedYoutubeDL({"quiet": True, "outtmpl": str(tmp_path / "%(id)s.%(ext)s")},
                          allowlist=Allowlist([f"127.0.0.1:{b}"])) as ydl, pytest.raises(GuardRefused) as caught:
        ydl.process_ie_result(live_hls, download=True)
    assert refusal_of(caught.value).reason == netguard.EXTERNAL
    assert connections(listener) == 0


def test_install_guards_an_existing_instance(listener: socket.socket, dialed: list[Any]) -> None:
    import yt_dlp

    b = port_of(listener)
    with yt_dlp.YoutubeDL({"quiet": True, "proxy": "http://127.0.0.1:9/"}) as ydl:
        install(ydl, Allowlist())
        with pytest.raises(GuardRefused):
            ydl.urlopen(f"http://127.0.0.1:{b}/")
    assert connections(listener) == 0 and not dialed


def test_refusal_of_walks_yt_dlp_wrappers() -> None:
    from yt_dlp.utils import DownloadError, ExtractorError

    inner = GuardRefused(UrlRejected(urlguard.PRIVATE))
    try:
        raise ExtractorError("wrapped", cause=inner)
    except ExtractorError as err:
        wrapped = DownloadError("ERROR: wrapped", exc_info=(type(err), err, None))
    assert refusal_of(wrapped) is inner.rejection
    assert refusal_of(DownloadError("unrelated")) is None and refusal_of(None) is None
    copy = pickle.loads(pickle.dumps(inner))  # survives Celery's exception serialisation
    assert isinstance(copy, GuardRefused) and refusal_of(copy).reason == urlguard.PRIVATE


@pytest.mark.parametrize(
    ("opts", "first"), [([], "guarded-requests"), (["prefer-legacy-http-handler"], "guarded-urllib")])
def test_only_guarded_handlers_serve_requests(opts: list[str], first: str) -> None:
    with GuardedYoutubeDL({"quiet": True, "compat_opts": opts}, allowlist=Allowlist()) as ydl:
        handlers = ydl._request_director._get_handlers(Request("http://media.test/"))
    names = [h.RH_NAME for h in handlers]
    assert names[0] == first
    assert all(isinstance(h, netguard.GUARDED_HANDLERS) for h in handlers)


# ------------------------------------------- the bots' precheck, the worker's first check

def guard_settings(**changes: Any) -> Settings:
    return Settings(**{"network_allowlist": ["127.0.0.1:8080"], "domains_allow": [], "domains_deny": [], **changes})


def test_precheck_gives_none_or_the_sentence_to_reply() -> None:
    resolve = fake_resolver({"www.youtube.com": ["142.250.1.1"], "localhost": ["127.0.0.1"],
                             "sneaky.example": ["8.8.8.8", "10.1.2.3"], "x.bad.tv": ["8.8.8.8"]})
    settings = guard_settings(domains_deny=["bad.tv"])
    assert precheck("https://www.youtube.com/watch?v=x", settings, resolve) is None
    assert precheck("http://127.0.0.1:8080/a.mp3", settings, resolve) is None  # allowlisted
    cases = {
        "ftp://www.youtube.com/a.mp3": urlguard.SCHEME,
        "file:///etc/passwd": urlguard.SCHEME,
        "http://localhost:8080/a.mp3": urlguard.PRIVATE,  # the allowlist names 127.0.0.1, not localhost
        "http://127.0.0.1:6379/": urlguard.PRIVATE,
        "http://sneaky.example/": urlguard.PRIVATE,
        "http://[::ffff:169.254.169.254]/": urlguard.PRIVATE,
        "https://nowhere.test/": urlguard.UNRESOLVABLE,
        "http://exa mple.com/": urlguard.INVALID,
        "http:///x": urlguard.NO_HOST,
        "http://8.8.8.8:0/": urlguard.BAD_PORT,
        "https://x.bad.tv/v": urlguard.SITE_DENIED,
    }
    for url, reason in cases.items():
        said = precheck(url, settings, resolve)
        assert said == Msg(urlguard.USER_TEXT[reason]), url
        text = said.english()
        assert not any(part in text for part in ("127.0.0.1", "10.1.2.3", "6379", "localhost", "passwd")), text
    allow_only = SimpleNamespace(network_allowlist=[], domains_allow=["youtube.com"], domains_deny=[])
    assert precheck("https://www.youtube.com/watch?v=x", allow_only, resolve) is None
    assert precheck("https://8.8.8.8/v.mp3", allow_only, resolve) == Msg(urlguard.USER_TEXT[urlguard.SITE_DENIED])


def test_user_text_is_a_sentence_without_details() -> None:
    for reason in (*urlguard.USER_TEXT, netguard.PROXY, netguard.EXTERNAL):
        text = urlguard.user_text(UrlRejected(reason, "10.0.0.1:6379 secret.internal")).english()
        assert text[0].isupper() and text.endswith(".")
        assert "10.0.0.1" not in text and "secret" not in text
    assert urlguard.USER_TEXT[urlguard.PRIVATE] == TEXT[Code.NOT_ALLOWED]


def test_check_target_needs_no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lookups(*args: Any) -> Any:
        raise AssertionError(f"DNS lookup {args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    target = urlguard.check_target("https://Media.Example.:8443/a", Allowlist())
    assert (target.scheme, target.host.name, target.port) == ("https", "media.example", 8443)
    assert urlguard.check_target("http://127.0.0.1:8080/a", Allowlist("127.0.0.1:8080")).port == 8080
    for url, reason in [("http://0x7f.1:8081/", urlguard.PRIVATE), ("http://[::1]/", urlguard.PRIVATE),
                        ("gopher://example.com/", urlguard.SCHEME)]:
        with pytest.raises(UrlRejected) as caught:
            urlguard.check_target(url, Allowlist("127.0.0.1:8080"))
        assert caught.value.reason == reason
    with pytest.raises(UrlRejected) as caught:
        urlguard.check_target("https://x.bad.tv/", Allowlist(), domains_deny=["bad.tv"])
    assert caught.value.reason == urlguard.SITE_DENIED


def test_download_stage_refuses_before_fetching(tmp_path: Path) -> None:
    """The worker's first line: scheme, IP literals and the domain lists, before yt-dlp or any folder."""
    from common.jobs import Job
    from tasks.download import NotAllowed, download

    settings = guard_settings(domains_deny=["bad.tv"])
    for url, reason in [("file:///etc/passwd", urlguard.SCHEME), ("http://169.254.169.254/", urlguard.PRIVATE),
                        ("https://www.bad.tv/v", urlguard.SITE_DENIED)]:
        with pytest.raises(NotAllowed) as caught:
            download(Job(id="j1", url=url), settings, tmp_path / "work", None)  # type: ignore[arg-type]
        assert caught.value.code == Code.NOT_ALLOWED and not caught.value.transient
        assert caught.value.text == urlguard.USER_TEXT[reason]
        assert not (tmp_path / "work").exists()


def test_refusals_classify_as_permanent_not_allowed() -> None:
    from yt_dlp.utils import DownloadError, ExtractorError

    from tasks.download import classify

    raw = classify(GuardRefused(UrlRejected(urlguard.PRIVATE, "127.0.0.1:6379 -> 127.0.0.1")))
    assert raw.code == Code.NOT_ALLOWED and not raw.transient
    assert raw.text == TEXT[Code.NOT_ALLOWED] and "6379" in raw.detail
    try:
        raise ExtractorError("wrapped", cause=GuardRefused(UrlRejected(urlguard.SCHEME, "ftp://x")))
    except ExtractorError as err:
        wrapped = DownloadError("ERROR: wrapped", exc_info=(type(err), err, None))
    error = classify(wrapped)
    assert error.code == Code.NOT_ALLOWED and error.text == urlguard.USER_TEXT[urlguard.SCHEME]
    copy = pickle.loads(pickle.dumps(error))  # a dead letter or a Celery result may carry it
    assert copy.code == Code.NOT_ALLOWED and copy.text == error.text
    assert classify(DownloadError("ERROR: HTTP Error 503: Service Unavailable")).code == Code.SERVER
