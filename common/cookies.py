"""Netscape cookie files (COOKIES_FILE): inspect one without ever showing a value, and replace one safely.

The parsing follows what yt-dlp does with such a file (``YoutubeDLCookieJar``: the standard library's
``MozillaCookieJar`` after dropping malformed lines), so a file that passes here loads in the workers.
This module is imported by the chat processes too, so it must not import yt-dlp.
Its findings are `Msg`s: English in logs and the doctor's JSON, the admin's language in /cookies and /health.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import io
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from common import i18n
from common.i18n import N_, Lang, Msg

# yt-dlp (extractor/youtube/_base.py, _has_auth_cookies) counts a YouTube session as signed in when the
# cookies for https://www.youtube.com hold LOGIN_INFO and one of the SAPISID family.
LOGIN_INFO = "LOGIN_INFO"
SAPISID_FAMILY = ("SAPISID", "__Secure-1PAPISID", "__Secure-3PAPISID")
# The other cookies of a Google sign-in; their earliest expiry is when the session ends at the latest.
SESSION_NAMES = frozenset({LOGIN_INFO, *SAPISID_FAMILY, "SID", "HSID", "SSID", "APISID",
                           "__Secure-1PSID", "__Secure-3PSID"})
YOUTUBE_DOMAINS = frozenset({"youtube.com", "www.youtube.com"})

_EXPIRES = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_HTTPONLY_PREFIX = "#HttpOnly_"
MAX_BYTES = 1024 * 1024  # an upload larger than this is no cookie export


@dataclass(frozen=True)
class CookieReport:
    """What a cookie file holds, in words that are safe to log: names of problems, never a cookie value."""

    path: Path
    readable: bool = False
    fault: Msg | None = None  # unreadable or unparseable, one clause
    count: int = 0
    login: bool = False  # yt-dlp would use it as a signed-in YouTube session
    login_expires: dt.datetime | None = None  # earliest expiry of the sign-in cookies present (UTC)
    cautions: tuple[Msg, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def error(self) -> str | None:
        """The fault in English (logs, the doctor's JSON)."""
        return self.fault.english() if self.fault else None

    @property
    def warnings(self) -> tuple[str, ...]:
        """The cautions in English."""
        return tuple(caution.english() for caution in self.cautions)

    def problems(self) -> list[str]:
        """One line per problem, the error first."""
        return ([f"{self.path}: {self.error}"] if self.error else []) + [f"{self.path}: {w}" for w in self.warnings]

    def summary(self, lang: Lang | None = None) -> str:
        """One line for an admin (in `lang`) or the doctor: count, sign-in, earliest expiry."""
        return (lang or i18n.get(i18n.SOURCE)).say(self.summary_msg())

    def summary_msg(self) -> Msg:
        file = str(self.path)
        if self.fault:
            # i18n: a cookie file's path, then what is wrong with it: a fault such as "not found", said on its own
            return Msg(N_("%(file)s: %(problem)s"), file=file, problem=self.fault)
        if self.login_expires:
            expiry = i18n.date(self.login_expires.date())
            if self.login:
                return Msg.ngettext("%(file)s: %(n)s cookie, YouTube login cookies present, earliest expiry %(date)s",
                                    "%(file)s: %(n)s cookies, YouTube login cookies present, earliest expiry "
                                    "%(date)s", self.count, file=file, date=expiry)
            return Msg.ngettext("%(file)s: %(n)s cookie, no usable YouTube login cookies, earliest expiry %(date)s",
                                "%(file)s: %(n)s cookies, no usable YouTube login cookies, earliest expiry %(date)s",
                                self.count, file=file, date=expiry)
        if self.login:
            return Msg.ngettext("%(file)s: %(n)s cookie, YouTube login cookies present",
                                "%(file)s: %(n)s cookies, YouTube login cookies present", self.count, file=file)
        return Msg.ngettext("%(file)s: %(n)s cookie, no usable YouTube login cookies",
                            "%(file)s: %(n)s cookies, no usable YouTube login cookies", self.count, file=file)


def inspect(path: str | Path, now: float | None = None) -> CookieReport:
    """Read and check one cookie file: readable, parseable, permissions, YouTube sign-in, expiry."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        # i18n: a cookie file's fault. Its faults follow its path ("/data/cookies.txt: not found"); those of a file
        # an admin sent also follow "Not installed: the file" ("...: the file is JSON, not a Netscape cookie file")
        return CookieReport(path, fault=Msg(N_("not found")))
    except OSError as error:
        return CookieReport(path, fault=Msg(N_("not readable (%(reason)s)"),
                                            reason=error.strerror or type(error).__name__))
    report = inspect_bytes(data, path, now)
    if stat.S_IMODE(mode) & 0o077:
        warning = Msg(N_("readable by other users (mode %(mode)s); chmod 600 it"), mode=f"{stat.S_IMODE(mode):o}")
        report = replace(report, cautions=(warning, *report.cautions))
    return report


def inspect_bytes(data: bytes, path: str | Path = "cookies.txt", now: float | None = None) -> CookieReport:
    """Check the content of a cookie file (an upload before it is written, or a file's bytes)."""
    path = Path(path)
    try:
        jar, _, skipped = _load(data, path)
    except _Unparseable as error:
        return CookieReport(path, readable=True, fault=error.msg)
    return _judge(path, list(jar), skipped, time.time() if now is None else now)


def for_ytdlp(data: bytes) -> bytes:
    """The file as yt-dlp will load it, without the malformed lines it would skip.

    yt-dlp prints each line it skips, value and all, straight to stderr (the worker's log), and
    its error for a file it refuses quotes the offending line: a job's copy of a cookie set is
    this, and a file that raises ValueError here (naming a line, never its content) is not used.
    """
    return _load(data)[1].encode()


def _load(data: bytes, path: str | Path = "cookies.txt") -> tuple[http.cookiejar.MozillaCookieJar, str, list[int]]:
    """The cookies, the text yt-dlp keeps of the file, and the numbers of the lines it skips."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unparseable(Msg(N_("not a text file; export it again as cookies.txt (Netscape format)"))) from None
    cleaned, skipped = _clean(text)
    jar = http.cookiejar.MozillaCookieJar()
    try:
        jar._really_load(io.StringIO(cleaned), str(path), ignore_discard=True, ignore_expires=True)  # type: ignore[attr-defined]
    except (http.cookiejar.LoadError, ValueError):
        # The standard library's message quotes the offending line, which may hold a value: never pass it on.
        raise _Unparseable(Msg(N_("not a Netscape cookie file; export it again as cookies.txt (Netscape format)"))
                           ) from None
    return jar, cleaned, skipped


class _Unparseable(ValueError):
    """A problem that makes yt-dlp refuse the whole file; the message names a line, never its content."""

    def __init__(self, msg: Msg) -> None:
        super().__init__(msg.english())
        self.msg = msg


def _clean(text: str) -> tuple[str, list[int]]:
    """Drop the lines yt-dlp skips (it warns about each); fail where yt-dlp would fail."""
    if text.lstrip()[:1] in ("[", "{"):
        raise _Unparseable(Msg(N_("is JSON, not a Netscape cookie file; export it again as cookies.txt (Netscape "
                                  "format)")))
    if not http.cookiejar.NETSCAPE_MAGIC_RGX.match(text):  # type: ignore[attr-defined]
        raise _Unparseable(Msg(N_("lacks the '# Netscape HTTP Cookie File' first line; export it again as cookies.txt "
                                  "(Netscape format)")))
    kept, skipped = [], []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        entry = line.removeprefix(_HTTPONLY_PREFIX).rstrip("\r\n")
        if number > 1 and entry.strip() and not entry.startswith("#"):
            fields = entry.split("\t")
            if len(fields) != 7 or (fields[4] and not _EXPIRES.fullmatch(fields[4])):
                skipped.append(number)
                continue
            if (fields[1] == "TRUE") != fields[0].startswith("."):
                raise _Unparseable(Msg(N_("line %(line)s: the subdomain flag does not match the domain; export it "
                                          "again as cookies.txt (Netscape format)"), line=str(number)))
        kept.append(line.rstrip("\r\n") + "\n")
    return "".join(kept), skipped


def _judge(path: Path, cookies: list[http.cookiejar.Cookie], skipped: list[int], now: float) -> CookieReport:
    youtube = [c for c in cookies if c.domain.lstrip(".") in YOUTUBE_DOMAINS]
    # yt-dlp writes session cookies with expiry 0 and reads them back as session cookies
    live = {c.name for c in youtube if not c.expires or c.expires > now}
    login = LOGIN_INFO in live and any(name in live for name in SAPISID_FAMILY)
    expiries = [c.expires for c in youtube if c.name in SESSION_NAMES and c.expires]
    earliest = min(expiries) if expiries else None
    warnings = []
    if skipped:
        lines = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        warnings.append(Msg.ngettext("%(n)s malformed line skipped (line %(lines)s)",
                                     "%(n)s malformed lines skipped (lines %(lines)s)", len(skipped), lines=lines))
    if not any(c.name in SESSION_NAMES for c in youtube):
        warnings.append(Msg(N_("no YouTube login cookies (LOGIN_INFO, SAPISID...): age-restricted videos will fail")))
    elif earliest is not None and earliest <= now:
        warnings.append(Msg(N_("YouTube login cookies expired on %(date)s: refresh them with /cookies"),
                            date=i18n.date(_utc(earliest).date())))
    elif not login:
        warnings.append(Msg(N_("YouTube login cookies incomplete (yt-dlp needs LOGIN_INFO and SAPISID)")))
    return CookieReport(path, readable=True, count=len(cookies), login=login,
                        login_expires=_utc(earliest) if earliest else None, cautions=tuple(warnings))


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def log_problems(paths: Iterable[str | Path], log: logging.Logger) -> list[CookieReport]:
    """At start: one line per problem of each cookie file (an error when it cannot be used at all)."""
    reports = [inspect(path) for path in paths]
    for report in reports:
        if report.error:
            log.error("COOKIES_FILE %s: %s", report.path, report.error)
        for warning in report.warnings:
            log.warning("COOKIES_FILE %s: %s", report.path, warning)
    return reports


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def install(path: str | Path, data: bytes) -> CookieReport:
    """Check `data` and, only if usable, write it over `path` (mode 600) keeping the previous file as .bak.

    Each write goes to a temporary file that then replaces its target, so a job starting meanwhile reads
    either the old cookies or the new ones, never half a file.  The report is the checked upload's (with
    its error nothing was written) or, once written, the installed file's.
    """
    path = Path(path)
    report = inspect_bytes(data, path)
    if not report.ok:
        return report
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        previous = path.read_bytes()
    except FileNotFoundError:
        previous = None
    if previous is not None:
        _write_atomically(backup_of(path), previous)
    _write_atomically(path, data)
    return inspect(path)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created with mode 600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
