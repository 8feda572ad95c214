"""Thumbnails as they arrive: what kind of image the bytes are and how large it claims to be.

Both are read from the first bytes alone, before anything decodes the image: a PNG of one colour,
a few kilobytes on the wire, can say 16000×16000 and cost a gigabyte once decoded.
"""

from __future__ import annotations

from typing import Literal

# Far above any site's thumbnail (YouTube's largest is 1280×720); decoded, about 4 bytes a pixel.
MAX_PIXELS = 25_000_000

_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG start-of-frame markers (not DHT, JPG, DAC)


def kind(data: bytes) -> str | None:
    """The image's file extension by content, not by name: ffmpeg picks its decoder from the extension."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header states it, or None when there is no header we can read."""
    ext = kind(data)
    if ext == ".png":
        return (_int(data, 16, 4), _int(data, 20, 4)) if data[12:16] == b"IHDR" and len(data) >= 24 else None
    if ext == ".jpg":
        return _jpeg_size(data)
    if ext == ".webp":
        return _webp_size(data)
    return None


def too_large(data: bytes, max_pixels: int = MAX_PIXELS) -> bool:
    """True unless the header states a size of at most max_pixels (an unreadable header is too large too)."""
    dims = size(data)
    return dims is None or dims[0] * dims[1] > max_pixels or 0 in dims


def _int(data: bytes, at: int, length: int, order: Literal["big", "little"] = "big") -> int:
    return int.from_bytes(data[at:at + length], order)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The first start-of-frame segment's size, walking the segments from the start."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
        elif marker in _SOF:
            return _int(data, at + 7, 2), _int(data, at + 5, 2)
        elif marker == 0xDA:  # image data before any frame header
            return None
        else:
            at += 2 + _int(data, at + 2, 2)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sizes after the start code
        return _int(data, 26, 2, "little") & 0x3FFF, _int(data, 28, 2, "little") & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":  # lossless: 14-bit sizes minus one, packed
        bits = _int(data, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        return _int(data, 24, 3, "little") + 1, _int(data, 27, 3, "little") + 1
    return None
