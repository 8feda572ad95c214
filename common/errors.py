"""Error codes of a job and the one sentence a user sees for each (in the user's language: common/i18n.py)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from common import i18n
from common.i18n import N_, Msg


class Code(StrEnum):
    UNSUPPORTED = "unsupported"
    NOT_ALLOWED = "not_allowed"
    UNAVAILABLE = "unavailable"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    PAGE_TOO_LARGE = "page_too_large"  # a page, manifest or JSON past MAX_PAGE_BYTES (decoded)
    LIVE = "live"
    PLAYLIST = "playlist"
    NO_AUDIO = "no_audio"
    BAD_MEDIA = "bad_media"
    NETWORK = "network"
    SERVER = "server"
    TIMEOUT = "timeout"
    TOO_SLOW = "too_slow"  # the download kept below MIN_DOWNLOAD_RATE: not tried again (it would hold a slot again)
    DISK_FULL = "disk_full"
    INTERNAL = "internal"
    OUT_OF_MEMORY = "out_of_memory"  # the worker process (or its ffmpeg) was killed under the job, again
    # YouTube from a server (yt-dlp's own texts are mapped in tasks.download.classify)
    BOT_CHECK = "bot_check"  # "Sign in to confirm you're not a bot": the route's address is distrusted
    LOGIN_REQUIRED = "login_required"  # age-restricted or sign-in required: needs cookies
    COOKIES_EXPIRED = "cookies_expired"  # the account cookies are no longer valid
    PRIVATE = "private"  # members-only or private
    RATE_LIMITED = "rate_limited"  # "This content isn't available, try again later": back off for long
    GEO_BLOCKED = "geo_blocked"
    UPCOMING = "upcoming"  # a premiere or stream that has not started
    NO_FORMAT = "no_format"  # no usable format: JS challenge failed, PO token needed (the operator's part)
    BAD_RANGE = "bad_range"  # the range asked for is not in the media (it starts past its end)


TEXT: dict[Code, str] = {
    Code.UNSUPPORTED: N_("This link isn't supported: no video or audio found there."),
    Code.NOT_ALLOWED: N_("This link isn't allowed: it points to a private or internal address."),
    Code.UNAVAILABLE: N_("This video is private or unavailable."),
    Code.NOT_FOUND: N_("Nothing was found at this link (the site answered 404)."),
    Code.REFUSED: N_("The site refused the download."),
    Code.TOO_LONG: N_("This video is too long."),
    Code.TOO_LARGE: N_("This file is too large."),
    Code.PAGE_TOO_LARGE: N_("The site's page is too large for the bot to read."),
    Code.LIVE: N_("Live streams can't be converted."),
    Code.PLAYLIST: N_("Playlists aren't supported: send a link to one video."),
    Code.NO_AUDIO: N_("This video has no audio track."),
    Code.BAD_MEDIA: N_("The file couldn't be read as audio or video."),
    Code.NETWORK: N_("The site couldn't be reached."),
    Code.SERVER: N_("The site had a server error."),
    Code.TIMEOUT: N_("The site took too long to answer."),
    Code.TOO_SLOW: N_("The site sent the file too slowly."),
    Code.DISK_FULL: N_("The bot is out of space right now; try again later."),
    Code.INTERNAL: N_("Something went wrong on our side."),
    Code.OUT_OF_MEMORY: N_("This link needed more memory than the bot can give, so it was stopped."),
    Code.BOT_CHECK: N_(
        "YouTube asked the bot to prove it isn't a bot. The admins have been told; please try again later."),
    Code.LOGIN_REQUIRED: N_(
        "This video needs a signed-in account (it may be age-restricted), which the bot doesn't have."),
    Code.COOKIES_EXPIRED: N_(
        "The bot's YouTube sign-in has expired. The admins have been told; please try again later."),
    Code.PRIVATE: N_("This video is private or for channel members only."),
    Code.RATE_LIMITED: N_("The site is limiting the bot's downloads right now; please try again in an hour."),
    Code.GEO_BLOCKED: N_("This video isn't available in the bot's country."),
    Code.UPCOMING: N_("This video hasn't started yet (a premiere or an upcoming stream); try again once it has."),
    Code.NO_FORMAT: N_(
        "YouTube didn't give the bot a playable format. The admins have been told; please try again later."),
    Code.BAD_RANGE: N_("The range you asked for isn't in this video."),
}

# Worth trying again: the same request may succeed later.
TRANSIENT = frozenset({Code.NETWORK, Code.SERVER, Code.TIMEOUT, Code.DISK_FULL, Code.INTERNAL})

# The site distrusts the route (address or account), not the link: try the next proxy / cookie set.
ROUTE_FAILURES = frozenset({Code.BOT_CHECK, Code.RATE_LIMITED, Code.REFUSED, Code.COOKIES_EXPIRED})

# Only the operator can fix these: the admins get an alert with the fix.
OPERATOR = frozenset({Code.BOT_CHECK, Code.COOKIES_EXPIRED, Code.NO_FORMAT})

RETRY_LATER = TRANSIENT | OPERATOR | {Code.RATE_LIMITED, Code.TOO_SLOW}


class JobError(Exception):
    """A job failed for a reason we can name.

    `hint` is added to the user's text (e.g. the limit that was exceeded), said in each reader's language;
    `detail` is for logs and the dead-letter list only; `alert` see below.
    """

    def __init__(self, code: Code, detail: str = "", hint: Msg | None = None, *, alert: str = "") -> None:
        super().__init__(f"{code}: {detail or (hint.english() if hint else '')}".rstrip(": "))
        self.code = code
        self.detail = detail
        self.hint = hint
        # The admin alert this failure raises (a kind in common.alerts.TEXT): an OPERATOR code's own,
        # or a finer one (no format because no JS runtime was found); "" for none.
        self.alert = alert or (code.value if code in OPERATOR else "")

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT

    @property
    def retryable(self) -> bool:
        """The user may try again later (a Retry button): the link is fine, the moment or the bot was not."""
        return self.code in RETRY_LATER

    @property
    def said(self) -> list[Msg]:
        """What the user reads: the code's sentence, then the hint."""
        return [Msg(TEXT[self.code]), *([self.hint] if self.hint else [])]

    @property
    def text(self) -> str:
        """The user's text in English: logs, the CLI, admins."""
        return english(self.said)


def limit_hint(limit: i18n.Arg) -> Msg:
    """The hint of a limit exceeded, "The limit is 50 MB.": `limit` is i18n.size(...) or i18n.duration(...)."""
    return Msg(N_("The limit is %(limit)s."), limit=limit)


class Cancelled(Exception):
    """The job was cancelled while a stage ran."""


def sentences(lang: i18n.Lang, msgs: Iterable[Msg]) -> str:
    """Several sentences, each said in `lang`, as one text."""
    return " ".join(lang.say(msg) for msg in msgs)


def english(msgs: Iterable[Msg]) -> str:
    return sentences(i18n.get(i18n.SOURCE), msgs)


# For logs, the CLI and admin reports, in English: the same formatting as a user's texts (common/i18n.py).
def human_duration(seconds: float) -> str:
    return i18n.get(i18n.SOURCE).duration(seconds)


def human_bytes(size: float) -> str:
    return i18n.get(i18n.SOURCE).size(size)
