"""Test only: YouTube's answers from the tests' local server, through yt-dlp's own YouTube extractor.

yt-dlp loads this module as an extractor plugin when ``tests/ytdlp_plugins`` is on
sys.path (it looks for ``yt_dlp_plugins/extractor/*.py`` in every sys.path entry);
only the tests' worker gets it, through PYTHONPATH. It takes links
``http://127.0.0.1:PORT/yt/<case>`` and nothing else. Where the real extractor asks
YouTube for its page and player responses, it fetches the case's answer from that
link; from there on the real YoutubeIE code runs, so each case fails with exactly the
exception class and text yt-dlp gives for that answer from YouTube.

An answer is ``{"player_response": {...}, "environment": {...}}``; the environment
plays what the real extractor would find on a server: no JS runtime, account
cookies that YouTube has rotated since they were read, or a client that needs a PO
token (asked of the installed provider plugin through yt-dlp's own framework).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yt_dlp.extractor.youtube import YoutubeIE
from yt_dlp.extractor.youtube.pot.provider import PoTokenContext


class FakeYoutubeIE(YoutubeIE):
    IE_NAME = "youtube:fake"
    IE_DESC = False
    _VALID_URL = r"http://127\.0\.0\.1:\d+/yt/(?P<id>[\w-]+)"

    @classmethod
    def _extract_from_webpage(cls, url: str, webpage: str) -> Iterator[Any]:
        return iter(())  # YouTube embeds in a page are the real extractor's

    def _initial_extract(self, url: str, smuggled_data: Any, webpage_url: str, webpage_client: str,
                         video_id: str) -> tuple[Any, ...]:
        answer = self._download_json(url, video_id, note="Downloading the test server's YouTube answer")
        environment = answer.get("environment") or {}
        if environment.get("no_js_runtime"):  # as on a server without deno: yt-dlp finds no runtime
            self._downloader.params["js_runtimes"] = {}
            self._downloader.__dict__.pop("_js_runtimes", None)
        if environment.get("po_token_needed"):  # a client whose policy requires one: the real framework asks
            self.fetch_po_token(client="web", context=PoTokenContext.PLAYER, video_id=video_id,
                                ytcfg=self._get_default_ytcfg("web"), required=True)
        if environment.get("cookies_rotated"):  # the real check after each request sees the sign-in gone
            self._passed_auth_cookies = True
            self._download_webpage(url, video_id, note="Downloading the test server's YouTube answer again")
        self._get_requested_clients(url, smuggled_data, False)  # the real choice of clients, with its warnings
        return None, {}, {}, False, [answer["player_response"]], None
