"""URL guard: decide whether a link that a stranger sent may be fetched.

Pure logic (no yt-dlp). ``check_url`` is the early, friendly check done by the
bot adapters; ``check_host`` is the address check that ``tasks.netguard``
repeats at connect time for every connection yt-dlp opens.

Rules: only http/https; the host must be a valid name or IP literal (every
numeric IPv4 spelling inet_aton accepts is understood: ``2130706433``,
``0x7f.1``, ``127.1``, ``0177.0.0.1``); every address the host resolves to must
be public, unless the (host, port) pair is in the :class:`Allowlist`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from common.i18n import N_, Msg

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr)
Resolver = Callable[..., Sequence[AddrInfo]]

SCHEME = "only http and https links are allowed"
PRIVATE = "this link points to a private or internal address"
NO_HOST = "this link has no host name"
INVALID = "this link is not a valid web address"
BAD_PORT = "this link has an invalid port"
UNRESOLVABLE = "the host name of this link could not be resolved"
SITE_DENIED = "links to this site are not allowed"

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 4096

_CTRL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]|\s")
_HOSTPORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[0-9]*))?")
_LABEL = re.compile(r"[a-z0-9_][a-z0-9_-]{0,62}")
_NUMERIC = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)")


class UrlRejected(Exception):
    """A link or connection refused by the guard.

    ``reason`` is short and safe to show to the user; ``detail`` (host,
    address) is for logs only.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[UrlRejected], tuple[str, str]]:
        return (type(self), (self.reason, self.detail))


# --------------------------------------------------------------- addresses

def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_V4_BLOCKED = _nets(
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
)
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_V6_BLOCKED = _nets(
    "::/96",             # unspecified, loopback, IPv4-compatible (deprecated)
    "::ffff:0:0:0/96",   # IPv4-translated
    "64:ff9b:1::/48",    # local-use NAT64
    "100::/64",          # discard-only
    "2001::/23",         # IETF protocol assignments (Teredo, benchmarking, ORCHID)
    "2001:db8::/32",     # documentation
    "3fff::/20",         # documentation (RFC 9637)
    "5f00::/16",         # SRv6 SIDs
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public_v4(ip: ipaddress.IPv4Address) -> bool:
    if any(ip in net for net in _V4_BLOCKED):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _is_public_v6(ip: ipaddress.IPv6Address) -> bool:
    if ip.scope_id:
        return False
    embedded = _embedded_v4(ip)
    if embedded is not None:
        return _is_public_v4(embedded)
    if ip not in _V6_GLOBAL_UNICAST or any(ip in net for net in _V6_BLOCKED):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_site_local)


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Embedded IPv4 (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged
    as that IPv4 address; Teredo, IPv4-compatible and the other special ranges
    are refused outright.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_v4(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        return _is_public_v6(ip)
    raise TypeError(f"expected an IP address object, got {type(ip).__name__}")


# -------------------------------------------------------------- host names

def _parse_ipv4_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:], 16)
    if len(part) > 1 and part[0] == "0":
        if not set(part) <= set("01234567"):
            raise UrlRejected(INVALID, part)
        return int(part, 8)
    return int(part)


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Parse every IPv4 spelling ``inet_aton`` accepts; None if not numeric.

    A host whose last label is numeric but that is no valid address (e.g.
    ``1.2.3.4.5``, ``foo.123``, ``1.2.3.256``) raises :class:`UrlRejected`.
    """
    parts = host.split(".")
    if not _NUMERIC.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMERIC.fullmatch(p) for p in parts):
        raise UrlRejected(INVALID, host)
    nums = [_parse_ipv4_part(p) for p in parts]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise UrlRejected(INVALID, host)
    value = nums[-1]
    for i, num in enumerate(nums[:-1]):
        value += num << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _parse_ipv6(host: str) -> ipaddress.IPv6Address:
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        raise UrlRejected(INVALID, host) from None
    if ip.scope_id:
        raise UrlRejected(INVALID, host)
    return ip


def _to_ascii(host: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UrlRejected(INVALID, host) from None


@dataclass(frozen=True)
class Host:
    """A normalised host: lower-case ASCII name, or an IP literal."""

    name: str
    ip: IPAddress | None = None


def normalize_host(raw: str) -> Host:
    """Normalise a host (IDNA, case, trailing dot, brackets, numeric IPv4 forms)."""
    if not raw:
        raise UrlRejected(NO_HOST)
    if raw.startswith("[") or ":" in raw:
        ip6 = _parse_ipv6(raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw)
        return Host(str(ip6), ip6)
    host = _to_ascii(raw)
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        raise UrlRejected(INVALID, raw)
    ip4 = parse_ipv4_loose(host)
    if ip4 is not None:
        return Host(str(ip4), ip4)
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise UrlRejected(INVALID, raw)
    return Host(host)


# --------------------------------------------------------------- allowlist

def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            raise ValueError(f"bad allowlist entry {entry!r}")
        return host, _parse_port(port, entry)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _parse_port(port, entry)
    return entry, None


def _parse_port(port: str | None, entry: str) -> int | None:
    if port is None:
        return None
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in allowlist entry {entry!r}")
    return int(port)


def _join_hostport(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


class Allowlist:
    """Hosts (any port) or host:port pairs let through although private.

    Entries: ``"redis"``, ``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``"::1"``.
    A string is split on commas. Matching is on the link's normalised host,
    never on what a name resolves to.
    """

    def __init__(self, entries: Iterable[str] | str | None = ()) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        rules: set[tuple[str, int | None]] = set()
        for raw in entries or ():
            entry = raw.strip()
            if not entry:
                continue
            host, port = _split_entry(entry)
            try:
                rules.add((normalize_host(host).name, port))
            except UrlRejected as exc:
                raise ValueError(f"bad allowlist entry {entry!r}") from exc
        self._rules = frozenset(rules)

    def allows(self, host: str, port: int | None) -> bool:
        """True if ``host`` (any spelling) on ``port`` is allowlisted."""
        if not self._rules:
            return False
        try:
            name = normalize_host(host).name
        except UrlRejected:
            return False
        return (name, None) in self._rules or (name, port) in self._rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __repr__(self) -> str:
        items = sorted(_join_hostport(h, p) for h, p in self._rules)
        return f"Allowlist({items!r})"


# ------------------------------------------------------------------ checks

@dataclass(frozen=True)
class Target:
    """The parts of a checked link that decide where it connects."""

    scheme: str
    host: Host
    port: int


def parse_target(url: str) -> Target:
    """Parse and normalise a link; no DNS. Raises :class:`UrlRejected`."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise UrlRejected(INVALID)
    url = url.strip()
    if _CTRL_OR_SPACE.search(url):
        raise UrlRejected(INVALID, url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise UrlRejected(INVALID, url) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UrlRejected(SCHEME, scheme)
    if not url[len(scheme):].startswith("://") or "\\" in parts.netloc:
        raise UrlRejected(INVALID, url)
    match = _HOSTPORT.fullmatch(parts.netloc.rpartition("@")[2])
    if match is None:
        raise UrlRejected(INVALID, parts.netloc)
    host = normalize_host(match["host"])
    return Target(scheme, host, _url_port(match["port"], scheme))


def _url_port(port: str | None, scheme: str) -> int:
    if not port:
        return DEFAULT_PORTS[scheme]
    if not 0 < int(port) < 65536:
        raise UrlRejected(BAD_PORT, port)
    return int(port)


def _literal_addrinfo(ip: IPAddress, port: int) -> AddrInfo:
    if ip.version == 4:
        return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port))
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port, 0, 0))


