"""Which video a link is, and what a platform already has of it: repeats skip the whole pipeline."""

from __future__ import annotations

import json
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


def lookup(keys: Keys, platform: str, url: str, bitrate: int, variant: str = "") -> Plan[Parts | None]:
    """The cached parts for a link, counting a hit or a miss."""
    [video_key] = yield command("get", keys.source(link_key(url)))
    raw = None
    if video_key:
        [raw] = yield command("get", keys.cache(platform, video_key.decode(), bitrate, variant))
    yield command("hincrby", keys.cache_hits(platform), "hits" if raw else "misses", 1)
    return json.loads(raw) if raw else None


def store(keys: Keys, platform: str, ttl: int, url: str, video_key: str, bitrate: int, parts: Parts,
          variant: str = "") -> Plan[None]:
    def queue(pipe: Any) -> None:
        pipe.set(keys.source(link_key(url)), video_key, ex=ttl)
        pipe.set(keys.cache(platform, video_key, bitrate, variant), json.dumps(parts), ex=ttl)

    yield Batch(queue)


def forget(keys: Keys, platform: str, url: str, bitrate: int, variant: str = "") -> Plan[None]:
    """A reference the platform no longer accepts."""
    [video_key] = yield command("get", keys.source(link_key(url)))
    if video_key:
        yield command("delete", keys.cache(platform, video_key.decode(), bitrate, variant))


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
