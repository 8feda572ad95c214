"""Connect-time network guard for yt-dlp (SSRF protection for download jobs).

Every TCP connection a guarded ``YoutubeDL`` opens -- first request, each
redirect hop, manifests, fragments, subtitles, thumbnails -- goes through
:func:`guarded_connect`: the host is resolved once, every address is checked
with ``common.urlguard.check_host`` and the socket connects to one of exactly
those checked addresses, so DNS rebinding between check and connect is moot.

Hook: the guarded ``YoutubeDL`` gets its own ``RequestDirector`` holding only
:class:`GuardedRequestsRH` and :class:`GuardedUrllibRH` (subclasses of
yt-dlp's handlers whose connection factories are replaced; no global
monkeypatching of sockets or urllib3). Anything those two do not serve
(ftp, file, ws, impersonation, proxies) fails closed.  Subprocess downloaders
(ffmpeg/aria2c/curl/rtmpdump as *downloaders*) would fetch URLs on their own,
so they are refused for guarded instances.

Use::

    with GuardedYoutubeDL(params, allowlist=Allowlist(settings.network_allowlist)) as ydl:
        ydl.download([url])

    # or, on an existing instance:  install(ydl, allowlist)

Recognising a refusal: ``refusal_of(exc)`` returns the ``UrlRejected`` (with
its user-facing ``reason``) for whatever yt-dlp raised -- a raw
:class:`GuardRefused` or a ``DownloadError``/``ExtractorError`` wrapping it --
else None.  In practice yt-dlp lets :class:`GuardRefused` (a yt-dlp
``RequestError``, *not* a ``DownloadError``) propagate raw out of
``extract_info``/``download``/``urlopen``.  The message always contains
:data:`REFUSED_MARKER`, the exception pickles (Celery), and every refusal is
also recorded in ``ydl.netguard_refusals``.

The operator's own services are the only exceptions, each to exactly its
host:port: the PO-token provider (``provider``), reached only by the provider
plugin's own calls (yt-dlp's ``PoTokenProvider._request_webpage`` runs them
with a context flag set; a link or a redirect to the same host:port is refused
like any private address, even when it is public), and the route's proxy
(``proxy``), to which only the proxy pools connect. Through a proxy, the
link's host is resolved and checked before each request and each redirect is
handed to it; for HTTPS (CONNECT) and SOCKS the proxy is then asked for
exactly the checked address (the TLS name stays the link's), so DNS rebinding
between check and connect is moot there too. A plain http:// request through
an HTTP proxy names the host, and the proxy resolves it again: only there
does the proxy's own resolver decide. Every other proxy is refused (even from
the environment). The domain lists (DOMAINS_ALLOW / DOMAINS_DENY) hold for
the host of every connection as requested, redirects included, like the
address checks: with an allow list, a site's media hosts (its CDNs) must be
on it too. ffmpeg/aria2c/
curl/rtmpdump used as yt-dlp *downloaders* are refused (live HLS, download
sections, ...); ffmpeg post-processing of local files is unaffected. Programs
yt-dlp may start for extractors (YouTube's JS challenge runtime, PhantomJS)
are outside this guard.
"""

from __future__ import annotations

import contextvars
import functools
import http.client
import logging
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yt_dlp import YoutubeDL
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.downloader.rtmp import RtmpFD
from yt_dlp.extractor.youtube.pot.provider import PoTokenProvider
from yt_dlp.networking import _urllib
from yt_dlp.networking.common import _RH_PREFERENCES, RequestHandler, Response
from yt_dlp.networking.exceptions import RequestError, UnsupportedRequest
from yt_dlp.utils.networking import select_proxy

from common import i18n
from common.errors import Code, JobError
from common.i18n import N_, Msg
from common.urlguard import (
    INVALID,
    PRIVATE,
    SCHEME,
    AddrInfo,
    Allowlist,
    Resolver,
    UrlRejected,
    addrinfo_ip,
    check_host,
    check_site,
    normalize_host,
)

try:
    import requests
    import urllib3
    from yt_dlp.networking import _helper, _requests
