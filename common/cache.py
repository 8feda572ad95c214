"""Which video a link is, and what a platform already has of it: repeats skip the whole pipeline.

A cached whole of a source with chapters remembers how many (each part carries "chapters"), so a repeat
served from here can offer the split its first delivery offered. The button can't name a job (it may have
expired, and the one who asks now is not among its requesters): it names a split offer, kept for its
requester alone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any

import redis

from common.keys import Keys
from common.links import link_key
from common.redisio import Batch, Plan, command, run

Parts = list[dict[str, Any]]


def variant(clip: str = "", split: bool = False, loudness: float | None = None) -> str:
    """Which delivery of a video a request wants besides its bitrate, for cache keys and request fingerprints:
    "" for the whole as one MP3 as loud as the source, else a range ("r90-245", common.clip's Clip.key),
    "chapters", a loudness target ("l-14")."""
    parts = [f"r{clip}"] if clip else []
    parts += ["chapters"] if split else []
    parts += [f"l{loudness:g}"] if loudness is not None else []
    return ",".join(parts)


OFFER = "hit"
"""A split offer's reference starts so; a job id is hexadecimal alone, so the two never mix."""


@dataclass(frozen=True)
class SplitOffer:
    """What a split of a cached MP3 needs, and who may ask for it."""

    user_id: int
    url: str
    bitrate: int
    limit_bytes: int | None
    clip: str = ""
    loudness: float | None = None


def chapters(parts: Parts) -> int:
    """How many tracks a split of this cached delivery would make; 0 when none (read tolerantly)."""
    count = parts[0].get("chapters") if parts and isinstance(parts[0], dict) else None
    return count if isinstance(count, int) and count > 1 else 0


def lookup(keys: Keys, platform: str, url: str, bitrate: int, variant: str = "") -> Plan[Parts | None]:
    """The cached parts for a link, counting a hit or a miss."""
    [video_key] = yield command("get", keys.source(link_key(url)))
    raw = None
    if video_key:
        [raw] = yield command("get", keys.cache(platform, video_key.decode(), bitrate, variant))
    yield command("hincrby", keys.cache_hits(platform), "hits" if raw else "misses", 1)
    return json.loads(raw) if raw else None


def store(keys: Keys, platform: str, ttl: int, url: str, video_key: str, bitrate: int, parts: Parts,
          variant: str = "", chapters: int = 0) -> Plan[None]:
    """`chapters`: the tracks a split of this delivery would make (0: none to offer)."""
    kept = [{**part, "chapters": chapters} for part in parts] if chapters else parts

    def queue(pipe: Any) -> None:
        pipe.set(keys.source(link_key(url)), video_key, ex=ttl)
        pipe.set(keys.cache(platform, video_key, bitrate, variant), json.dumps(kept), ex=ttl)

    yield Batch(queue)


def forget(keys: Keys, platform: str, url: str, bitrate: int, variant: str = "") -> Plan[None]:
    """A reference the platform no longer accepts."""
    [video_key] = yield command("get", keys.source(link_key(url)))
    if video_key:
        yield command("delete", keys.cache(platform, video_key.decode(), bitrate, variant))


def offer(keys: Keys, platform: str, ttl: int, split: SplitOffer) -> Plan[str]:
    """Keep a split offer for `ttl` seconds; its reference, for a button (unguessable: a forged one finds nothing)."""
    ref = OFFER + uuid.uuid4().hex[:16]
    yield command("set", keys.split_offer(platform, ref), json.dumps(asdict(split)), ex=ttl)
    return ref


def offered(keys: Keys, platform: str, ref: str) -> Plan[SplitOffer | None]:
    """The offer a button names; None when it expired, never was, or can't be used (a field a newer version added
    is left aside)."""
    [raw] = yield command("get", keys.split_offer(platform, ref))
    try:
        data = json.loads(raw) if raw else None
        known = {f.name for f in fields(SplitOffer)}
        split = SplitOffer(**{k: v for k, v in data.items() if k in known}) if isinstance(data, dict) else None
    except (TypeError, ValueError):  # not JSON, or a field it cannot do without is missing
        return None
    usable = split is not None and (
        isinstance(split.user_id, int) and isinstance(split.url, str) and isinstance(split.bitrate, int)
        and isinstance(split.clip, str) and isinstance(split.limit_bytes, int | None)
        and isinstance(split.loudness, int | float | None))
    return split if usable else None


class DeliveryCache:
    """Per platform: (video identity, bitrate) -> the platform's references to the delivered parts."""

    def __init__(self, client: redis.Redis, keys: Keys, platform: str, ttl: int) -> None:
        self.redis = client
        self.keys = keys
        self.platform = platform
        self.ttl = ttl

    def lookup(self, url: str, bitrate: int) -> Parts | None:
        return run(self.redis, lookup(self.keys, self.platform, url, bitrate))

    def store(self, url: str, video_key: str, bitrate: int, parts: Parts) -> None:
        run(self.redis, store(self.keys, self.platform, self.ttl, url, video_key, bitrate, parts))

    def forget(self, url: str, bitrate: int) -> None:
        run(self.redis, forget(self.keys, self.platform, url, bitrate))
