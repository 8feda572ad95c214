"""Podcast feeds: yt-dlp's generic extractor, with what it leaves out of a feed.

yt-dlp (2026.10.26) reads an RSS feed as a playlist of its enclosures in the feed's order, each with its
date (pubDate, as `timestamp`) and its own image (the item's itunes:image, as `thumbnail`), and drops the
channel's image. FeedIE takes the generic extractor's place in our downloads and changes two things:

- the entries come newest first when every one has a date (feeds list them either way), so that
  PLAYLIST_MAX, a user's range ("2-5") and PLAYLIST=first count from the newest episode;
- the channel's image (itunes:image, else <image><url>) is the playlist's thumbnail: the album's cover,
  fetched later through the network guard like any other image.
"""

from __future__ import annotations

import datetime
from typing import Any
from xml.etree.ElementTree import Element

from yt_dlp.extractor.generic import GenericIE
from yt_dlp.utils import url_or_none, urljoin

from common.textlimits import LINK_CHARS

ITUNES = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"


class FeedIE(GenericIE):
    """The generic extractor, reading feeds as above (added to a YoutubeDL, it replaces the generic one)."""

    @classmethod
    def ie_key(cls) -> str:
        return str(GenericIE.ie_key())

    def _extract_rss(self, url: str, video_id: str, doc: Element, *args: Any, **kwargs: Any) -> dict[str, Any]:
        playlist: dict[str, Any] = super()._extract_rss(url, video_id, doc, *args, **kwargs)
        playlist["entries"] = newest_first(list(playlist.get("entries") or []))
        image = channel_image(doc, url)
        if image:
            playlist["thumbnails"] = [{"url": image}]
        return playlist


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries by date, newest first (equal dates keep their order); as they are unless all have one."""
    dates = [entry_date(e) for e in entries]
    if any(d is None for d in dates):
        return entries
    order = sorted(range(len(entries)), key=lambda i: -(dates[i] or 0.0))
    return [entries[i] for i in order]


def entry_date(entry: dict[str, Any]) -> float | None:
    """When an entry was published (epoch seconds): its timestamp, else its upload_date (YYYYMMDD)."""
    stamp = entry.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return float(stamp)
    day = entry.get("upload_date")
    try:
        return datetime.datetime.strptime(str(day), "%Y%m%d").replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return None


def channel_image(doc: Element, base: str) -> str | None:
    """The feed's own image as an absolute link: itunes:image's href, else <image><url>; None without one."""
    channel = doc.find("./channel")
    if channel is None:
        return None
    itunes = channel.find(f"./{ITUNES}image")
    for link in (itunes.get("href") if itunes is not None else None, channel.findtext("./image/url")):
        link = (link or "").strip()
        if link and len(link) <= LINK_CHARS and (absolute := url_or_none(urljoin(base, link))):
            return str(absolute)
    return None
