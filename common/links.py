"""Links in chat messages: finding them and telling two spellings of one link apart."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"""https?://[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}»"


def find_links(text: str) -> list[str]:
    """http(s) links in a message, in order, without repeats or trailing punctuation."""
    found: list[str] = []
    for match in _URL.finditer(text or ""):
        link = match.group(0).rstrip(_TRAILING)
        if link not in found:
            found.append(link)
    return found


def normalize(url: str) -> str:
    """The link as its site sees it: host (lower case), path and query; no scheme, no fragment.

    Two links with the same normal form are the same resource of the same site; links of two
    sites never share one, whatever their file names.
    """
    parts = urlsplit(url.strip())
    return urlunsplit(("", parts.netloc.lower(), parts.path or "/", parts.query, "")).removeprefix("//")


def link_key(url: str) -> str:
    """A short stable key for a link."""
    return hashlib.sha256(normalize(url).encode()).hexdigest()[:24]
