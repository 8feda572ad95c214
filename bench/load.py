"""Load benchmark: a busy evening for the Telegram bot.

    python bench/load.py [--chats 40] [--groups 8] [--minutes 2] [--flood 40] [--requests 1000] [--big-minutes 19]

The real bot process (`python -m bots telegram`) and one real worker (concurrency 2,
all queues) against the fake Bot API from the tests, which enforces Telegram's
limits: per chat (2 calls in any second: about one a second, a short burst allowed),
per group (20 a minute) and across the bot (30 a second). N chats (G of them groups,
`/mp3 <link>`) send distinct links to one generated source at once, while one more
chat is flooded: every call into it is answered 429 with retry_after 5 for --flood
seconds. Then 1,000 requests from new chats (cached repeats and dead links), and one
45 MB MP3 (a --big-minutes source at 320 kbit/s) whose upload is watched for the
event loop's longest block (the bot's own watcher, in its liveness record).

Prints: delivered/expected, duplicates, the makespan and its ratio to bare
`yt-dlp -x --audio-format mp3` run 2-wide on the same links, first-reply p50/p95,
the 429s the limits drew (not the forced ones), the longest gap in calls to the other
chats while work was outstanding, the flooded chat's delivery after its flood lifted,
the bot's RSS before, after the batch and after the 1,000 requests, and the longest
loop block during the big upload. Needs Redis on REDIS_URL and ffmpeg. Asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import bare_ytdlp  # noqa: E402  (bench/bench.py: this script's folder comes first on the path)
from common.keys import Keys  # noqa: E402
from common.stats import BotInfo, percentile  # noqa: E402
from tests.conftest import start_worker, stop_process  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.media import MediaServer, make_long  # noqa: E402

TOKEN = "123456:LOAD-token-abcdefghijklmnopqrstuvwxyz"
PRIVATE, GROUP, FLOODED = 70_000, -80_000, 90_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def audios(fake: FakeTelegram, chat: int) -> list[dict]:
    return [m for m in fake.sent_media("sendAudio") if int(m["chat_id"]) == chat]


def answered(fake: FakeTelegram) -> set[int]:
    """Chats that got an MP3, or a status that ended (❌ or ⏸)."""
    done = {int(m["chat_id"]) for m in fake.sent_media("sendAudio")}
    for call in fake.calls():
        text = str(call.params.get("text", "")) if call.status == 200 else ""
        if "❌" in text or "⏸" in text:
            done.add(int(call.chat_id))
    return done


def bare_makespan(links: list[str], out: Path) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda link: bare_ytdlp(link, out), links))
    return time.monotonic() - started


class Bot:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bots", "telegram"], cwd=ROOT, env=env,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.client = redis.Redis.from_url(env["REDIS_URL"])
        self.keys = Keys(env["KEY_PREFIX"])

    def liveness(self) -> BotInfo | None:
        raw = self.client.get(self.keys.bot("telegram"))
        return BotInfo.from_json(raw) if raw else None

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def ready_at(self) -> dict[int, float]:
        """Chat -> when its job became ready (time.time(), from the job's own events)."""
        found = {}
        for key in self.client.scan_iter(f"{self.keys.prefix}job:*:origins"):
            job_id = key.decode().removeprefix(f"{self.keys.prefix}job:").removesuffix(":origins")
            chats = [int(json.loads(raw)["id"].split(":")[1]) for raw in self.client.lrange(key, 0, -1)]
            for _, data in self.client.xrange(self.keys.job_events(job_id)):
                change = json.loads(data[b"data"])
                if change.get("state") == "ready":
                    found.update(dict.fromkeys(chats, float(change["updated"])))
        return found


def batch(fake: FakeTelegram, bot: Bot, links: list[str], groups: int, flood: float) -> dict[str, float]:
    """N chats at once and one flooded chat: what the issue's targets are about."""
    chats = [GROUP - n if n < groups else PRIVATE + n for n in range(len(links))]
    fake.clear()
    fake.flood(FLOODED, flood, retry_after=5)
    pushed: dict[int, float] = {}
    flood_link = f"{links[0]}&flooded=1"
    pushed[FLOODED] = time.monotonic()
    fake.push_message(FLOODED, FLOODED, flood_link)
    for chat, link in zip(chats, links, strict=True):
        pushed[chat] = time.monotonic()
        if chat < 0:
            fake.push_message(chat, 1000 + abs(chat), f"/mp3 {link}", chat_type="group")
        else:
            fake.push_message(chat, chat, link)
    started = min(pushed.values())
    fake.wait_for(lambda f: all(audios(f, c) for c in chats), timeout=1800, what="every chat's MP3")
    done = time.monotonic()
    fake.wait_for(lambda f: audios(f, FLOODED), timeout=flood + 600, what="the flooded chat's MP3")
    firsts = []
    for chat in chats:
        calls = [c for c in fake.calls(chat_id=chat) if c.method in ("sendMessage", "sendAudio") and c.status == 200]
        firsts.append(calls[0].time - pushed[chat])
    arrivals = sorted(next(c.time for c in fake.calls("sendAudio", chat) if c.status == 200) for chat in chats)
    busy_until = arrivals[-3]  # while at least three chats still waited for their MP3
    others = sorted(c.time for c in fake.calls() if c.chat_id in set(chats) and started <= c.time <= done)
    gaps = [b - a for a, b in itertools.pairwise([started, *others])]
    busy_gaps = [b - a for a, b in itertools.pairwise([started, *(t for t in others if t <= busy_until)])]
    flooded_audio = next(c.time for c in fake.calls("sendAudio", FLOODED) if c.status == 200)
    offset = time.time() - time.monotonic()  # the fake logs monotonic times, jobs wall-clock ones
    ready = bot.ready_at()
    waits = [next(c.time for c in fake.calls("sendAudio", chat) if c.status == 200) + offset - ready[chat]
             for chat in chats if chat in ready]
    return {
        "expected": len(chats),
        "delivered": sum(1 for c in chats if audios(fake, c)),
        "duplicates": sum(max(0, len(audios(fake, c)) - 1) for c in chats) + max(0, len(audios(fake, FLOODED)) - 1),
        "makespan": done - started,
        "p50": percentile(firsts, 50) or 0.0,
        "p95": percentile(firsts, 95) or 0.0,
        "unforced_429s": fake.flood_429s,
        "by_limit": dict(fake.limit_429s),
        "forced_429s": fake.forced_429s,
        "longest_gap": max(gaps) if gaps else 0.0,
        "ready_to_mp3": max(waits) if waits else float("nan"),
        "ready_to_mp3_p50": percentile(waits, 50) or float("nan"),
        "longest_busy_gap": max(busy_gaps) if busy_gaps else 0.0,
        "flooded_after_lift": flooded_audio - (pushed[FLOODED] + flood),
    }


def thousand(fake: FakeTelegram, links: list[str], dead: str, count: int) -> float:
    fake.clear()
    """`count` requests from new chats, about 25 a second: cached repeats, and every third a dead link."""
    chats = []
    started = time.monotonic()
    for n in range(count):
        chat = PRIVATE + 100_000 + n
        chats.append(chat)
        link = f"{dead}?n={uuid.uuid4().hex[:8]}" if n % 3 == 0 else links[n % len(links)]
        fake.push_message(chat, chat, link)
        time.sleep(max(0.0, started + (n + 1) / 25 - time.monotonic()))
    waiting = set(chats)
    while waiting and time.monotonic() - started < 1800:
        time.sleep(2)  # each look holds the fake's lock a while
        waiting -= answered(fake)
    if waiting:
        print(f"{len(waiting)} of the {count} requests were never answered")
    return time.monotonic() - started


def big_upload(fake: FakeTelegram, bot: Bot, link: str) -> tuple[float, float]:
    """A 45 MB MP3: its size, and the longest event-loop block the bot saw from the link to a few seconds
    after the upload (each liveness record holds the longest block since the one before)."""
    chat = PRIVATE + 500_000
    fake.push_message(chat, chat, "/bitrate 320")
    fake.wait_for(lambda f: f.messages(chat), timeout=30)
    fake.push_message(chat, chat, link)
    longest, after = 0.0, None
    while after is None or time.monotonic() < after:
        alive = bot.liveness()
        longest = max(longest, alive.block if alive else 0.0)
        if after is None and audios(fake, chat):
            after = time.monotonic() + 6  # the record that covers the upload's last seconds
        time.sleep(0.5)
    return len(audios(fake, chat)[0]["data"]) / 1e6, longest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=40)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=2, help="length of the batch's source")
    parser.add_argument("--flood", type=float, default=40, help="seconds the flooded chat is answered 429")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--big-minutes", type=float, default=19, help="source of the 45 MB MP3 (320 kbit/s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ytmp3-load-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        source = make_long(work / "media", minutes=args.minutes)
        big = make_long(work / "media", minutes=args.big_minutes)
        with MediaServer(work / "media") as media:
            links = [f"{media.media_url(source.name)}?n={uuid.uuid4().hex[:8]}" for _ in range(args.chats)]
            env = {**os.environ, "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                   "KEY_PREFIX": f"ytmp3load:{uuid.uuid4().hex[:6]}:", "TEMP_DIR": str(work / "tmp"),
                   "STORAGE_DIR": str(work / "out"), "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}",
                   "PYTHONPATH": str(ROOT), "USER_JOBS_PER_HOUR": "100000", "QUEUE_CAP": "100000",
                   "MAX_DURATION": "3600"}
            worker = start_worker(env, work / "worker.log", name="load", concurrency=2)
            try:
                bare_ytdlp(links[0], work)  # warm-up: yt-dlp's imports, the page cache
                bare = bare_makespan(links, work / "bare")
                print(f"source: {args.minutes:g} min, {source.stat().st_size / 1e6:.1f} MB; {args.chats} chats "
                      f"({args.groups} groups) + 1 flooded for {args.flood:g} s")
                print(f"bare yt-dlp 2-wide: {bare:.1f} s for {len(links)} links")
                with FakeTelegram(flood_limit=2, retry_after=1, group_limit=20, global_limit=30) as fake:
                    bot_env = {**env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
                               "TELEGRAM_FILE_URL": fake.file_url}
                    bot = Bot(bot_env, work / "bot.log")
                    try:
                        fake.wait_for(lambda f: f.calls("getUpdates"), timeout=60)
                        time.sleep(3)
                        before = bot.rss()
                        figures = batch(fake, bot, links, args.groups, args.flood)
                        after = bot.rss()
                        report(figures, bare, before, after)
                        took = thousand(fake, links, media.url("/status/404/gone.webm"), args.requests)
                        time.sleep(10)  # housekeeping prunes what the answered requests left
                        print(f"{args.requests} more requests answered in {took:.0f} s, drawing {fake.flood_429s} "
                              f"429s from the limits; RSS after them {bot.rss():.1f} MB (growth over them "
                              f"{bot.rss() - after:+.1f} MB, target <= 20)")
                        size, block = big_upload(fake, bot, media.media_url(big.name))
                        print(f"{size:.1f} MB upload: the event loop's longest block {block * 1000:.0f} ms")
                    finally:
                        stop_process(bot.proc)
            finally:
                stop_process(worker)
    return 0


def report(f: dict, bare: float, before: float, after: float) -> None:
    print(f"delivered {f['delivered']}/{f['expected']}, duplicates {f['duplicates']}")
    print(f"makespan {f['makespan']:.1f} s = {f['makespan'] / bare:.2f} x bare yt-dlp 2-wide (target <= 0.8)")
    print(f"first reply p50 {f['p50']:.2f} s, p95 {f['p95']:.2f} s (target p95 <= 1.5)")
    print(f"429s from the limits (not the flood): {f['unforced_429s']} {f['by_limit'] or ''} (target 0); "
          f"forced on the flooded chat: {f['forced_429s']}")
    print(f"longest gap in calls to the other chats while work was outstanding: {f['longest_busy_gap']:.2f} s "
          f"while 3 or more waited for their MP3, {f['longest_gap']:.2f} s up to the last (target <= 1)")
    print(f"from a job's ready event to its MP3 reaching the chat: median {f['ready_to_mp3_p50']:.2f} s, "
          f"longest {f['ready_to_mp3']:.2f} s")
    print(f"flooded chat's MP3: {f['flooded_after_lift']:.1f} s after its flood lifted")
    print(f"bot RSS: {before:.1f} MB before, {after:.1f} MB after the batch")


if __name__ == "__main__":
    sys.exit(main())
