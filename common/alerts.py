"""Alerts for the admins: what only the operator can fix, with the fix, once per kind per ALERT_INTERVAL.

A worker raises an alert into a Redis stream. Each bot platform reads that stream
with its own consumer group and sends every alert once to its admins; an alert
waits there for a bot that is down and goes out when it comes back. The texts are
fixed sentences: nothing from an error (a URL, a cookie, a proxy password) gets in.
"""

from __future__ import annotations

import logging
import time

import redis

from common import context, i18n
from common.i18n import N_, Lang
from common.keys import Keys
from common.redisio import Plan, command, run
from common.settings import get_settings

log = logging.getLogger(__name__)

# The sentences are message ids (N_): the stream carries the English, each admin reads it in their language.
TEXT: dict[str, str] = {
    "bot_check": N_("YouTube asks for a sign-in from this server (\"confirm you're not a bot\"): refresh the cookies "
                    "with /cookies, or add a proxy (PROXY_URL)."),
    "cookies_expired": N_("YouTube no longer accepts the bot's cookies (they were rotated): export a fresh set from "
                          "a throwaway account and send the file with /cookies."),
    "js_runtime": N_("yt-dlp found no JavaScript runtime, so YouTube formats are missing: install the "
                     "requirements (pip install -r requirements.txt brings deno), then restart the workers "
                     "(python -m tasks restart)."),
    "pot_provider": N_("YouTube wants PO tokens and none came: check that the PO-token provider runs and that "
                       "POT_PROVIDER_URL points at it (python -m tasks doctor checks it)."),
    "no_format": N_("YouTube gave the bot no playable format: update yt-dlp (pip install -U \"yt-dlp[default]\", then "
                    "python -m tasks restart); python -m tasks doctor tells what else is missing."),
}
HEADER = N_("ytmp3 needs you: %(problem)s")
MAXLEN = 200
MAX_AGE = 24 * 3600  # an alert older than this is dropped unsent (a bot that was away for days)
CONSUMER = "bot"  # one per group: a platform runs one bot process

# SET NX EX and XADD together: an alert is either sent and its kind quiet for the interval, or neither.
_RAISE = """
if redis.call('set', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'kind', ARGV[3], 'text', ARGV[4], 'time', ARGV[5])
end
return false
"""


def raise_alert(kind: str) -> bool:
    """Queue the alert of this kind for the admins, unless one went out within ALERT_INTERVAL.

    Never raises: an alert that can't be queued must not change how the job that raised it ends.
    """
    if kind not in TEXT:
        log.error("unknown alert kind %r", kind)
        return False
    client, keys = context.redis_client(), context.keys()
    interval = max(1, round(get_settings().alert_interval))
    try:
        queued = client.eval(_RAISE, 2, keys.alert_sent(kind), keys.alerts, interval, MAXLEN, kind, TEXT[kind],
                             time.time())
    except redis.RedisError as error:
        log.warning("admin alert %s not queued: %s", kind, error)
        return False
    if queued:
        log.warning("admin alert %s: %s", kind, TEXT[kind])
    return bool(queued)


def unread(platform: str, count: int = 10) -> list[tuple[str, dict[str, str]]]:
    """Alerts this platform has not delivered (see `fetch`); confirm each with `delivered`."""
    return run(context.redis_client(), fetch(context.keys(), platform, count))


def delivered(platform: str, alert_id: str) -> None:
    run(context.redis_client(), ack(context.keys(), platform, alert_id))


def fetch(keys: Keys, platform: str, count: int = 10) -> Plan[list[tuple[str, dict[str, str]]]]:
    """Alerts this platform has not delivered: first those it took and never confirmed (it stopped
    midway), then new ones. Each is (id, {kind, text, time}); confirm it with `ack`."""
    for start in ("0", ">"):
        read = command("xreadgroup", platform, CONSUMER, {keys.alerts: start}, count=count)
        try:
            [reply] = yield read
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            yield from _create_group(keys.alerts, platform)
            [reply] = yield read
        entries = [(entry_id.decode(), {k.decode(): v.decode() for k, v in (fields or {}).items()})
                   for _stream, items in reply or [] for entry_id, fields in items]
        if entries:
            return entries
    return []


def _create_group(stream: str, platform: str) -> Plan[None]:
    """A platform's first run (or a Redis that lost its data): it reads from the oldest kept alert on."""
    try:
        yield command("xgroup_create", stream, platform, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):  # made meanwhile by another process: fine
            raise


def ack(keys: Keys, platform: str, alert_id: str) -> Plan[None]:
    yield command("xack", keys.alerts, platform, alert_id)


def message(alert: dict[str, str], now: float | None = None, lang: Lang | None = None) -> str | None:
    """An admin's message for an alert, in their language; None when there is nothing to send (trimmed away, or
    stale). The stored text is the sentence's message id (an alert from another version: said as it came)."""
    text = alert.get("text")
    if not text or float(alert.get("time") or 0) < (now or time.time()) - MAX_AGE:
        return None
    lang = lang or i18n.get(i18n.SOURCE)
    return "⚠️ " + lang.gettext(HEADER, problem=lang.gettext(text))
