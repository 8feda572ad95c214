"""The download stage: yt-dlp as a library, best audio only, checked before it fetches.

Every connection yt-dlp opens for a job goes through the network guard
(``tasks.netguard``): the link is checked before anything is fetched, and each
connection (redirects, manifests, fragments, the thumbnail) again when it is
made. A refusal ends the job as NOT_ALLOWED, at once and without retries.
Bytes are counted as they arrive, so a server that lies about or omits its
length still cannot exceed ``max_filesize``.
"""

from __future__ import annotations

import copy
import logging
import optparse
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.networking.common import Request
from yt_dlp.networking.exceptions import HTTPError, ProxyError, TransportError
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError, YoutubeDLError

from common import alerts, context, cookies, i18n
from common.albums import capped
from common.clip import parse_range
from common.errors import ROUTE_FAILURES, Cancelled, Code, JobError, limit_hint
from common.i18n import Msg
from common.jobs import Job
from common.links import link_key
from common.routes import Route, RouteBook, fingerprint, scrub
from common.settings import Settings
from common.textlimits import TITLE_CHARS, cut
from common.urlguard import Allowlist, UrlRejected, check_target, user_text
from tasks import chapters, images, sitehold
from tasks.feeds import FeedIE
from tasks.lifecycle import source_file
from tasks.netguard import GuardedYoutubeDL, refusal_of
from tasks.pace import Pace
from tasks.progress import StageReporter

log = logging.getLogger(__name__)

MAX_THUMBNAIL_BYTES = 10 * 1024 * 1024
THUMBNAIL_SECONDS = 30.0  # a thumbnail trickled byte by byte is given up, not waited for
THUMBNAIL_TRIES = 3
# Of a playlist only the first entry is ever used (PLAYLIST=first) or none (refuse): a paged list
# is not fetched page after page only to be refused. An album reads the entries it takes (PLAYLIST_MAX).
PLAYLIST_ITEMS = "1"
COOKIES_COPY = "cookies.txt"  # the job's own copy of its route's cookie set, in its work folder


class NotAllowed(JobError):
    """NOT_ALLOWED, told in the guard's own words: a refused scheme is not a private address."""

    def __init__(self, rejection: UrlRejected) -> None:
        super().__init__(Code.NOT_ALLOWED, f"{rejection.reason} ({rejection.detail})" if rejection.detail
                         else rejection.reason)
        self.rejection = rejection

    @property
    def said(self) -> list[Msg]:
        return [user_text(self.rejection)]

    def __reduce__(self) -> tuple[type[NotAllowed], tuple[UrlRejected]]:
        return (type(self), (self.rejection,))