def addrinfo_ip(info: AddrInfo) -> IPAddress:
    """The IP address of one ``getaddrinfo`` result (scope id kept)."""
    family, sockaddr = info[0], info[4]
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise UrlRejected(PRIVATE, f"address family {family}")
    return ipaddress.ip_address(sockaddr[0])


def check_host(host: str, port: int, allowlist: Allowlist,
               resolve: Resolver | None = None) -> list[AddrInfo]:
    """Resolve ``host`` once and check every address; return the addrinfos.

    Connect only to the returned addresses. Raises :class:`UrlRejected` when
    any address is not public (unless host:port is allowlisted); resolver
    errors (``OSError``) propagate unchanged. ``resolve`` defaults to
    ``socket.getaddrinfo`` (looked up at call time).
    """
    norm = normalize_host(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    if norm.ip is not None:
        infos = [_literal_addrinfo(norm.ip, port)]
    else:
        infos = list((resolve or socket.getaddrinfo)(norm.name, port, 0, socket.SOCK_STREAM))
        if not infos:
            raise OSError(f"no addresses for {norm.name}")
    if allowlist.allows(norm.name, port):
        return infos
    for info in infos:
        ip = addrinfo_ip(info)
        if not is_public_address(ip):
            raise UrlRejected(PRIVATE, f"{_join_hostport(norm.name, port)} -> {ip}")
    return infos


def _domain_rules(domains: Iterable[str]) -> list[str]:
    rules = []
    for domain in domains:
        domain = domain.strip().lstrip("*").strip(".")
        if domain:
            rules.append(normalize_host(domain).name)
    return rules


def _domain_matches(name: str, rules: Iterable[str]) -> bool:
    return any(name == rule or name.endswith("." + rule) for rule in rules)


def _check_domains(host: Host, allow: Iterable[str], deny: Iterable[str]) -> None:
    if _domain_matches(host.name, _domain_rules(deny)):
        raise UrlRejected(SITE_DENIED, host.name)
    allow_rules = _domain_rules(allow)
    if allow_rules and (host.ip is not None or not _domain_matches(host.name, allow_rules)):
        raise UrlRejected(SITE_DENIED, host.name)


def check_site(host: str, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
    """The domain lists for a host as requested (a name or an IP literal): raises UrlRejected SITE_DENIED.

    A name in ``deny`` (or under it) is refused; with ``allow`` given, anything not in it
    (or under it), IP literals included, is refused too.
    """
    _check_domains(normalize_host(host.strip("[]")), allow, deny)


def check_target(url: str, allowlist: Allowlist, *,
                 domains_allow: Iterable[str] = (), domains_deny: Iterable[str] = ()) -> Target:
    """Every check of :func:`check_url` that needs no DNS; return the parsed target.

    Scheme, host syntax, port, the domain lists, and the address of a host
    written as an IP literal. A host *name* is left to the connect-time guard
    (``tasks.netguard``), which resolves it once and checks what it connects
    to: this is the worker's first line, where a resolver failure must stay a
    (transient) network error rather than become a refusal.
    """
    target = parse_target(url)
    _check_domains(target.host, domains_allow, domains_deny)
    if target.host.ip is not None:
        check_host(target.host.name, target.port, allowlist)
    return target


def check_url(url: str, allowlist: Allowlist, resolve: Resolver | None = None, *,
              domains_allow: Iterable[str] = (), domains_deny: Iterable[str] = ()) -> None:
    """Refuse a link unless it is http(s) to a public (or allowlisted) host.

    ``domains_allow`` / ``domains_deny`` match the link's host name and its
    subdomains (``"example.com"`` covers ``a.example.com``). Raises
    :class:`UrlRejected`; returns None when the link may be fetched.
    """
    target = check_target(url, allowlist, domains_allow=domains_allow, domains_deny=domains_deny)
    if target.host.ip is not None:
        return
    try:
        check_host(target.host.name, target.port, allowlist, resolve)
    except OSError as exc:
        raise UrlRejected(UNRESOLVABLE, f"{target.host.name}: {exc}") from exc


# ------------------------------------------------------------ user's words

#: The sentence a user reads for each refusal (in their language); PRIVATE is the NOT_ALLOWED text of common.errors.
USER_TEXT: dict[str, str] = {
    SCHEME: N_("This link isn't allowed: only http:// and https:// links can be converted."),
    PRIVATE: N_("This link isn't allowed: it points to a private or internal address."),
    NO_HOST: N_("This doesn't look like a web link: it has no site name."),
    INVALID: N_("This doesn't look like a valid web link."),
    BAD_PORT: N_("This doesn't look like a valid web link: its port number is wrong."),
    UNRESOLVABLE: N_("The site of this link couldn't be found: its name doesn't resolve."),
    SITE_DENIED: N_("Links to this site aren't allowed here."),
}


# A refusal of the worker's network guard that has no sentence of its own (a proxy, an external downloader).
GUARDED = N_("This link isn't allowed: the bot's network guard refused it.")


def user_text(rejection: UrlRejected) -> Msg:
    """One friendly sentence for a refusal, said in the user's language (never the host or address: those are
    for logs)."""
    return Msg(USER_TEXT.get(rejection.reason) or GUARDED)


class GuardSettings(Protocol):
    """The part of ``common.settings.Settings`` the guard reads (read-only, so a list will do)."""

    @property
    def network_allowlist(self) -> Sequence[str]: ...

    @property
    def domains_allow(self) -> Sequence[str]: ...

    @property
    def domains_deny(self) -> Sequence[str]: ...


def precheck(url: str, settings: GuardSettings, resolve: Resolver | None = None, *, dns: bool = True
             ) -> Msg | None:
    """The early check a chat bot makes before submitting: None, or the sentence to reply (in the user's
    language).

    Scheme, host syntax, the settings' domain lists and, unless ``dns`` is False,
    every address the host resolves to (this does DNS and blocks: from asyncio code
    run it in a thread pool of its own). Passing it is no promise: the worker checks
    again at connect time, for every redirect too.
    """
    allowlist = Allowlist(settings.network_allowlist)
    domains = {"domains_allow": settings.domains_allow, "domains_deny": settings.domains_deny}
    try:
        if dns:
            check_url(url, allowlist, resolve, **domains)
        else:
            check_target(url, allowlist, **domains)
    except UrlRejected as rejection:
        return user_text(rejection)
    return None
