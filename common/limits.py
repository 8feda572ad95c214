"""Per-user limits (jobs at once, jobs per hour) and the global queue cap, checked atomically."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from common.errors import english
from common.i18n import N_, Msg
from common.keys import Keys
from common.redisio import Plan, command, run
from common.settings import Settings
from common.stats import disk_usage

# KEYS: active set, hourly zset. ARGV: now, max active, max per hour, member.
# Returns 0 when reserved, 1 when too many at once, 2 when too many this hour (then ARGV oldest).
_RESERVE = """
redis.call('zremrangebyscore', KEYS[2], '-inf', tonumber(ARGV[1]) - 3600)
if redis.call('scard', KEYS[1]) >= tonumber(ARGV[2]) then return {1, 0} end
if redis.call('zcard', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('zrange', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, oldest[2]}
end
redis.call('sadd', KEYS[1], ARGV[4])
redis.call('expire', KEYS[1], 86400)
redis.call('zadd', KEYS[2], ARGV[1], ARGV[4])
redis.call('expire', KEYS[2], 3600)
return {0, 0}
"""


@dataclass(frozen=True)
class Refusal:
    """Why a link is not taken now: sentences said in the user's language (errors.sentences)."""

    said: tuple[Msg, ...]

    @property
    def text(self) -> str:
        """In English: logs, tests."""
        return english(self.said)


BUSY = Refusal((Msg(N_("The bot is busy right now; please try again in a few minutes.")),))
DISK_FULL = Refusal((Msg(N_("The bot is out of space right now; please try again later.")),))
_DISK_CHECK_EVERY = 10.0  # seconds: walking the folders is not free
_disk_checked: tuple[float, bool] = (0.0, False)


def disk_full(settings: Settings) -> bool:
    """True when the temp or output folder is at its cap, or the disk is nearly full."""
    global _disk_checked
    checked_at, full = _disk_checked
    if time.monotonic() - checked_at < _DISK_CHECK_EVERY:
        return full
    full = (
        disk_usage(settings.temp_dir) >= settings.max_temp_bytes
        or disk_usage(settings.storage_dir) >= settings.max_storage_bytes
        or _free_bytes(settings.storage_dir) < settings.min_free_bytes
    )
    _disk_checked = (time.monotonic(), full)
    return full


def _free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def reserve(keys: Keys, platform: str, user_id: int | str, request_id: str, at_once: int, per_hour: int,
            queue_cap: int, waiting: int) -> Plan[Refusal | None]:
    """Take a running slot for this request, or say why not. `waiting` is the download queue's depth."""
    if waiting >= queue_cap:
        return BUSY
    now = time.time()
    [(status, oldest)] = yield command("eval", _RESERVE, 2, keys.user(platform, user_id, "active"),
                                       keys.user(platform, user_id, "hourly"), now, at_once, per_hour, request_id)
    if status == 1:
        return Refusal((Msg.ngettext(
            "You already have %(n)s conversion running; send this link again when it has finished.",
            "You already have %(n)s conversions running; send this link again when one has finished.", at_once),))
    if status == 2:
        minutes = max(1, round((float(oldest) + 3600 - now) / 60))
        return Refusal((Msg.ngettext("You've reached %(n)s conversion this hour.",
                                     "You've reached %(n)s conversions this hour.", per_hour),
                        Msg.ngettext("Try again in %(n)s minute.", "Try again in %(n)s minutes.", minutes)))
    return None


def charge(keys: Keys, platform: str, user_id: int | str, request_id: str, tracks: int) -> Plan[None]:
    """An album counts as one conversion per track against the hourly limit (its request counted one already)."""
    key = keys.user(platform, user_id, "hourly")
    now = time.time()
    extra = {f"{request_id}#{n}": now for n in range(2, tracks + 1)}
    if extra:
        yield command("zadd", key, extra)
        yield command("expire", key, 3600)


def release(keys: Keys, platform: str, user_id: int | str, request_id: str) -> Plan[None]:
    """The request ended (delivered, failed or cancelled): its running slot is free again."""
    yield command("srem", keys.user(platform, user_id, "active"), request_id)



class Limits:
    def __init__(self, client: redis.Redis, keys: Keys, platform: str, at_once: int, per_hour: int,
                 queue_cap: int) -> None:
        self.redis = client
        self.keys = keys
        self.platform = platform
        self.at_once = at_once
        self.per_hour = per_hour
        self.queue_cap = queue_cap

    def reserve(self, user_id: int | str, request_id: str, waiting: int) -> Refusal | None:
        """Take a slot for this request, or say why not. `waiting` is the download queue's depth."""
        return run(self.redis, reserve(self.keys, self.platform, user_id, request_id, self.at_once, self.per_hour,
                                       self.queue_cap, waiting))

    def release(self, user_id: int | str, request_id: str) -> None:
        """The request ended (delivered, failed or cancelled): its running slot is free again."""
        run(self.redis, release(self.keys, self.platform, user_id, request_id))