class Playlist(Exception):  # not an error: the link turned out to be an album
    """The link is a playlist and PLAYLIST=album: its flat info (title, author, entries) for tasks.album."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info.get("title") or "playlist")
        self.info = info


class YtdlpLog:
    """yt-dlp logs into ours, at debug level: its errors come back to us as exceptions.

    Its warnings are kept as well: some causes (no JS runtime, rotated cookies, an
    unreachable PO-token provider) are told only as a warning before a vaguer error.
    """

    def __init__(self) -> None:
        self.warnings: deque[str] = deque(maxlen=50)

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = error = debug

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)
        log.debug("yt-dlp warning: %s", msg)


def extractor_args(*entries: str) -> dict[str, dict[str, list[str]]]:
    """yt-dlp's `extractor_args` option from entries in its --extractor-args syntax ("IE_KEY:ARG=V1,V2;ARG2=V").

    Parsed by yt-dlp's own option parser, so an entry means here what it means on the command line,
    including that a later entry for the same IE_KEY replaces an earlier one. A bad entry raises ValueError.
    """
    return copy.deepcopy(_parsed_extractor_args(tuple(entries)))  # yt-dlp must not change the cached parse


@lru_cache(maxsize=16)
def _parsed_extractor_args(entries: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    from yt_dlp.options import create_parser  # builds all of yt-dlp's options: once per set of entries

    try:
        opts, _ = create_parser().parse_args([arg for entry in entries for arg in ("--extractor-args", entry)])
    except optparse.OptParseError as error:
        raise ValueError(str(error).strip().rpartition("error: ")[2]) from None
    return opts.extractor_args


def job_extractor_args(settings: Settings) -> dict[str, dict[str, list[str]]]:
    """YTDLP_EXTRACTOR_ARGS, with the PO-token plugin pointed at POT_PROVIDER_URL (the one the guard lets it reach)."""
    args = extractor_args(*settings.ytdlp_extractor_args)
    if settings.pot_provider_url:
        args.setdefault("youtubepot-bgutilhttp", {})["base_url"] = [settings.pot_provider_url]
    return args


def ydl_options(settings: Settings, workdir: Path, reporter: StageReporter | None,
                pace: Pace | None = None, items: str = "") -> dict[str, Any]:
    return {
        "extractor_args": job_extractor_args(settings),
        "format": "bestaudio/best",
        "outtmpl": str(workdir / "source.%(ext)s"),
        "writethumbnail": False,  # yt-dlp copies a thumbnail without any size limit: see fetch_thumbnail
        "max_filesize": settings.max_filesize,
        "socket_timeout": settings.socket_timeout,
        "retries": 2,  # a dropped connection mid-file resumes; HTTP errors come to us to retry with backoff
        "extractor_retries": 0,
        "fragment_retries": 3,
        "extract_flat": "in_playlist",
        "playlist_items": capped(items, settings.playlist_max) if settings.playlist == "album" else PLAYLIST_ITEMS,
        "cachedir": False,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": YtdlpLog(),
        "progress_hooks": [_progress_hook(reporter, settings.max_filesize, pace)],
    }


def _progress_hook(reporter: StageReporter | None, max_bytes: int, pace: Pace | None = None) -> Any:
    """Counts the bytes as they arrive (the limit holds whatever the server announced), keeps the pace, reports."""

    def hook(status: dict[str, Any]) -> None:
        done = status.get("downloaded_bytes") or 0
        if done > max_bytes:  # holds when the server lied about or omitted its length
            raise JobError(Code.TOO_LARGE, f"{done} bytes and counting", hint=limit_hint(i18n.size(max_bytes)))
        if pace is not None:
            pace.finished = status.get("status") == "finished"
            pace.check(done)
        if reporter is None:
            return
        if status.get("status") == "downloading":
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            reporter.progress(done / total if total else 0.0, status.get("speed"), status.get("eta"))
        elif status.get("status") == "finished":
            reporter.progress(1.0)
            reporter.flush()

    return hook


def download(job: Job, settings: Settings, workdir: Path, reporter: StageReporter,
             book: RouteBook | None = None) -> dict[str, Any]:
    """Fetch the best audio of job.url into workdir; return what we learnt about the video.

    Route by route (common.routes): a failure that is the route's (the site distrusts its
    address or account, or its proxy failed) is tried again at once through the next one.
    The route rests for the link's site only: another site may answer it as ever.
    """
    allowlist = Allowlist(settings.network_allowlist)
    check_link(job.url, settings)  # the cheap checks first: nothing is fetched for a link we refuse anyway
    book = book or RouteBook(context.redis_client(), context.keys(), settings)
    site = sitehold.site_of(job.url)
    tried: list[str] = []
    last = JobError(Code.INTERNAL, "no route to download through")
    while (route := book.next(site, tried)) is not None:
        tried.append(route.id)
        shutil.rmtree(workdir, ignore_errors=True)  # a retried or re-delivered stage, or a new route, starts clean
        workdir.mkdir(parents=True)
        cookiefile, content = _cookie_copy(route, workdir)
        try:
            info = _fetch(job, settings, allowlist, workdir, reporter, route, cookiefile)
        except JobError as failure:
            if not route_failure(failure):
                raise _scrubbed(failure, settings) from None
            book.failed(route, failure.code, site)
            if failure.code == Code.COOKIES_EXPIRED and route.cookies and book.mark_stale(route.cookies, content):
                log.error("cookie set %s is no longer valid: it is skipped until the file changes (/cookies)",
                          route.name)
                alerts.raise_alert(failure.alert or Code.COOKIES_EXPIRED.value)  # the download may yet succeed
            log.warning("job %s: %s through %s", job.id, failure.code, route.name)
            last = failure
            continue
        finally:
            if cookiefile is not None:
                cookiefile.unlink(missing_ok=True)  # yt-dlp wrote the jar back into it when it closed
        book.succeeded(route, site)
        return info
    raise _scrubbed(last, settings) from None


def route_failure(failure: JobError) -> bool:
    """The failure is the route's, not the link's: another address or account may succeed."""
    return failure.code in ROUTE_FAILURES or any(isinstance(exc, ProxyError) for exc in _causes(failure))


def _cookie_copy(route: Route, workdir: Path) -> tuple[Path | None, str]:
    """The route's cookie set, copied into the job's folder (mode 600), and its content's fingerprint.

    yt-dlp writes the jar back into the file it read: the operator's file is never touched, and
    jobs in parallel never share one. The copy leaves out the lines yt-dlp would skip (it would
    print each, value and all).
    """
    if route.cookies is None:
        return None, ""
    try:
        data = Path(route.cookies).read_bytes()
        loadable = cookies.for_ytdlp(data)
    except OSError as error:
        raise JobError(Code.INTERNAL, f"cookie file {route.cookies} unreadable: {error.strerror}") from None
    except ValueError as error:  # replaced by a broken file since the route was chosen
        raise JobError(Code.INTERNAL, f"cookie file {route.cookies}: {error}") from None
    copy = workdir / COOKIES_COPY
    with os.fdopen(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(loadable)
    return copy, fingerprint(data)


def _scrubbed(failure: JobError, settings: Settings) -> JobError:
    """The failure with no proxy credential in its detail (it goes to logs and dead letters)."""
    detail = scrub(failure.detail, settings.proxy_url)
    if detail == failure.detail:
        return failure
    return JobError(failure.code, detail, failure.hint, alert=failure.alert)


def _fetch(job: Job, settings: Settings, allowlist: Allowlist, workdir: Path, reporter: StageReporter,
           route: Route, cookiefile: Path | None) -> dict[str, Any]:
    """One try through one route."""
    pace = Pace(settings.min_download_rate, settings.slow_grace)
    options = ydl_options(settings, workdir, reporter, pace, job.items)
    if cookiefile is not None:
        options["cookiefile"] = str(cookiefile)
    with GuardedYoutubeDL(options, allowlist=allowlist, provider=settings.pot_provider_url, proxy=route.proxy,
                          reserved=settings.proxy_url, max_page_bytes=settings.max_page_bytes,
                          domains_allow=settings.domains_allow, domains_deny=settings.domains_deny) as ydl:
        ydl.add_info_extractor(FeedIE())  # feeds newest first, with their own image (tasks/feeds.py)
        try:
            info = _video_info(ydl, job.url, settings)
            check_info(info, settings)
            # A range is cut in the conversion (seeking on input), from the whole source: yt-dlp's own
            # download_ranges fetches through ffmpeg as a downloader, which the network guard refuses
            # (ffmpeg would connect where the guard can't see). One past the end is refused before the download.
            if job.clip and info.get("duration"):
                parse_range(job.clip).within(float(info["duration"]))
            reporter.progress(
                0.0, title=job.title if job.parent and job.title else cut(info.get("title") or "", TITLE_CHARS),
                uploader=cut(_uploader(info), TITLE_CHARS),
                duration=info.get("duration"), video_key=video_key(info),
                direct=bool(info.get("direct")), chapters=chapters.clean(info.get("chapters"), info.get("duration")),
            )
            reporter.flush()
            with pace.watching():
                ydl.process_ie_result(info, download=True)
        except (YoutubeDLError, UrlRejected) as error:  # DownloadError, or a raw GuardRefused / RequestError
            raise _failure(error, ydl) from error
        source = source_file(workdir)
        if source is None:  # yt-dlp "succeeds" with no file when a size filter rejects it
            raise JobError(Code.TOO_LARGE, hint=limit_hint(i18n.size(settings.max_filesize)))
        if source.stat().st_size == 0:
            raise JobError(Code.BAD_MEDIA, "empty download")
        fetch_thumbnail(ydl, info, workdir, covers=job.covers)
        if ydl.netguard_refusals:
            log.warning("job %s: guard refused %s", job.id, [f"{r}: {r.detail}" for r in ydl.netguard_refusals])
    info.pop("cookies", None)  # yt-dlp puts the cookies it would send into the info: nothing of ours keeps them
    return info


def _failure(error: BaseException, ydl: GuardedYoutubeDL) -> JobError:
    failure = classify(error, ydl.params["logger"].warnings)
    if failure.code in (Code.UNSUPPORTED, Code.UNAVAILABLE) and ydl.netguard_refusals:
        return NotAllowed(ydl.netguard_refusals[-1])  # an extractor swallowed the refusal and gave up
    return failure


def fetch_thumbnail(ydl: yt_dlp.YoutubeDL, info: dict[str, Any], workdir: Path, covers: Sequence[str] = (),
                    max_bytes: int = MAX_THUMBNAIL_BYTES, max_seconds: float = THUMBNAIL_SECONDS) -> Path | None:
    """The best thumbnail that is a real image of bounded size and pixel count, as workdir/thumbnail.<ext>;
    None if there is none. `covers`: an album track's images (its entry's, its album's) for when the
    link's own fail or it has none.

    Through the same guarded connections as the media; any failure only costs the cover.
    """
    deadline = time.monotonic() + max_seconds
    thumbnails = [t for t in reversed(info.get("thumbnails") or []) if t.get("url")][:THUMBNAIL_TRIES]
    thumbnails += [{"url": link, "id": f"cover {n}"} for n, link in enumerate(covers[:THUMBNAIL_TRIES], 1)]
    for thumb in thumbnails:
        try:
            data = _read_bounded(ydl, Request(thumb["url"], headers=thumb.get("http_headers") or {}),
                                 max_bytes, deadline)
        except (YoutubeDLError, UrlRejected, OSError) as error:
            log.info("thumbnail %s skipped: %s", thumb.get("id"), error)
            continue
        ext = images.kind(data or b"")
        if data is None or ext is None or images.too_large(data):
            log.info("thumbnail %s skipped: %s", thumb.get("id"), "too large or slow" if data is None
                     else "no image" if ext is None else f"over {images.MAX_PIXELS} pixels: {images.size(data)}")
            continue
        path = workdir / f"thumbnail{ext}"
        path.write_bytes(data)
        return path
    return None


def _read_bounded(ydl: yt_dlp.YoutubeDL, request: Request, max_bytes: int, deadline: float) -> bytes | None:
    """The whole body, or None once it passes max_bytes or the deadline."""
    if time.monotonic() > deadline:
        return None
    chunks: list[bytes] = []
    size = 0
    with ydl.urlopen(request) as response:
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            if size > max_bytes or time.monotonic() > deadline:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def check_link(url: str, settings: Settings) -> None:
    """The guard's checks that need no DNS (scheme, host, domain lists, IP literals): NotAllowed if refused."""
    try:
        check_target(url, Allowlist(settings.network_allowlist), domains_allow=settings.domains_allow,
                     domains_deny=settings.domains_deny)
    except UrlRejected as rejection:
        raise NotAllowed(rejection) from None


