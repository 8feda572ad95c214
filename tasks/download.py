"""The download stage: yt-dlp as a library, best audio only, checked before it fetches."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, GeoRestrictedError, UnsupportedError

from common.errors import Cancelled, Code, JobError, human_bytes, human_duration
from common.jobs import Job
from common.settings import Settings
from tasks.progress import StageReporter

log = logging.getLogger(__name__)

THUMBNAIL_EXTS = (".jpg", ".jpeg", ".png", ".webp")


class _QuietLogger:
    """yt-dlp logs into ours, at debug level: its errors come back to us as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = warning = error = debug


def ydl_options(settings: Settings, workdir: Path, reporter: StageReporter | None) -> dict[str, Any]:
    hooks = [_progress_hook(reporter, settings.max_filesize)] if reporter else []
    return {
        "format": "bestaudio/best",
        "outtmpl": str(workdir / "source.%(ext)s"),
        "writethumbnail": True,
        "max_filesize": settings.max_filesize,
        "socket_timeout": settings.socket_timeout,
        "retries": 2,  # a dropped connection mid-file resumes; HTTP errors come to us to retry with backoff
        "extractor_retries": 0,
        "fragment_retries": 3,
        "extract_flat": "in_playlist",
        "cachedir": False,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": _QuietLogger(),
        "progress_hooks": hooks,
    }


def _progress_hook(reporter: StageReporter, max_bytes: int) -> Any:
    def hook(status: dict[str, Any]) -> None:
        done = status.get("downloaded_bytes") or 0
        if done > max_bytes:  # holds when the server lied about or omitted its length
            raise JobError(Code.TOO_LARGE, hint=f"The limit is {human_bytes(max_bytes)}.")
        if status.get("status") == "downloading":
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            reporter.progress(done / total if total else 0.0, status.get("speed"), status.get("eta"))
        elif status.get("status") == "finished":
            reporter.progress(1.0)
            reporter.flush()

    return hook


def download(job: Job, settings: Settings, workdir: Path, reporter: StageReporter) -> dict[str, Any]:
    """Fetch the best audio of job.url into workdir; return what we learnt about the video."""
    shutil.rmtree(workdir, ignore_errors=True)  # a retried or re-delivered stage starts clean
    workdir.mkdir(parents=True)
    try:
        with yt_dlp.YoutubeDL(ydl_options(settings, workdir, reporter)) as ydl:
            info = _video_info(ydl, job.url, settings)
            check_info(info, settings)
            reporter.progress(
                0.0, title=info.get("title") or "", uploader=_uploader(info),
                duration=info.get("duration"), video_key=video_key(info),
                direct=bool(info.get("direct")),
            )
            reporter.flush()
            ydl.process_ie_result(info, download=True)
    except DownloadError as error:
        raise classify(error) from error
    source = source_file(workdir)
    if source is None:  # yt-dlp "succeeds" with no file when a size filter rejects it
        raise JobError(Code.TOO_LARGE, hint=f"The limit is {human_bytes(settings.max_filesize)}.")
    if source.stat().st_size == 0:
        raise JobError(Code.BAD_MEDIA, "empty download")
    return info


def _video_info(ydl: yt_dlp.YoutubeDL, url: str, settings: Settings) -> dict[str, Any]:
    info = ydl.extract_info(url, download=False)
    if info is None:
        raise JobError(Code.UNSUPPORTED)
    if info.get("_type") in ("playlist", "multi_video"):
        entries = list(info.get("entries") or [])
        if settings.playlist == "refuse" or not entries:
            raise JobError(Code.PLAYLIST)
        first = entries[0]
        info = ydl.extract_info(first.get("url") or first.get("webpage_url"), download=False)
    return info


def check_info(info: dict[str, Any], settings: Settings) -> None:
    """Refuse before downloading what we know we will refuse after."""
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming", "post_live"):
        raise JobError(Code.LIVE)
    duration = info.get("duration")
    if duration and duration > settings.max_duration:
        raise JobError(Code.TOO_LONG, hint=f"The limit is {human_duration(settings.max_duration)}.")
    size = info.get("filesize") or info.get("filesize_approx")
    if size and size > settings.max_filesize:
        raise JobError(Code.TOO_LARGE, hint=f"The limit is {human_bytes(settings.max_filesize)}.")
    if info.get("acodec") == "none" and info.get("vcodec") not in (None, "none"):
        raise JobError(Code.NO_AUDIO)


def _uploader(info: dict[str, Any]) -> str:
    return info.get("uploader") or info.get("channel") or info.get("artist") or info.get("creator") or ""


def video_key(info: dict[str, Any]) -> str:
    """The video's identity, the same whatever link led to it."""
    return f"{info.get('extractor_key') or info.get('extractor') or 'generic'}:{info.get('id')}".lower()


def source_file(workdir: Path) -> Path | None:
    files = [p for p in workdir.glob("source.*") if p.suffix not in THUMBNAIL_EXTS and not p.name.endswith(".part")]
    return max(files, key=lambda p: p.stat().st_size) if files else None


def thumbnail_file(workdir: Path) -> Path | None:
    return next((p for p in sorted(workdir.glob("source.*")) if p.suffix in THUMBNAIL_EXTS), None)


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


def classify(error: DownloadError) -> JobError:
    """Map a yt-dlp failure to one of our codes, by type first, by message last."""
    for exc in _causes(error):
        if isinstance(exc, Cancelled | JobError):
            raise exc
        known = _by_type(exc)
        if known is not None:
            return known
    return _by_message(str(error))


def _by_type(exc: BaseException) -> JobError | None:
    if type(exc).__name__ == "UrlRejected":
        return JobError(Code.NOT_ALLOWED, str(exc))
    if isinstance(exc, HTTPError):
        return _http_error(exc.status)
    if isinstance(exc, TimeoutError) or (isinstance(exc, TransportError) and "timed out" in str(exc).lower()):
        return JobError(Code.TIMEOUT, str(exc))
    if isinstance(exc, TransportError | ConnectionError):
        return JobError(Code.NETWORK, str(exc))
    if isinstance(exc, UnsupportedError):
        return JobError(Code.UNSUPPORTED, str(exc))
    if isinstance(exc, GeoRestrictedError):
        return JobError(Code.UNAVAILABLE, str(exc))
    return None


def _by_message(message: str) -> JobError:
    """Some failures (retries spent in the download phase) carry their cause only as text."""
    lowered = message.lower()
    status = re.search(r"http error (\d{3})", lowered)
    if status:
        return _http_error(int(status.group(1)))
    if "timed out" in lowered:
        return JobError(Code.TIMEOUT, message)
    if "did not get any data blocks" in lowered:
        return JobError(Code.BAD_MEDIA, message)
    if "unsupported url" in lowered:
        return JobError(Code.UNSUPPORTED, message)
    if "live event" in lowered or "is live" in lowered:
        return JobError(Code.LIVE, message)
    return JobError(Code.UNAVAILABLE, message)  # extractors say "private", "removed", "sign in"... in many ways


def _http_error(status: int) -> JobError:
    if status in (404, 410):
        return JobError(Code.NOT_FOUND, f"HTTP {status}")
    if status == 429 or status >= 500:
        return JobError(Code.SERVER, f"HTTP {status}")
    return JobError(Code.REFUSED, f"HTTP {status}")
