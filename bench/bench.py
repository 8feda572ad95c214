"""Benchmark: our pipeline against bare yt-dlp on the same local 10-minute source.

    python bench/bench.py [--runs 5] [--minutes 10] [--telegram]

Serves a generated source on 127.0.0.1, starts workers (warm before timing) under a
key prefix of its own, then times, several runs each, with the median printed:
- `python -m tasks convert URL` end to end, against bare
  `yt-dlp -x --audio-format mp3 --audio-quality 192K URL` (target ratio <= 1.10);
- with --telegram: the Telegram bot against the fake Bot API from the tests: update
  to audio received (target <= 1.15 x bare yt-dlp), the cached repeat (target <= 0.5 s)
  and the first status reply (target <= 0.3 s).
Needs Redis on REDIS_URL (default 127.0.0.1:6379) and ffmpeg. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_worker, stop_process  # noqa: E402
from tests.media import MediaServer, make_long  # noqa: E402


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def median_of(label: str, runs: int, run: Callable[[], None]) -> float:
    times = [timed(run) for _ in range(runs)]
    median = statistics.median(times)
    print(f"{label:<34} median {median:7.3f} s   runs: {', '.join(f'{t:.3f}' for t in times)}")
    return median


def bare_ytdlp(url: str, out: Path) -> None:
    target = out / uuid.uuid4().hex
    subprocess.run(["yt-dlp", "-q", "--no-warnings", "-x", "--audio-format", "mp3", "--audio-quality", "192K",
                    "-o", str(target / "%(title)s.%(ext)s"), url], check=True)


def ours(url: str, out: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "tasks", "convert", f"{url}?n={uuid.uuid4().hex}", "--out",
                    str(out / uuid.uuid4().hex)], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def telegram_figures(env: dict[str, str], url: str, runs: int, bare: float) -> None:
    from tests.fake_telegram import FakeTelegram

    with FakeTelegram(flood_limit=None) as fake:
        bot_env = {**env, "TELEGRAM_TOKEN": "123456:BENCH-token-abcdefghijklmnopqrstuvwxyz",
                   "TELEGRAM_API_URL": fake.api_url, "TELEGRAM_FILE_URL": fake.file_url}
        bot = subprocess.Popen([sys.executable, "-m", "bots", "telegram"], cwd=ROOT, env=bot_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            fake.wait_for(lambda f: f.calls("getUpdates"), timeout=30)
            full, first_reply, cached = [], [], []
            for run in range(runs):
                chat, link = 50_000 + run, f"{url}?n={uuid.uuid4().hex}"
                started = time.monotonic()
                asked = fake.push_message(chat, 1000 + run, link)
                reply = fake.wait_for(lambda f, c=chat: [x for x in f.calls("sendMessage", c)], timeout=30)
                fake.wait_for(lambda f, c=chat: [m for m in f.sent_media() if int(m["chat_id"]) == c], timeout=600)
                full.append(time.monotonic() - started)
                first_reply.append(reply[0].time - started)
                repeat_chat = 60_000 + run
                started = time.monotonic()
                fake.push_message(repeat_chat, 2000 + run, link)
                fake.wait_for(lambda f, c=repeat_chat: [m for m in f.sent_media() if int(m["chat_id"]) == c],
                              timeout=30)
                cached.append(time.monotonic() - started)
                assert asked
            for label, values in (("telegram: update -> audio", full), ("telegram: first status reply", first_reply),
                                  ("telegram: cached repeat", cached)):
                print(f"{label:<34} median {statistics.median(values):7.3f} s   "
                      f"runs: {', '.join(f'{v:.3f}' for v in values)}")
            print(f"ratio telegram / bare yt-dlp: {statistics.median(full) / bare:.3f} (target <= 1.15)")
        finally:
            stop_process(bot)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--telegram", action="store_true", help="also time the Telegram bot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ytmp3-bench-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        source = make_long(work / "media", minutes=args.minutes)
        with MediaServer(work / "media") as media:
            url = media.media_url(source.name)
            env = {**os.environ, "KEY_PREFIX": f"ytmp3bench:{uuid.uuid4().hex[:6]}:",
                   "TEMP_DIR": str(work / "tmp"), "STORAGE_DIR": str(work / "out"),
                   "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}", "PYTHONPATH": str(ROOT)}
            worker = start_worker(env, work / "worker.log", name="bench", concurrency=2)
            try:
                print(f"source: {args.minutes:g} min, {source.stat().st_size / 1e6:.1f} MB; {args.runs} runs each")
                ours(url, work, env)  # warm-up: imports and caches of both sides
                bare_ytdlp(url, work)
                bare = median_of("bare yt-dlp -x mp3 192K", args.runs, lambda: bare_ytdlp(url, work))
                mine = median_of("python -m tasks convert", args.runs, lambda: ours(url, work, env))
                print(f"ratio ours / bare yt-dlp: {mine / bare:.3f} (target <= 1.10)")
                if args.telegram:
                    telegram_figures(env, url, args.runs, bare)
            finally:
                stop_process(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
