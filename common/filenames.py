"""Safe file names made from titles that strangers choose."""

from __future__ import annotations

import re
import unicodedata

from common.textlimits import FILENAME_BYTES, cut, utf8_len

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safe_filename(title: str, suffix: str = ".mp3", fallback: str = "audio") -> str:
    """A single path component of at most FILENAME_BYTES: no separators, no control characters, no
    leading dot. The title is cut to make room for `suffix` (a range, a part number and the extension),
    which is kept whole: the parts of one title keep names of their own."""
    name = unicodedata.normalize("NFC", title)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = _allowed(name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    suffix = _allowed(suffix)
    name = cut(name, FILENAME_BYTES - utf8_len(suffix), utf8_len).rstrip(" .")
    return (name or fallback) + suffix


def _allowed(text: str) -> str:
    """No character a file system refuses; times, as in a range's "(1:30–4:05)", stay readable."""
    return _FORBIDDEN.sub(" ", re.sub(r"(?<=\d):(?=\d)", ".", text))


def track_filename(number: int, total: int, title: str, part: str = "") -> str:
    """"03 Title.mp3": the number first (two digits at least, as music folders sort), so that names stay
    distinct and in order however titles are cut; `part` (" (1 of 2)") tells the parts of one track apart."""
    return safe_filename(f"{number:0{max(2, len(str(total)))}d} {title}", f"{part}.mp3")