def _video_info(ydl: yt_dlp.YoutubeDL, url: str, settings: Settings) -> dict[str, Any]:
    info = ydl.extract_info(url, download=False)
    if info is None:
        raise JobError(Code.UNSUPPORTED)
    if _is_playlist(info):
        entries = [e for e in info.get("entries") or [] if e]  # one at most unless an album: see ydl_options
        if settings.playlist == "refuse" or not entries:
            raise JobError(Code.PLAYLIST)
        if settings.playlist == "album":  # each entry's link is checked by its own track's download
            raise Playlist({**info, "entries": entries})
        first = entries[0].get("url") or entries[0].get("webpage_url")
        if not first:
            raise JobError(Code.UNSUPPORTED, "playlist entry without a link")
        check_link(first, settings)  # a link the playlist names is checked as one the user sent
        info = ydl.extract_info(first, download=False)
        if info is None or _is_playlist(info):
            raise JobError(Code.PLAYLIST if info else Code.UNSUPPORTED)
    return info


def _is_playlist(info: dict[str, Any]) -> bool:
    return info.get("_type") in ("playlist", "multi_video")


def check_info(info: dict[str, Any], settings: Settings) -> None:
    """Refuse before downloading what we know we will refuse after."""
    if info.get("live_status") == "is_upcoming":
        raise JobError(Code.UPCOMING)
    if info.get("is_live") or info.get("live_status") in ("is_live", "post_live"):
        raise JobError(Code.LIVE)
    duration = info.get("duration")
    if duration and duration > settings.max_duration:
        raise JobError(Code.TOO_LONG, hint=limit_hint(i18n.duration(settings.max_duration)))
    size = info.get("filesize") or info.get("filesize_approx")
    if size and size > settings.max_filesize:
        raise JobError(Code.TOO_LARGE, hint=limit_hint(i18n.size(settings.max_filesize)))
    if info.get("acodec") == "none" and info.get("vcodec") not in (None, "none"):
        raise JobError(Code.NO_AUDIO)


