"""Error codes of a job and the one sentence a user sees for each."""

from __future__ import annotations

from enum import StrEnum


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
    Code.UNSUPPORTED: "This link isn't supported: no video or audio found there.",
    Code.NOT_ALLOWED: "This link isn't allowed: it points to a private or internal address.",
    Code.UNAVAILABLE: "This video is private or unavailable.",
    Code.NOT_FOUND: "Nothing was found at this link (the site answered 404).",
    Code.REFUSED: "The site refused the download.",
    Code.TOO_LONG: "This video is too long.",
    Code.TOO_LARGE: "This file is too large.",
    Code.PAGE_TOO_LARGE: "The site's page is too large for the bot to read.",
    Code.LIVE: "Live streams can't be converted.",
    Code.PLAYLIST: "Playlists aren't supported: send a link to one video.",
    Code.NO_AUDIO: "This video has no audio track.",
    Code.BAD_MEDIA: "The file couldn't be read as audio or video.",
    Code.NETWORK: "The site couldn't be reached.",
    Code.SERVER: "The site had a server error.",
    Code.TIMEOUT: "The site took too long to answer.",
    Code.TOO_SLOW: "The site sent the file too slowly.",
    Code.DISK_FULL: "The bot is out of space right now; try again later.",
    Code.INTERNAL: "Something went wrong on our side.",
    Code.OUT_OF_MEMORY: "This link needed more memory than the bot can give, so it was stopped.",
    Code.BOT_CHECK: "YouTube asked the bot to prove it isn't a bot. The admins have been told; please try again later.",
    Code.LOGIN_REQUIRED: "This video needs a signed-in account (it may be age-restricted), which the bot doesn't have.",
    Code.COOKIES_EXPIRED: "The bot's YouTube sign-in has expired. The admins have been told; please try again later.",
    Code.PRIVATE: "This video is private or for channel members only.",
    Code.RATE_LIMITED: "The site is limiting the bot's downloads right now; please try again in an hour.",
    Code.GEO_BLOCKED: "This video isn't available in the bot's country.",
    Code.UPCOMING: "This video hasn't started yet (a premiere or an upcoming stream); try again once it has.",
    Code.NO_FORMAT: "YouTube didn't give the bot a playable format. The admins have been told; please try again later.",
    Code.BAD_RANGE: "The range you asked for isn't in this video.",
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

    `hint` is added to the user's text (e.g. the limit that was exceeded);
    `detail` is for logs and the dead-letter list only; `alert` see below.
    """

    def __init__(self, code: Code, detail: str = "", hint: str = "", *, alert: str = "") -> None:
        super().__init__(f"{code}: {detail or hint}".rstrip(": "))
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
    def text(self) -> str:
        return f"{TEXT[self.code]} {self.hint}".strip()


class Cancelled(Exception):
    """The job was cancelled while a stage ran."""


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
