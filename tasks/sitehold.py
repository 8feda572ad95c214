"""Holding a site that rate-limits us: no download for it starts until the hold ends.

A rate limit ("This content isn't available, try again later", HTTP 429) is the site
asking us to slow down; trying again at once, or starting the next job for the same
site, only makes it last longer. A hold is one field per site in a Redis hash, the
time it ends; the download task looks there before it starts a job (tasks.stages).
"""

from __future__ import annotations

import time
from functools import lru_cache
from urllib.parse import urlparse

from common import context
from common.redisio import text


@lru_cache(maxsize=1024)
def site_of(url: str) -> str:
    """The site of a link as yt-dlp sees it: its extractor's family ("youtube" for youtu.be links,
    watch pages and playlists alike), or the host when only the generic extractor takes it."""
    from yt_dlp.extractor import gen_extractor_classes  # the worker's: chat processes never import yt-dlp
    from yt_dlp.globals import all_plugins_loaded
    from yt_dlp.plugins import load_all_plugins

    if not all_plugins_loaded.value:  # as YoutubeDL does: a plugin's extractor comes before the built-in ones
        load_all_plugins()  # (once: loaded again, the PO-token plugin fails to register twice, traceback and all)
    for extractor in gen_extractor_classes():
        if extractor.ie_key() != "Generic" and extractor.suitable(url):
            return str(extractor.IE_NAME).split(":")[0].lower()
    host = (urlparse(url).hostname or "").lower()
    return host.removeprefix("www.")


def hold(site: str, seconds: float) -> float:
    """No download for `site` starts within `seconds` from now; returns `seconds`."""
    client, keys = context.redis_client(), context.keys()
    now = time.time()
    pipe = client.pipeline()
    expired = [s for s, until in _holds().items() if until <= now]
    if expired:  # forgotten here: a hash field does not expire by itself
        pipe.hdel(keys.site_holds, *expired)
    pipe.hset(keys.site_holds, site, str(now + seconds))
    pipe.execute()
    return seconds


def held_for(url: str, now: float | None = None) -> float:
    """Seconds until a download of `url` may start: 0 when its site is not on hold."""
    now = now or time.time()
    holds = {site: until for site, until in _holds().items() if until > now}
    if not holds:  # the usual case: no need to find the link's site
        return 0.0
    return max(0.0, holds.get(site_of(url), 0.0) - now)


def _holds() -> dict[str, float]:
    raw = context.redis_client().hgetall(context.keys().site_holds)
    return {text(site): float(until) for site, until in raw.items()}
