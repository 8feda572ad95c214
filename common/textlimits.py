"""Platform text limits in one place, and cutting text to them without breaking a character.

Each platform counts differently: Telegram counts the text a user sees (after its HTML is
parsed) in UTF-16 code units, Discord counts the code points of the raw content (its API is
Python), file systems count the bytes of a name. Texts are cut on the plain text, before any
markup is added, so that a cut never falls inside an HTML entity, a tag or an escape.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from common.i18n import Lang

TELEGRAM_MESSAGE = 4096  # UTF-16 code units of the visible text
TELEGRAM_CAPTION = 1024
DISCORD_CONTENT = 2000  # code points of the content as sent
DISCORD_MENTION = 24  # "<@" + a snowflake of up to 20 digits + "> ", put before content in a channel
FILENAME_BYTES = 255  # one path component, UTF-8 (ext4, btrfs, XFS, APFS, NTFS in characters)
TITLE_CHARS = 1000  # titles and uploader names as a site gives them: the rest is never shown anyway
LINK_CHARS = 2048  # an image link a site names (a cover): a longer one is dropped, not fetched
ELLIPSIS = "…"

ZWJ = "\u200d"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utf8_len(text: str) -> int:
    return len(text.encode())


def _joins(ch: str) -> bool:
    """A character that belongs to the one before it: combining marks, variation selectors, emoji
    skin tones and tag characters, and anything after a zero-width joiner."""
    code = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Mc", "Me") or ch == ZWJ or 0x1F3FB <= code <= 0x1F3FF
            or 0xE0020 <= code <= 0xE007F)


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def boundary(text: str, index: int) -> int:
    """The nearest index <= `index` where `text` may be cut without splitting what is seen as one
    character (a letter and its accents, an emoji sequence, a flag)."""
    index = max(0, min(index, len(text)))
    while 0 < index < len(text) and (_joins(text[index]) or text[index - 1] == ZWJ):
        index -= 1
    if 0 < index < len(text) and _regional(text[index]) and _regional(text[index - 1]):
        run = index
        while run > 0 and _regional(text[run - 1]):
            run -= 1
        index -= (index - run) % 2  # flags are pairs: never cut one in half
    return index


def shorten(text: str, chars: int) -> str:
    """At most `chars` characters: the text as it is, or its start and an ellipsis."""
    if len(text) <= chars:
        return text
    return text[: boundary(text, chars - 1)] + ELLIPSIS


def cut(text: str, limit: int, measure: Callable[[str], int] = len) -> str:
    """The text, or its longest start with an ellipsis that measures at most `limit` ("" if none does)."""
    if measure(text) <= limit:
        return text
    low, high = 0, len(text)  # shorten(text, low) fits (low 0: nothing does yet), shorten(text, high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if measure(shorten(text, middle)) <= limit:
            low = middle
        else:
            high = middle
    return shorten(text, low) if low else ""


def fit(compose: Callable[..., str], pieces: Sequence[str], measure: Callable[[str], int], limit: int) -> str:
    """`compose(*pieces)`, with the pieces (plain text from strangers) shortened until it fits.

    Every piece is held to the same number of characters, the largest that fits: a short piece
    (a link) stays whole while a long one (a title) is cut. `compose` adds the markup, so no cut
    can fall inside it. The fixed part of the text must fit by itself.
    """
    text = compose(*pieces)
    if measure(text) <= limit:
        return text
    low, high = 1, max(len(p) for p in pieces)  # every piece at least "…"
    best = compose(*(shorten(p, low) for p in pieces))
    while high - low > 1:
        middle = (low + high) // 2
        candidate = compose(*(shorten(p, middle) for p in pieces))
        if measure(candidate) <= limit:
            low, best = middle, candidate
        else:
            high = middle
    return best


def part_suffix(number: int, count: int, lang: Lang) -> str:
    """What tells the parts of one split MP3 apart, " (2 of 3)"; added after any cut, so parts stay distinct."""
    return " " + lang.gettext("(%(number)s of %(count)s)", number=number, count=count) if count > 1 else ""