except ImportError:  # requests/urllib3 missing or too old: urllib only (and no proxies)
    _requests = None

log = logging.getLogger(__name__)

PROXY = "downloads through a proxy other than the bot's own are not allowed by the network guard"
EXTERNAL = "this media needs an external downloader, which the network guard does not allow"
REFUSED_MARKER = "refused by network guard"

# Forced on every guarded YoutubeDL: no proxy but the route's (none from the environment),
# no file://, native downloaders only, errors raised rather than swallowed.
SAFE_PARAMS: Mapping[str, Any] = {
    "proxy": "",
    "enable_file_urls": False,
    "external_downloader": {"default": "native"},
    "hls_prefer_native": True,
    "ignoreerrors": False,
}


class GuardRefused(RequestError):
    """yt-dlp-side exception for a refusal; ``rejection`` is the UrlRejected."""

    def __init__(self, rejection: UrlRejected) -> None:
        self.rejection = rejection
        super().__init__(f"{REFUSED_MARKER}: {rejection.reason}", cause=rejection)

    def __reduce__(self) -> tuple[type[GuardRefused], tuple[UrlRejected]]:
        return (type(self), (self.rejection,))


def _system_resolve(*args: Any) -> list[AddrInfo]:
    return socket.getaddrinfo(*args)


Endpoint = tuple[str, int]  # (normalised host, port)

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}

# Set only while a PO-token provider plugin makes its own request (see _mark_provider_calls).
_PROVIDER_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("netguard_provider_call", default=False)


