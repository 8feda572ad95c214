"""Safe file names made from titles that strangers choose."""

from __future__ import annotations

import re
import unicodedata

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
MAX_BYTES = 150


def safe_filename(title: str, suffix: str = ".mp3", fallback: str = "audio") -> str:
    """A single path component: no separators, no control characters, no leading dot, bounded length."""
    name = unicodedata.normalize("NFC", title)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = _FORBIDDEN.sub(" ", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    while len(name.encode()) > MAX_BYTES:
        name = name[:-1]
    name = name.rstrip(" .")
    return (name or fallback) + suffix
