"""Which video a link is, and what a platform already has of it: repeats skip the whole pipeline."""

from __future__ import annotations

import json
from typing import Any

import redis

from common.keys import Keys
from common.links import link_key


class DeliveryCache:
    """Per platform: (video identity, bitrate) -> the platform's references to the delivered parts."""

    def __init__(self, client: redis.Redis, keys: Keys, platform: str, ttl: int) -> None:
        self.redis = client
        self.keys = keys
        self.platform = platform
        self.ttl = ttl

    def lookup(self, url: str, bitrate: int) -> list[dict[str, Any]] | None:
        """The cached parts for a link, counting a hit or a miss."""
        video_key = self.redis.get(self.keys.source(link_key(url)))
        raw = self.redis.get(self.keys.cache(self.platform, video_key.decode(), bitrate)) if video_key else None
        self.redis.hincrby(self.keys.cache_hits(self.platform), "hits" if raw else "misses", 1)
        return json.loads(raw) if raw else None

    def store(self, url: str, video_key: str, bitrate: int, parts: list[dict[str, Any]]) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self.keys.source(link_key(url)), video_key, ex=self.ttl)
        pipe.set(self.keys.cache(self.platform, video_key, bitrate), json.dumps(parts), ex=self.ttl)
        pipe.execute()

    def forget(self, url: str, bitrate: int) -> None:
        """A reference the platform no longer accepts."""
        video_key = self.redis.get(self.keys.source(link_key(url)))
        if video_key:
            self.redis.delete(self.keys.cache(self.platform, video_key.decode(), bitrate))
