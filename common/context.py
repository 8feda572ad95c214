"""The process's shared clients, made on first use (importing connects to nothing)."""

from __future__ import annotations

from functools import lru_cache

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.jobs import JobStore
from common.keys import Keys
from common.settings import get_settings

ASYNC_SOCKET_TIMEOUT = 10.0  # seconds; the bots' longest blocking read (XREAD) is 1 s


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
def async_redis_client() -> redis.asyncio.Redis:
    """The chat bots' client: every call bounded in time (a half-open connection fails instead of hanging),
    connections checked before use after a quiet spell. Blocking reads must stay well under the socket timeout."""
    return redis.asyncio.Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=5,
        socket_timeout=ASYNC_SOCKET_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=3),
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
    for cached in (get_settings, redis_client, async_redis_client, keys, store):
        cached.cache_clear()
