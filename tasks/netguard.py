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

Caveats: proxies are refused (``proxy`` is forced to "" so environment
proxies are ignored too) because through a proxy the target would be resolved
out of our sight. The domain allow/deny lists of ``check_url`` are *not*
applied here (CDN redirects must work); only addresses are. ffmpeg/aria2c/
curl/rtmpdump used as yt-dlp *downloaders* are refused (live HLS, download
sections, ...); ffmpeg post-processing of local files is unaffected. Programs
yt-dlp may start for extractors (YouTube's JS challenge runtime, PhantomJS)
are outside this guard.
"""

from __future__ import annotations

import functools
import http.client
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yt_dlp import YoutubeDL
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.downloader.rtmp import RtmpFD
from yt_dlp.networking import _urllib
from yt_dlp.networking.common import _RH_PREFERENCES, RequestHandler
from yt_dlp.networking.exceptions import RequestError

from common.urlguard import SCHEME, AddrInfo, Allowlist, Resolver, UrlRejected, check_host

try:
    import requests
    import urllib3
    from yt_dlp.networking import _requests
except ImportError:  # requests/urllib3 missing or too old: urllib only
    _requests = None

PROXY = "downloads through a proxy are not allowed by the network guard"
EXTERNAL = "this media needs an external downloader, which the network guard does not allow"
REFUSED_MARKER = "refused by network guard"

# Forced on every guarded YoutubeDL: no proxies (not even from the environment),
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


@dataclass(frozen=True)
class Policy:
    """What the guard lets through, and the refusals it has made."""

    allowlist: Allowlist
    resolve: Resolver = _system_resolve
    refusals: list[UrlRejected] = field(default_factory=list, compare=False)

    def refuse(self, rejection: UrlRejected) -> GuardRefused:
        """Record a refusal and return the exception to raise."""
        self.refusals.append(rejection)
        return GuardRefused(rejection)


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
        infos = check_host(host, port, policy.allowlist, policy.resolve)
    except UrlRejected as exc:
        policy.refusals.append(exc)
        raise
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
        conn.source_address = (source_address, 0)
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


class _GuardedRedirectHandler(_urllib.RedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise UrlRejected(SCHEME, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# ------------------------------------------------------ request handlers

class _GuardMixin(RequestHandler):
    """Shared checks: http(s)/data only, no proxies, refusals as GuardRefused."""

    _policy: Policy

    def _check_url_scheme(self, request: Any) -> str:
        scheme = urllib.parse.urlsplit(request.url).scheme.lower()
        if scheme not in ("http", "https", "data"):
            raise self._policy.refuse(UrlRejected(SCHEME, request.url))
        return super()._check_url_scheme(request)

    def _check_proxies(self, proxies: Mapping[str, str | None]) -> None:
        if any(url is not None for key, url in proxies.items() if key != "no"):
            raise self._policy.refuse(UrlRejected(PROXY))

    def _send(self, request: Any) -> Any:
        try:
            return super()._send(request)
        except UrlRejected as exc:
            raise GuardRefused(exc) from exc


class GuardedUrllibRH(_GuardMixin, _urllib.UrllibRH):
    """urllib transport (http, https, data); every connection guarded."""

    _SUPPORTED_URL_SCHEMES = ("http", "https", "data")
    RH_KEY = "Urllib"  # keeps compat_opts "prefer-legacy-http-handler" working
    RH_NAME = "guarded-urllib"

    def __init__(self, *, netguard_policy: Policy, **kwargs: Any) -> None:
        self._policy = netguard_policy
        kwargs["enable_file_urls"] = False
        super().__init__(**kwargs)

    def _create_instance(self, proxies: Any, cookiejar: Any, legacy_ssl_support: Any = None) -> Any:
        opener = urllib.request.OpenerDirector()  # no ProxyHandler, FTPHandler or FileHandler
        for handler in (
            _GuardedHTTPHandler(
                self._policy, debuglevel=int(bool(self.verbose)), source_address=self.source_address,
                context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
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
    class _GuardedConnMixin:
        """urllib3 connection whose socket comes from guarded_connect."""

        _netguard_policy: Policy

        def _new_conn(self) -> socket.socket:
            try:
                return guarded_connect(self._netguard_policy, (self._dns_host, self.port), self.timeout,
                                       self.source_address, self.socket_options)
            except socket.gaierror as exc:
                raise urllib3.exceptions.NameResolutionError(self.host, self, exc) from exc
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from exc
            except OSError as exc:
                raise urllib3.exceptions.NewConnectionError(
                    self, f"Failed to establish a new connection: {exc}") from exc

    def _pool_classes(policy: Policy) -> dict[str, type]:
        attrs = {"_netguard_policy": policy}
        http_conn = type("GuardedHTTPConnection", (_GuardedConnMixin, urllib3.connection.HTTPConnection), attrs)
        https_conn = type("GuardedHTTPSConnection", (_GuardedConnMixin, urllib3.connection.HTTPSConnection), attrs)
        return {
            "http": type("GuardedHTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("GuardedHTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }

    class _GuardedAdapter(_requests.RequestsHTTPAdapter):
        def __init__(self, policy: Policy, **kwargs: Any) -> None:
            self._policy = policy
            super().__init__(**kwargs)

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = _pool_classes(self._policy)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            raise UrlRejected(PROXY)

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

    GUARDED_HANDLERS: tuple[type[RequestHandler], ...] = (GuardedRequestsRH, GuardedUrllibRH)
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


# ------------------------------------------------------------------ public

def guarded_ydl_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``params`` with :data:`SAFE_PARAMS` forced over it (a new dict)."""
    return {**(params or {}), **SAFE_PARAMS}


def guarded_handlers(policy: Policy) -> list[Any]:
    """Handler factories for ``YoutubeDL.build_request_director``."""
    return [functools.partial(cls, netguard_policy=policy) for cls in GUARDED_HANDLERS]


class GuardedYoutubeDL(YoutubeDL):
    """A YoutubeDL whose every connection is checked by the network guard."""

    def __init__(self, params: Mapping[str, Any] | None = None, auto_init: Any = True, *,
                 allowlist: Allowlist, resolve: Resolver | None = None) -> None:
        self.netguard_policy = Policy(allowlist, resolve or _system_resolve)
        _refuse_subprocess_downloaders()
        super().__init__(guarded_ydl_params(params), auto_init)

    def build_request_director(self, handlers: Iterable[Any], preferences: Any = None) -> Any:
        return super().build_request_director(guarded_handlers(self.netguard_policy), preferences)

    @property
    def netguard_refusals(self) -> list[UrlRejected]:
        """Refusals made so far (also those yt-dlp logged and swallowed)."""
        return list(self.netguard_policy.refusals)


def install(ydl: YoutubeDL, allowlist: Allowlist, resolve: Resolver | None = None) -> YoutubeDL:
    """Guard an existing YoutubeDL in place (forces SAFE_PARAMS, replaces its director)."""
    policy = Policy(allowlist, resolve or _system_resolve)
    _refuse_subprocess_downloaders()
    ydl.params.update(SAFE_PARAMS)
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
