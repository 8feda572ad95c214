"""Test-only yt-dlp extractor, put on a worker's PYTHONPATH: a site whose long lists come in pages.

It stands in for sites such as YouTube whose playlists yt-dlp reads page by page, lazily;
the pages are served by the test media server (``/paged/<id>/<n>``). Nothing of this is in
the project's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import OnDemandPagedList

PAGE_SIZE = 10


class PagedListTestIE(InfoExtractor):
    IE_NAME = "pagedlisttest"
    _VALID_URL = r"https?://127\.0\.0\.1:\d+/paged/(?P<id>[\w-]+)/?(?:\?(?P<query>.*))?$"

    def _real_extract(self, url: str) -> dict[str, Any]:
        list_id, query = self._match_valid_url(url).group("id", "query")
        base = url.split("/paged/")[0]

        def page(number: int) -> Iterator[dict[str, Any]]:
            data = self._download_json(f"{base}/paged/{list_id}/{number}?{query or ''}", list_id,
                                       note=f"page {number}")
            for link in data["entries"]:
                yield self.url_result(link)

        return self.playlist_result(OnDemandPagedList(page, PAGE_SIZE), list_id, "A long list")