def _uploader(info: dict[str, Any]) -> str:
    return info.get("uploader") or info.get("channel") or info.get("artist") or info.get("creator") or ""


def video_key(info: dict[str, Any]) -> str:
    """The video's identity for the cache, never shared by two sites.

    A site extractor's ids belong to its site: `extractor:id`. The generic extractor's id is a
    file or page name that any site can use, so there the identity is the link itself.
    """
    extractor = (info.get("extractor_key") or info.get("extractor") or "generic").lower()
    if extractor == "generic" or info.get("direct"):
        link = info.get("webpage_url") or info.get("original_url")
        return f"url:{link_key(link)}" if link else ""  # no identity: not cached
    return f"{extractor}:{info.get('id')}".lower()


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and everything it wraps: yt-dlp nests the real cause a few levels deep."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        exc_info = getattr(exc, "exc_info", None)
        todo += [
            exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None,
            getattr(exc, "cause", None) if isinstance(getattr(exc, "cause", None), BaseException) else None,
            exc.__cause__,
            exc.__context__,
        ]


def classify(error: BaseException, warnings: Sequence[str] = ()) -> JobError:
    """Map a yt-dlp failure to one of our codes: a guard refusal first, then by type, by message last.

    `warnings` are what yt-dlp warned of before it failed: they name causes its error leaves out
    (rotated cookies behind a sign-in request; no JS runtime behind a missing format).
    A JobError or Cancelled raised inside yt-dlp (by our progress hook) is raised again as it is.
    """
    causes = list(_causes(error))
    for exc in causes:
        if isinstance(exc, Cancelled | JobError):
            raise exc
    rejection = refusal_of(error)
    if rejection is not None:
        return NotAllowed(rejection)
    for exc in causes:
        known = _by_type(exc)
        if known is not None:
            return known
    failure = _youtube(str(error), _is_youtube(causes), _flat(warnings)) or _by_message(str(error))
    if failure.code in (Code.BOT_CHECK, Code.LOGIN_REQUIRED) and COOKIES_REJECTED in _flat(warnings):
        return JobError(Code.COOKIES_EXPIRED, failure.detail)
    return failure