def endpoint_of(url: str) -> Endpoint:
    """The (normalised host, port) a service URL such as ``http://pot:4416`` or ``socks5://u:p@proxy`` names."""
    parts = urllib.parse.urlsplit(url)
    return normalize_host(parts.hostname or "").name, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def _show(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Policy:
    """What the guard lets through, and the refusals it has made.

    ``provider`` and ``proxy`` are the operator's services this YoutubeDL may use;
    ``reserved`` holds every such service (the provider, the whole proxy pool):
    never the target of a link, whatever its spelling or address. ``domains_allow`` /
    ``domains_deny`` (DOMAINS_ALLOW / DOMAINS_DENY) hold for the host of every connection
    as requested, like the address checks. ``max_page_bytes`` caps every whole read of a
    response (see :class:`CappedResponse`).
    """

    allowlist: Allowlist
    resolve: Resolver = _system_resolve
    provider: Endpoint | None = None
    proxy: Endpoint | None = None
    reserved: frozenset[Endpoint] = frozenset()
    max_page_bytes: int | None = None
    domains_allow: tuple[str, ...] = ()
    domains_deny: tuple[str, ...] = ()
    refusals: list[UrlRejected] = field(default_factory=list, compare=False)
    _reserved_addresses: list[set[tuple[str, int]]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def build(cls, allowlist: Allowlist, resolve: Resolver | None = None, *, provider: str | None = None,
              proxy: str | None = None, reserved: Iterable[str] = (), max_page_bytes: int | None = None,
              domains_allow: Iterable[str] = (), domains_deny: Iterable[str] = ()) -> Policy:
        """A policy from service URLs (the provider's and the route proxy's are reserved too)."""
        ends = {endpoint_of(url) for url in (*reserved, provider, proxy) if url}
        return cls(allowlist, resolve or _system_resolve, endpoint_of(provider) if provider else None,
                   endpoint_of(proxy) if proxy else None, frozenset(ends), max_page_bytes,
                   tuple(domains_allow), tuple(domains_deny))

    def note(self, rejection: UrlRejected) -> UrlRejected:
        """Record a refusal (one met by a provider plugin's own call is the operator's, not the link's: logged)."""
        if _PROVIDER_CALL.get():
            log.warning("PO-token provider call refused by the network guard (is POT_PROVIDER_URL set?): %s %s",
                        rejection.reason, rejection.detail)
        else:
            self.refusals.append(rejection)
        return rejection

    def refuse(self, rejection: UrlRejected) -> GuardRefused:
        """Record a refusal and return the exception to raise."""
        return GuardRefused(self.note(rejection))

    def _provider_call(self, endpoint: Endpoint) -> bool:
        return endpoint == self.provider and _PROVIDER_CALL.get()

    def _not_reserved(self, endpoint: Endpoint) -> None:
        if endpoint in self.reserved:
            raise UrlRejected(PRIVATE, f"{_show(endpoint)} is one of the bot's own services")

    def _addresses_of_reserved(self) -> set[tuple[str, int]]:
        if not self._reserved_addresses:  # resolved once per policy (per job); a name that fails counts for none
            found: set[tuple[str, int]] = set()
            for endpoint in self.reserved:
                try:
                    infos = check_host(*endpoint, Allowlist([_show(endpoint)]), self.resolve)
                except (OSError, UrlRejected):
                    continue
                found |= {(str(addrinfo_ip(info)), endpoint[1]) for info in infos}
            self._reserved_addresses.append(found)
        return self._reserved_addresses[0]

    def check_target(self, host: str, port: int) -> list[AddrInfo]:
        """Resolve once and check a destination; return the addresses to connect to (raises UrlRejected).

        The provider plugin's own call reaches the provider's host:port unchecked; every other
        destination must pass the domain lists, be public (or allowlisted) and none of the bot's
        own services.
        """
        endpoint = (normalize_host(host.strip("[]")).name, port)
        if self._provider_call(endpoint):
            return check_host(host, port, Allowlist([_show(endpoint)]), self.resolve)
        check_site(host, self.domains_allow, self.domains_deny)
        self._not_reserved(endpoint)
        infos = check_host(host, port, self.allowlist, self.resolve)
        reserved = self.reserved and self._addresses_of_reserved()
        for info in infos:
            if reserved and (str(addrinfo_ip(info)), port) in reserved:
                raise UrlRejected(PRIVATE, f"{_show(endpoint)} -> {addrinfo_ip(info)} is one of the bot's own services")
        return infos

    def check_request(self, url: str, proxied: bool) -> None:
        """Before each request and each redirect hop is sent (records its refusal).

        Direct: the bot's own services are refused by name here (a pooled keep-alive connection
        skips the connect-time check); the connect-time check does the rest. Through the
        proxy: the link's host is resolved and checked now, before the proxy ever sees it.
        """
        try:
            self._check_request(url, proxied)
        except UrlRejected as rejection:
            self.note(rejection)
            raise

    def _check_request(self, url: str, proxied: bool) -> None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return  # data: needs no network; other schemes never get this far
        try:
            endpoint = (normalize_host(parts.hostname or "").name, parts.port or _DEFAULT_PORTS[scheme])
        except (UrlRejected, ValueError):
            if proxied:
                raise UrlRejected(INVALID, url) from None
            return  # unparseable: the connect-time check refuses it
        if self._provider_call(endpoint):
            return
        self._not_reserved(endpoint)
        if proxied:
            self.check_target(*endpoint)

    def check_proxy(self, proxy: str) -> None:
        """Only the route's own proxy may be used."""
        try:
            endpoint: Endpoint | None = endpoint_of(proxy)
        except (UrlRejected, ValueError):
            endpoint = None
        if self.proxy is None or endpoint != self.proxy:
            raise UrlRejected(PROXY)


# ------------------------------------------------------------- connecting

def _connect(info: AddrInfo, timeout: Any, source_address: Any, socket_options: Any) -> socket.socket:
    """Open a socket to one already-checked getaddrinfo result."""
    family, socktype, proto, _, sockaddr = info
    sock = socket.socket(family, socktype or socket.SOCK_STREAM, proto)
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        if timeout is None or isinstance(timeout, int | float):
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
        return sock
    except BaseException:
        sock.close()
        raise


def _same_family(infos: list[AddrInfo], source_address: Any) -> list[AddrInfo]:
    if not source_address:
        return infos
    family = socket.AF_INET6 if ":" in source_address[0] else socket.AF_INET
    kept = [info for info in infos if info[0] == family]
    if not kept:
        raise OSError(f"no address of the family of source address {source_address[0]}")
    return kept


def guarded_connect(policy: Policy, address: tuple[str, int], timeout: Any = None,
                    source_address: Any = None, socket_options: Any = None) -> socket.socket:
    """Resolve once, check every address, connect only to a checked one.

    Raises ``UrlRejected`` (recorded in ``policy.refusals``) before any
    connection is attempted; resolver and connect errors stay ``OSError``.
    """
    host, port = address
    try:
        infos = policy.check_target(host, port)
    except UrlRejected as exc:
        policy.note(exc)
        raise
    return _connect_any(infos, timeout, source_address, socket_options)


def proxy_connect(policy: Policy, address: tuple[str, int], timeout: Any = None,
                  source_address: Any = None, socket_options: Any = None) -> socket.socket:
    """Connect to the route's proxy (the operator's: it may be on a private address), and nowhere else."""
    host, port = address
    try:
        endpoint = (normalize_host(host.strip("[]")).name, port)
        if endpoint != policy.proxy:
            raise UrlRejected(PROXY, _show(endpoint))
        infos = check_host(host, port, Allowlist([_show(endpoint)]), policy.resolve)
    except UrlRejected as exc:
        policy.note(exc)
        raise
    return _connect_any(infos, timeout, source_address, socket_options)


def _connect_any(infos: list[AddrInfo], timeout: Any, source_address: Any, socket_options: Any) -> socket.socket:
    error: OSError | None = None
    for info in _same_family(infos, source_address):
        try:
            return _connect(info, timeout, source_address, socket_options)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


# ------------------------------------------------------------------ urllib

def _guarded_http_connection(policy: Policy, http_class: type[http.client.HTTPConnection],
                             source_address: str | None, *args: Any, **kwargs: Any) -> http.client.HTTPConnection:
    conn = http_class(*args, **kwargs)
    conn._create_connection = functools.partial(guarded_connect, policy)  # type: ignore[attr-defined]
    if source_address is not None:
        conn.source_address = (source_address, 0)  # type: ignore[attr-defined]  # set in __init__, not in typeshed
    return conn


class _GuardedHTTPHandler(_urllib.HTTPHandler):
    """yt-dlp's urllib HTTP handler with guarded connections and no SOCKS."""

    def __init__(self, policy: Policy, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._policy = policy

    def _factory(self, req: urllib.request.Request, base: type[http.client.HTTPConnection]) -> Any:
        if req.headers.pop("Ytdl-socks-proxy", None):
            raise UrlRejected(PROXY)
        return functools.partial(_guarded_http_connection, self._policy, base, self._source_address)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self._factory(req, http.client.HTTPConnection), req)

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self._factory(req, http.client.HTTPSConnection), req, context=self._context)


class _GuardedRequestCheck(urllib.request.BaseHandler):
    """Runs before every request urllib sends, redirects included (urllib never proxies here)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def http_request(self, req: urllib.request.Request) -> urllib.request.Request:
        self._policy.check_request(req.full_url, proxied=False)
        return req

    https_request = http_request


class _GuardedRedirectHandler(_urllib.RedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise UrlRejected(SCHEME, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# ------------------------------------------------------ request handlers

class _GuardMixin(RequestHandler):
    """Shared checks: http(s)/data only, no proxy but the route's, refusals as GuardRefused."""

    _policy: Policy

    def _check_url_scheme(self, request: Any) -> str:
        scheme = urllib.parse.urlsplit(request.url).scheme.lower()
        if scheme not in ("http", "https", "data"):
            raise self._policy.refuse(UrlRejected(SCHEME, request.url))
        return super()._check_url_scheme(request)

    def _check_proxies(self, proxies: Mapping[str, str | None]) -> None:
        for key, url in proxies.items():
            if key == "no" or url is None:
                continue
            try:
                self._policy.check_proxy(url)
            except UrlRejected as exc:
                raise self._policy.refuse(exc) from None
        super()._check_proxies(proxies)

    def _send(self, request: Any) -> Any:
        try:
            response = super()._send(request)
        except UrlRejected as exc:
            raise GuardRefused(exc) from exc
        limit = self._policy.max_page_bytes
        return CappedResponse(response, limit) if limit else response


WHOLE_READ_CHUNK = 1 << 20


class CappedResponse(Response):
    """A response whose whole reads (how yt-dlp reads a page, a manifest, JSON) stop past ``limit`` decoded bytes.

    The count is of the bytes as read, after gzip, deflate or brotli are undone, so a small
    compressed bomb is stopped as soon as a page that large would be. Reads of a given size
    pass untouched: the media stream is read in blocks and counted against MAX_FILESIZE by
    the downloader. Past the limit: JobError PAGE_TOO_LARGE (not transient).

    It wraps the handler's response (and closes it when dropped, as that one would have been).
    """

    def __init__(self, inner: Response, limit: int) -> None:
        super().__init__(inner, inner.url, {}, inner.status, inner.reason, inner.extensions)
        self.headers = inner.headers
        self.limit = limit

    def read(self, amt: int | None = None) -> bytes:
        data = self.fp.read(amt) if amt is not None and amt >= 0 else self._read_whole()
        if self.fp.closed:
            self.close()
        return data

    def _read_whole(self) -> bytes:
        chunks, size = [], 0
        while chunk := self.fp.read(WHOLE_READ_CHUNK):
            size += len(chunk)
            if size > self.limit:
                self.close()
                host = urllib.parse.urlsplit(self.url).hostname
                raise JobError(Code.PAGE_TOO_LARGE, f"{host}: over {self.limit} bytes",
                               hint=Msg(N_("The limit is %(limit)s (%(setting)s)."), limit=i18n.size(self.limit),
                                        setting="MAX_PAGE_BYTES"))
            chunks.append(chunk)
        return b"".join(chunks)


class GuardedUrllibRH(_GuardMixin, _urllib.UrllibRH):
    """urllib transport (http, https, data); every connection guarded."""

    _SUPPORTED_URL_SCHEMES = ("http", "https", "data")
    RH_KEY = "Urllib"  # keeps compat_opts "prefer-legacy-http-handler" working
    RH_NAME = "guarded-urllib"

    def __init__(self, *, netguard_policy: Policy, **kwargs: Any) -> None:
        self._policy = netguard_policy
        kwargs["enable_file_urls"] = False
        super().__init__(**kwargs)

    def _check_proxies(self, proxies: Mapping[str, str | None]) -> None:
        super()._check_proxies(proxies)
        if any(url is not None for key, url in proxies.items() if key != "no"):
            raise UnsupportedRequest("the route's proxy is served by the guarded requests handler only")

    def _create_instance(self, proxies: Any, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
        opener = urllib.request.OpenerDirector()  # no ProxyHandler, FTPHandler or FileHandler
        for handler in (
            _GuardedHTTPHandler(
                self._policy, debuglevel=int(bool(self.verbose)), source_address=self.source_address,
                context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
            _GuardedRequestCheck(self._policy),
            urllib.request.HTTPCookieProcessor(cookiejar),
            urllib.request.DataHandler(),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
            _GuardedRedirectHandler(),
        ):
            opener.add_handler(handler)
        opener.addheaders = []
        return opener


if _requests is not None:
    def _urllib3_errors(conn: Any, connect: Any) -> socket.socket:
        """Our connect errors as the urllib3 exceptions requests expects (a refusal passes as it is)."""
        try:
            return connect()
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc

    class _GuardedConnMixin:
        """urllib3 connection whose socket comes from guarded_connect."""

        _netguard_policy: Policy

        def _new_conn(self) -> socket.socket:
            return _urllib3_errors(self, lambda: guarded_connect(
                self._netguard_policy, (self._dns_host, self.port), self.timeout,  # type: ignore[attr-defined]
                self.source_address, self.socket_options))  # type: ignore[attr-defined]

    class _ProxyConnMixin:
        """A connection of a proxy pool: its socket goes to the route's proxy and nowhere else."""

        _netguard_policy: Policy

        def _new_conn(self) -> socket.socket:
            return _urllib3_errors(self, lambda: proxy_connect(
                self._netguard_policy, (self._dns_host, self.port), self.timeout,  # type: ignore[attr-defined]
                self.source_address, self.socket_options))  # type: ignore[attr-defined]

        def set_tunnel(self, host: str, port: int | None = None, headers: Any = None, scheme: str = "http") -> None:
            """CONNECT to the checked address, not the name (the proxy cannot be rebound); TLS keeps the name."""
            try:
                infos = self._netguard_policy.check_target(host, port or 443)
            except UrlRejected as exc:
                self._netguard_policy.note(exc)
                raise
            if getattr(self, "server_hostname", None) is None:
                self.server_hostname = host
            shown = f"[{host}]" if ":" in host else host
            self._netguard_host = shown if port in (None, self.default_port) else f"{shown}:{port}"  # type: ignore[attr-defined]
            super().set_tunnel(str(addrinfo_ip(infos[0])), port, headers, scheme)  # type: ignore[misc]

        def putrequest(self, method: str, url: str, skip_host: bool = False,
                       skip_accept_encoding: bool = False) -> None:
            """http.client names the tunnel's address in Host: the site gets the link's name, as without a proxy."""
            tunnel = getattr(self, "_tunnel_host", None) and getattr(self, "_netguard_host", None)
            super().putrequest(method, url, skip_host=skip_host or bool(tunnel),  # type: ignore[misc]
                               skip_accept_encoding=skip_accept_encoding)
            if tunnel and not skip_host:
                self.putheader("Host", tunnel)  # type: ignore[attr-defined]

    class _SocksConnMixin:
        """A connection through the route's SOCKS proxy, which is asked for the checked address only."""

        _netguard_policy: Policy
        _proxy_args: dict[str, Any]

        def _new_conn(self) -> socket.socket:
            policy = self._netguard_policy
            proxy = (self._proxy_args["addr"], self._proxy_args["port"])
            try:
                if (normalize_host(proxy[0].strip("[]")).name, proxy[1]) != policy.proxy:
                    raise UrlRejected(PROXY, _show(proxy))
                infos = policy.check_target(self.host, self.port)  # type: ignore[attr-defined]
            except UrlRejected as exc:
                policy.note(exc)
                raise
            target = (str(addrinfo_ip(infos[0])), self.port)  # type: ignore[attr-defined]
            try:
                return _helper.create_connection(
                    proxy, timeout=self.timeout, source_address=self.source_address,  # type: ignore[attr-defined]
                    _create_socket_func=functools.partial(_helper.create_socks_proxy_socket, target, self._proxy_args))
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"Connection to {proxy[0]} timed out. (connect timeout={self.timeout})",  # type: ignore[attr-defined]
                ) from exc
            except _requests.SocksProxyError as exc:
                raise urllib3.exceptions.ProxyError(str(exc), exc) from exc
            except OSError as exc:
                raise urllib3.exceptions.NewConnectionError(
                    self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]

    def _pools(policy: Policy, name: str, mixin: type, http_base: type, https_base: type) -> dict[str, type]:
        attrs = {"_netguard_policy": policy}
        http_conn = type(f"{name}HTTPConnection", (mixin, http_base), attrs)
        https_conn = type(f"{name}HTTPSConnection", (mixin, https_base), attrs)
        return {
            "http": type(f"{name}HTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type(f"{name}HTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }

    def _pool_classes(policy: Policy) -> dict[str, type]:
        return _pools(policy, "Guarded", _GuardedConnMixin, urllib3.connection.HTTPConnection,
                      urllib3.connection.HTTPSConnection)

    def _proxy_pool_classes(policy: Policy, proxy: str) -> dict[str, type]:
        if proxy.lower().startswith("socks"):
            return _pools(policy, "GuardedSocks", _SocksConnMixin, _requests.SocksHTTPConnection,
                          _requests.SocksHTTPSConnection)
        return _pools(policy, "GuardedProxy", _ProxyConnMixin, urllib3.connection.HTTPConnection,
                      urllib3.connection.HTTPSConnection)

    class _GuardedAdapter(_requests.RequestsHTTPAdapter):
        def __init__(self, policy: Policy, **kwargs: Any) -> None:
            self._policy = policy
            super().__init__(**kwargs)

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = _pool_classes(self._policy)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            try:
                self._policy.check_proxy(proxy)
            except UrlRejected as exc:
                self._policy.note(exc)
                raise
            fresh = proxy not in self.proxy_manager
            manager = super().proxy_manager_for(proxy, **kwargs)
            if fresh:
                manager.pool_classes_by_scheme = _proxy_pool_classes(self._policy, proxy)
            return manager

        def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                            cert: Any = None) -> Any:
            """Every request and every redirect hop passes here before a connection is picked."""
            try:
                self._policy.check_request(request.url, proxied=select_proxy(request.url, proxies or {}) is not None)
            except OSError as exc:  # the link's host does not resolve: nothing to hand to the proxy
                raise requests.exceptions.ConnectionError(exc, request=request) from exc
            return super().get_connection_with_tls_context(request, verify, proxies, cert)

    class _GuardedSession(_requests.RequestsSession):
        def rebuild_method(self, prepared_request: Any, response: Any) -> None:
            if urllib.parse.urlsplit(prepared_request.url).scheme.lower() not in ("http", "https"):
                raise UrlRejected(SCHEME, prepared_request.url)
            super().rebuild_method(prepared_request, response)

    class GuardedRequestsRH(_GuardMixin, _requests.RequestsRH):
        """requests/urllib3 transport (http, https, keep-alive pools); every connection guarded."""

        RH_KEY = "Requests"
        RH_NAME = "guarded-requests"

        def __init__(self, *, netguard_policy: Policy, **kwargs: Any) -> None:
            self._policy = netguard_policy
            super().__init__(**kwargs)

        def _create_instance(self, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
            session = _GuardedSession()
            adapter = _GuardedAdapter(
                self._policy, ssl_context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support),
                source_address=self.source_address, max_retries=urllib3.util.retry.Retry(False))
            session.adapters.clear()
            session.headers = requests.models.CaseInsensitiveDict()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.cookies = cookiejar
            session.trust_env = False
            return session

    GUARDED_HANDLERS: tuple[type, ...] = (GuardedRequestsRH, GuardedUrllibRH)
else:
    GUARDED_HANDLERS = (GuardedUrllibRH,)


# --------------------------------------------------- subprocess downloaders

def _refusing(real_download: Any) -> Any:
    @functools.wraps(real_download)
    def wrapper(self: Any, filename: str, info_dict: dict[str, Any]) -> Any:
        policy = getattr(self.ydl, "netguard_policy", None)
        if policy is not None:
            raise policy.refuse(UrlRejected(EXTERNAL, f"{type(self).__name__}: {info_dict.get('url')}"))
        return real_download(self, filename, info_dict)

    wrapper.netguard = True  # type: ignore[attr-defined]
    return wrapper


def _refuse_subprocess_downloaders() -> None:
    """Make ffmpeg/aria2c/curl/wget/rtmpdump downloaders refuse guarded ydls (idempotent).

    Unguarded YoutubeDL instances are unaffected.
    """
    for cls in (ExternalFD, RtmpFD):
        if not getattr(cls.real_download, "netguard", False):
            cls.real_download = _refusing(cls.real_download)


# ------------------------------------------------------ the provider's own calls

def _marking_provider_calls(real_request: Any) -> Any:
    @functools.wraps(real_request)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _PROVIDER_CALL.set(True)
        try:
            return real_request(self, *args, **kwargs)
        finally:
            _PROVIDER_CALL.reset(token)

    wrapper.netguard = True  # type: ignore[attr-defined]
    return wrapper


def _mark_provider_calls() -> None:
    """Flag the requests PO-token provider plugins make through yt-dlp's framework (idempotent).

    ``PoTokenProvider._request_webpage`` is the one way a provider plugin reaches its server;
    while it runs, and only then, the provider's host:port is let through.
    """
    if not getattr(PoTokenProvider._request_webpage, "netguard", False):
        PoTokenProvider._request_webpage = _marking_provider_calls(PoTokenProvider._request_webpage)


# ------------------------------------------------------------------ public

def guarded_ydl_params(params: Mapping[str, Any] | None = None, proxy: str | None = None) -> dict[str, Any]:
    """``params`` with :data:`SAFE_PARAMS` forced over it (a new dict); ``proxy`` is the route's, if any."""
    return {**(params or {}), **SAFE_PARAMS, "proxy": proxy or ""}


def guarded_handlers(policy: Policy) -> list[Any]:
    """Handler factories for ``YoutubeDL.build_request_director``."""
    return [functools.partial(cls, netguard_policy=policy) for cls in GUARDED_HANDLERS]


def _prepare() -> None:
    _refuse_subprocess_downloaders()
    _mark_provider_calls()


class GuardedYoutubeDL(YoutubeDL):
    """A YoutubeDL whose every connection is checked by the network guard.

    ``provider``: the PO-token provider's URL (its plugin's own calls may reach it);
    ``proxy``: the one proxy to download through; ``reserved``: the URLs of all the
    operator's services (the whole proxy pool), which no link may reach.
    """

    def __init__(self, params: Mapping[str, Any] | None = None, auto_init: Any = True, *,
                 allowlist: Allowlist, resolve: Resolver | None = None, provider: str | None = None,
                 proxy: str | None = None, reserved: Sequence[str] = (), max_page_bytes: int | None = None,
                 domains_allow: Sequence[str] = (), domains_deny: Sequence[str] = ()) -> None:
        self.netguard_policy = Policy.build(allowlist, resolve, provider=provider, proxy=proxy, reserved=reserved,
                                            max_page_bytes=max_page_bytes, domains_allow=domains_allow,
                                            domains_deny=domains_deny)
        _prepare()
        super().__init__(guarded_ydl_params(params, proxy), auto_init)

    def build_request_director(self, handlers: Iterable[Any], preferences: Any = None) -> Any:
        return super().build_request_director(guarded_handlers(self.netguard_policy), preferences)

    @property
    def netguard_refusals(self) -> list[UrlRejected]:
        """Refusals made so far (also those yt-dlp logged and swallowed)."""
        return list(self.netguard_policy.refusals)


def install(ydl: YoutubeDL, allowlist: Allowlist, resolve: Resolver | None = None, *, provider: str | None = None,
            proxy: str | None = None, reserved: Sequence[str] = (), max_page_bytes: int | None = None,
            domains_allow: Sequence[str] = (), domains_deny: Sequence[str] = ()) -> YoutubeDL:
    """Guard an existing YoutubeDL in place (forces SAFE_PARAMS, replaces its director)."""
    policy = Policy.build(allowlist, resolve, provider=provider, proxy=proxy, reserved=reserved,
                          max_page_bytes=max_page_bytes, domains_allow=domains_allow, domains_deny=domains_deny)
    _prepare()
    ydl.params.update(guarded_ydl_params(proxy=proxy))
    ydl.__dict__.pop("proxies", None)
    old = ydl.__dict__.pop("_request_director", None)
    if old is not None:
        old.close()
    ydl.netguard_policy = policy
    ydl._request_director = YoutubeDL.build_request_director(ydl, guarded_handlers(policy), _RH_PREFERENCES)
    return ydl


def _linked(exc: BaseException) -> Iterable[Any]:
    exc_info = getattr(exc, "exc_info", None)
    if isinstance(exc_info, tuple) and len(exc_info) > 1:
        yield exc_info[1]
    yield getattr(exc, "cause", None)
    yield exc.__cause__
    yield exc.__context__


def refusal_of(exc: BaseException | None) -> UrlRejected | None:
    """The guard's UrlRejected behind ``exc`` (DownloadError, ExtractorError, ...), or None."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, GuardRefused):
            return current.rejection
        if isinstance(current, UrlRejected):
            return current
        pending.extend(_linked(current))
    return None
