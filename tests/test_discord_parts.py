"""The Discord bot's parts that need no Discord: escaping, the MP3 file cache, the token's lifetime."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from bots.core import Request
from bots.discord_adapter import TOKEN_LIFE, Outgoing, messages_of, token_alive
from bots.filecache import FileCache
from common import i18n
from common.render import MarkdownMarkup, captions


def plain(text: str) -> str:
    """What Discord shows of escaped markdown."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


def test_markdown_escaping_neutralises_markup_and_mentions() -> None:
    markup = MarkdownMarkup()
    hostile = "**x** _y_ `z` ~~s~~ ||spoiler|| > q # h - l 1. n [a](http://b) <#1> <t:0> :smile: @everyone \\"
    escaped = markup.escape(hostile)
    assert plain(escaped) == hostile
    assert not re.search(r"(?<!\\)[*_`~|<>#\[\]():-]", escaped)
    assert "@everyone" not in escaped
    assert markup.link("https://x.test/a_b?c=<d> e") == "<https://x.test/a_b?c=%3Cd%3E%20e>"


def test_file_cache_drops_the_least_recently_used(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", cap_bytes=250)
    sources = []
    for n in range(3):
        sources.append(tmp_path / f"{n}.mp3")
        sources[-1].write_bytes(bytes(100))
    now = time.time()
    for n, source in enumerate(sources[:2]):
        cache.put(source, f"{n}.mp3")
        os.utime(cache.root / f"{n}.mp3", (now - 100 + n, now - 100 + n))
    assert cache.get("0.mp3")  # used now: 1.mp3 is the least recently used
    cache.put(sources[2], "2.mp3")
    assert sorted(p.name for p in cache.root.glob("*.mp3")) == ["0.mp3", "2.mp3"]
    assert cache.get("1.mp3") is None
    assert cache.put(tmp_path / "0.mp3", "big.mp3") is not None
    (tmp_path / "huge.mp3").write_bytes(bytes(300))
    assert cache.put(tmp_path / "huge.mp3", "huge.mp3") is None


def test_token_is_used_for_fourteen_minutes_only() -> None:
    req = Request("r", "u", 1, 2, 192, None, where={"token": "t", "created": 1000.0})
    assert token_alive(req, now=1000.0 + TOKEN_LIFE - 1)
    assert not token_alive(req, now=1000.0 + TOKEN_LIFE + 1)
    req.status = {"mode": "channel", "channel_id": 2, "message_id": 5}
    assert not token_alive(req, now=1001.0)


def test_album_files_share_messages_up_to_ten_within_the_limit() -> None:
    def files(*sizes: int) -> list[Outgoing]:
        return [Outgoing(Path(f"{n}.mp3"), f"{n}.mp3", size, f"T{n}", "", "https://x.test/") for n, size in
                enumerate(sizes)]

    def shape(groups: list[list[Outgoing]]) -> list[list[str]]:
        return [[f.filename for f in group] for group in groups]

    assert shape(messages_of(files(*[1] * 12), 100)) == [[f"{n}.mp3" for n in range(10)], ["10.mp3", "11.mp3"]]
    assert shape(messages_of(files(40, 40, 40, 90, 10), 100)) == [["0.mp3", "1.mp3"], ["2.mp3"], ["3.mp3", "4.mp3"]]
    assert shape(messages_of(files(150, 10), 100)) == [["0.mp3"], ["1.mp3"]]  # too large alone: alone


def test_a_message_of_ten_long_titles_stays_within_discords_content() -> None:
    markup = MarkdownMarkup()
    long = [("_Title_ " * 60, f"https://x.test/{'a' * 300}/{n}", f" ({n} of 10)") for n in range(1, 11)]
    text = captions(long, markup, i18n.get("en"))
    assert len(text) <= markup.caption_limit
    assert [re.sub(r".* \((\d+) of 10\)\*\* .*", r"\1", line) for line in plain(text).splitlines()] == [
        str(n) for n in range(1, 11)]  # a line per file, each part suffix kept whole
    assert captions([("A", "https://x.test/a", "")], markup, i18n.get("en")) == "**A** <https://x.test/a>"
