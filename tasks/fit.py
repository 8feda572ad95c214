"""Fit an MP3 to a delivery limit: a lower bitrate if one fits, parts if none does."""

from __future__ import annotations

import math
from dataclasses import dataclass

STANDARD_BITRATES = (320, 256, 224, 192, 160, 128, 112, 96, 80, 64, 56, 48, 40, 32)
TAG_ROOM = 8 * 1024  # ID3 frames besides the cover
MARGIN = 0.95  # CBR sizes are exact but frame padding and headers vary a little


@dataclass(frozen=True)
class Plan:
    bitrate: int
    parts: int


def audio_bytes(duration: float, bitrate: int) -> float:
    return duration * bitrate * 1000 / 8


def plan(duration: float, bitrate: int, min_bitrate: int, limit: int | None, cover_bytes: int = 0) -> Plan:
    """The highest standard bitrate <= `bitrate` and >= `min_bitrate` that fits, else parts."""
    overhead = TAG_ROOM + cover_bytes
    if limit is None or audio_bytes(duration, bitrate) + overhead <= limit * MARGIN:
        return Plan(bitrate, 1)
    for candidate in STANDARD_BITRATES:
        if min_bitrate <= candidate < bitrate and audio_bytes(duration, candidate) + overhead <= limit * MARGIN:
            return Plan(candidate, 1)
    room = limit * MARGIN - overhead
    if room <= 0:
        raise ValueError("delivery limit is too small for any MP3")
    return Plan(bitrate, math.ceil(audio_bytes(duration, bitrate) / room))
