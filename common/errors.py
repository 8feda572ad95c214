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
    LIVE = "live"
    PLAYLIST = "playlist"
    NO_AUDIO = "no_audio"
    BAD_MEDIA = "bad_media"
    NETWORK = "network"
    SERVER = "server"
    TIMEOUT = "timeout"
    DISK_FULL = "disk_full"
    INTERNAL = "internal"


TEXT: dict[Code, str] = {
    Code.UNSUPPORTED: "This link isn't supported: no video or audio found there.",
    Code.NOT_ALLOWED: "This link isn't allowed: it points to a private or internal address.",
    Code.UNAVAILABLE: "This video is private or unavailable.",
    Code.NOT_FOUND: "Nothing was found at this link (the site answered 404).",
    Code.REFUSED: "The site refused the download.",
    Code.TOO_LONG: "This video is too long.",
    Code.TOO_LARGE: "This file is too large.",
    Code.LIVE: "Live streams can't be converted.",
    Code.PLAYLIST: "Playlists aren't supported: send a link to one video.",
    Code.NO_AUDIO: "This video has no audio track.",
    Code.BAD_MEDIA: "The file couldn't be read as audio or video.",
    Code.NETWORK: "The site couldn't be reached.",
    Code.SERVER: "The site had a server error.",
    Code.TIMEOUT: "The site took too long to answer.",
    Code.DISK_FULL: "The bot is out of space right now; try again later.",
    Code.INTERNAL: "Something went wrong on our side.",
}

# Worth trying again: the same request may succeed later.
TRANSIENT = frozenset({Code.NETWORK, Code.SERVER, Code.TIMEOUT, Code.DISK_FULL, Code.INTERNAL})


class JobError(Exception):
    """A job failed for a reason we can name.

    `hint` is added to the user's text (e.g. the limit that was exceeded);
    `detail` is for logs and the dead-letter list only.
    """

    def __init__(self, code: Code, detail: str = "", hint: str = "") -> None:
        super().__init__(f"{code}: {detail or hint}".rstrip(": "))
        self.code = code
        self.detail = detail
        self.hint = hint

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT

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