def _flat(text: str | Iterable[str]) -> str:
    """Lower case, one kind of apostrophe: YouTube writes "you’re", yt-dlp's checks "isn't"."""
    return (text if isinstance(text, str) else "\n".join(text)).lower().replace("\u2019", "'")


def _is_youtube(causes: list[BaseException]) -> bool:
    """The failing extractor is one of YouTube's (yt-dlp names it in ExtractorError.ie: "youtube", "youtube:tab")."""
    return any(str(getattr(exc, "ie", None) or "").startswith("youtube") for exc in causes)


# yt-dlp 2026.10.26's own words (and YouTube's, which it passes on), lower case. yt-dlp adds its
# cookie hint ("Use --cookies-from-browser or --cookies ...") to every sign-in reason, so the more
# specific phrases are looked for first.
COOKIES_REJECTED = "account cookies are no longer valid"  # youtube/_base.py:841, a warning
_YOUTUBE_REASONS: list[tuple[Code, tuple[str, ...]]] = [
    (Code.RATE_LIMITED, (
        "this content isn't available, try again later",  # youtube/_video.py:4076
        "rate-limited by youtube",  # youtube/_video.py:4079
    )),
    (Code.BOT_CHECK, (
        "confirm you're not a bot",  # YouTube's reason, youtube/_video.py:4071 adds the cookie hint
        "your ip is likely being blocked",  # youtube/_video.py:3186
        "requiring a captcha challenge",  # youtube/_video.py:4075
    )),
    (Code.PRIVATE, (
        "private video", "video is private",  # YouTube: "Private video. Sign in if you've been granted access..."
        "members-only", "members only", "channel's members", "join this channel",
    )),
    (Code.UPCOMING, (
        "premieres in", "premiere will begin", "live event will begin", "will begin in a few moments",
    )),
    (Code.LOGIN_REQUIRED, (
        "confirm your age", "age-restricted", "inappropriate for some users",  # youtube/_video.py:2901
        "login details are needed",  # youtube/_base.py:722
        "only available for registered users",  # extractor/common.py:1246, raise_login_required
        "sign in",
    )),
]
_NO_FORMAT = (
    "requested format is not available",  # YoutubeDL.py:3093
    "no video formats found",  # YoutubeDL.py:1191
)
# What a missing format comes from, by the warning yt-dlp gave before: the admin alert names the fix.
_NO_FORMAT_CAUSES: list[tuple[str, str]] = [
    ("no supported javascript runtime", "js_runtime"),  # youtube/_video.py:2996
    ("/ping (caused by", "pot_provider"),  # bgutil plugin: "Error reaching GET <url>/ping (caused by ...)"
    ("gvs po token which was not provided", "pot_provider"),  # youtube/_video.py:3197
]


