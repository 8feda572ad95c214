"""A playlist or feed as an album: one job per entry through the normal pipeline, run as a Celery group.

The album's own job (the one the user's link started) keeps the list of its tracks' job ids in
playlist order; the bots follow the tracks through it and deliver them in that order. Each
track is an ordinary job (cache, de-duplication, retries, fit-to-limit) whose download checks
the entry's link exactly as it would check a link a user sent.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from celery import group

from common import context
from common.errors import Code, JobError
from common.jobs import Job, saying
from common.settings import Settings
from common.textlimits import LINK_CHARS, TITLE_CHARS, cut
from tasks import pipeline

log = logging.getLogger(__name__)


class Expanded(Exception):  # not an error: the album's own chain ends here, its tracks run on
    """The album's tracks were submitted."""


SMUGGLED = "#__youtubedl_smuggle="  # yt-dlp's generic extractor passes hints to itself in the link's fragment


def entry_link(entry: dict[str, Any]) -> str:
    """The entry's own link, as a user would send it."""
    return str(entry.get("url") or entry.get("webpage_url") or "").split(SMUGGLED)[0]


def entry_title(entry: dict[str, Any], album: str) -> str:
    """The entry's own name in the playlist; "" when it has none but the album's (a page's media elements)."""
    title = cut(str(entry.get("title") or ""), TITLE_CHARS)
    return "" if title == album else title


def author(info: dict[str, Any]) -> str:
    return str(info.get("uploader") or info.get("channel") or info.get("playlist_uploader") or "")


def image(info: dict[str, Any]) -> str:
    """The best image an entry or a playlist names (yt-dlp lists thumbnails best last); "" for none."""
    found = [t.get("url") for t in info.get("thumbnails") or [] if isinstance(t, dict)] + [info.get("thumbnail")]
    return next((link for link in reversed(found) if isinstance(link, str) and 0 < len(link) <= LINK_CHARS), "")


def covers(entry: dict[str, Any], album_cover: str) -> list[str]:
    """A track's cover if its own link brings none: its entry's image, then the album's (a feed's, a playlist's)."""
    return list(dict.fromkeys(link for link in (image(entry), album_cover) if link))


def expand(album: Job, info: dict[str, Any], settings: Settings) -> list[str]:
    """Submit one job per entry (up to PLAYLIST_MAX) for the album's requesters; returns their ids in order."""
    entries = [e for e in info.get("entries") or [] if entry_link(e)][: settings.playlist_max]
    if not entries:
        raise JobError(Code.PLAYLIST, "a playlist without entries")
    store = context.store()
    title = cut(str(info.get("title") or ""), TITLE_CHARS) or "Album"
    artist = cut(author(info), TITLE_CHARS)
    cover = image(info)
    origins = [{**origin, "album": album.id} for origin in store.origins(album.id)]
    ids: list[str] = []
    fresh: list[str] = []
    for number, entry in enumerate(entries, 1):
        track = replace(pipeline.new_job(entry_link(entry), album.bitrate, album.limit_bytes,
                                         loudness=album.loudness),
                        album=title, album_artist=artist, track=number, tracks=len(entries), parent=album.id,
                        title=entry_title(entry, title), covers=covers(entry, cover))
        # The same video in another album (or alone) is tagged otherwise: a job of its own.
        track.fingerprint = pipeline.fingerprint(track.url, track.bitrate, track.limit_bytes,
                                                 f"{album.fingerprint}:{number}/{len(entries)}")
        job_id, joined = store.claim(track, origins[0] if origins else None)
        for origin in origins[1:]:
            store.add_origin(job_id, origin)
        ids.append(job_id)
        if not joined:
            fresh.append(job_id)
    # A large album costs much: its requester says yes first (unless they said, in /settings, never to ask).
    confirm = 0 < settings.album_confirm < len(ids) and album.confirm_albums
    if not store.update_unless_finished(album.id, entries=ids, album=title, album_artist=artist, tracks=len(ids),
                                        title=title, uploader=artist, confirm=confirm, **saying("message", [])):
        for job_id in ids:  # cancelled while it was being read: none of its tracks starts
            pipeline.cancel(job_id)
        return ids
    if not confirm:
        group(pipeline.chain_of(job_id) for job_id in fresh).apply_async()
    log.info("album %s: %d tracks", album.id, len(ids))
    return ids
