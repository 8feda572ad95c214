"""The process's shared clients, made on first use (importing connects to nothing)."""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.jobs import JobStore
from common.keys import Keys
from common.settings import get_settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = get_settings()
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=5),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@lru_cache(maxsize=1)
def keys() -> Keys:
    return Keys(get_settings().key_prefix)


@lru_cache(maxsize=1)
def store() -> JobStore:
    return JobStore(redis_client(), keys(), get_settings().job_ttl)


def reset() -> None:
    """Forget settings and clients (tests that change the environment)."""
    for cached in (get_settings, redis_client, keys, store):
        cached.cache_clear()