def _youtube(message: str, youtube: bool, warnings: str) -> JobError | None:
    lowered = _flat(message)
    for code, phrases in _YOUTUBE_REASONS:
        if any(phrase in lowered for phrase in phrases):
            return JobError(code, message)
    if youtube and (any(phrase in lowered for phrase in _NO_FORMAT) or "please report this issue" in lowered):
        # No format, or extraction broke (an unexpected error): the runtime, the PO tokens or yt-dlp itself.
        alert = next((kind for phrase, kind in _NO_FORMAT_CAUSES if phrase in warnings), "")
        return JobError(Code.NO_FORMAT, message, alert=alert)
    return None


def _by_type(exc: BaseException) -> JobError | None:
    if isinstance(exc, UrlRejected):
        return NotAllowed(exc)
    if isinstance(exc, ContentTooShortError):  # the connection ended before the announced length
        return JobError(Code.NETWORK, str(exc))
    if isinstance(exc, HTTPError):
        return _http_error(exc.status)
    if isinstance(exc, TimeoutError) or (isinstance(exc, TransportError) and "timed out" in str(exc).lower()):
        return JobError(Code.TIMEOUT, str(exc))
    if isinstance(exc, TransportError | ConnectionError):
        return JobError(Code.NETWORK, str(exc))
    if isinstance(exc, UnsupportedError):
        return JobError(Code.UNSUPPORTED, str(exc))
    if isinstance(exc, GeoRestrictedError):  # extractor/common.py:1262, raise_geo_restricted
        return JobError(Code.GEO_BLOCKED, str(exc))
    return None


def _by_message(message: str) -> JobError:
    """Some failures (retries spent in the download phase) carry their cause only as text."""
    lowered = message.lower()
    status = re.search(r"http error (\d{3})", lowered)
    if status:
        return _http_error(int(status.group(1)))
    if "timed out" in lowered:
        return JobError(Code.TIMEOUT, message)
    if re.search(r"bytes read, \d+ more expected|downloaded \d+ bytes, expected \d+ bytes", lowered):
        return JobError(Code.NETWORK, message)  # the body ended before its announced length
    if "did not get any data blocks" in lowered:
        return JobError(Code.BAD_MEDIA, message)
    if "unsupported url" in lowered:
        return JobError(Code.UNSUPPORTED, message)
    if "live event" in lowered or "is live" in lowered:
        return JobError(Code.LIVE, message)
    return JobError(Code.UNAVAILABLE, message)  # extractors say "removed", "deleted", "not found"... in many ways


def _http_error(status: int) -> JobError:
    if status in (404, 410):
        return JobError(Code.NOT_FOUND, f"HTTP {status}")
    if status == 429:  # Too Many Requests: asking again soon only makes it last longer
        return JobError(Code.RATE_LIMITED, f"HTTP {status}")
    if status >= 500:
        return JobError(Code.SERVER, f"HTTP {status}")
    return JobError(Code.REFUSED, f"HTTP {status}")
