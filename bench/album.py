"""Album benchmark: a feed of 12 three-minute tracks, ours end to end against bare yt-dlp on the same feed.

    python bench/album.py [--runs 5] [--tracks 12] [--minutes 3] [--no-telegram]

Generates the tracks with ffmpeg and serves them and an RSS feed of them on 127.0.0.1 (a feed
of its own each run: fresh links, nothing cached), starts the workers as `python -m bots up` does
(one `python -m tasks worker -Q <queue>` per queue, the threads pool, concurrency from settings:
download 4, conversion one per core, cleanup 1) under a key prefix of its own, warms both sides
once, then times them in rounds (each once per round: a shared machine's load falls on all alike),
median of the rounds, wall clock and CPU seconds (and, run by run, how many cores the rest of a
shared machine kept busy meanwhile: ours wants both cores, bare yt-dlp one):
- bare `yt-dlp -x --audio-format mp3 --audio-quality 192K FEED`: the same CBR 192k encode as ours
  (MP3_BITRATE's default), the baseline of the ratios; and, for the record, bare yt-dlp with its own
  default (`-x --audio-format mp3`: VBR quality 5, about 130 kbit/s, a cheaper encode);
- `python -m tasks convert FEED` through the queue and the workers to the album's folder;
- the real Telegram bot (`python -m bots telegram`) against the fake Bot API from the tests: the
  feed's link sent in a private chat to the last of its 12 audios received (ALBUM_CONFIRM=0: no
  "Start" to press).
Target: ours <= 0.7 x bare yt-dlp. Needs Redis on REDIS_URL and ffmpeg. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import html
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.settings import get_settings  # noqa: E402
from tests.conftest import start_worker, stop_process  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.media import MediaServer, make_long  # noqa: E402

TOKEN = "123456:ALBUM-token-abcdefghijklmnopqrstuvwxyz"
TARGET = 0.7


def make_tracks(folder: Path, count: int, minutes: float) -> list[Path]:
    """`count` sources of `minutes` each, titled apart (one encode, then stream copies)."""
    source = make_long(folder, minutes=minutes)
    tracks = []
    for number in range(1, count + 1):
        track = folder / f"track-{number:02d}.webm"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
                        "-metadata", f"title=Track {number}", str(track)], check=True)
        tracks.append(track)
    return tracks


def new_feed(media: MediaServer, folder: Path, tracks: list[Path]) -> str:
    """A podcast feed of the tracks under links no run has used; its URL."""
    run = uuid.uuid4().hex[:8]
    items = "".join(f"<item><title>Track {n}</title><guid>{run}-{n}</guid><enclosure url=\""
                    f"{html.escape(media.media_url(t.name))}?run={run}\" type=\"audio/webm\" length=\"1000\"/></item>"
                    for n, t in enumerate(tracks, 1))
    name = f"album-{run}.xml"
    (folder / name).write_text('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Album'
                               f'</title><link>{media.base_url}/</link><description>bench</description>{items}'
                               "</channel></rss>\n", encoding="utf-8")
    return f"{media.media_url(name)}?type=application/rss%2Bxml"


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of this process's finished children and of the processes `pids` with theirs
    (a worker's ffmpeg children are counted in the worker once it waited for them)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in
                                                                Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """This process's CPU time: the media server and the fake Bot API serving the contenders."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


@dataclass
class Contender:
    label: str
    run: Callable[[], None]
    pids: list[int]  # long-lived processes whose CPU time is its (workers, the bot)
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)  # cores that the rest of the machine kept busy meanwhile

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def rounds(contenders: list[Contender], runs: int) -> None:
    """Each contender once per round, round after round: the load of a shared machine falls on all alike."""
    for _ in range(runs):
        for c in contenders:
            before, busy, own, started = cpu_seconds(c.pids), busy_seconds(), own_seconds(), time.perf_counter()
            c.run()
            wall = time.perf_counter() - started
            c.times.append(wall)
            c.cpu.append(cpu_seconds(c.pids) - before)
            c.others.append(max(0.0, busy_seconds() - busy - c.cpu[-1] - (own_seconds() - own)) / wall)
    for c in contenders:
        print(f"{c.label:<40} median {c.median:6.2f} s  (runs {', '.join(f'{t:.2f}' for t in c.times)}); "
              f"CPU median {statistics.median(c.cpu):6.2f} s; other processes kept "
              f"{', '.join(f'{o:.1f}' for o in c.others)} cores busy")
    plain = contenders[0]
    for c in contenders[2:]:  # ours against the same encode
        paired = ", ".join(f"{t / p:.2f}" for t, p in zip(c.times, plain.times, strict=True))
        print(f"ratio {c.label} / bare yt-dlp: {c.median / plain.median:.2f} (target <= {TARGET}; "
              f"round by round {paired})")


def bare(feed: Callable[[], str], out: Path, count: int, quality: str | None = "192K") -> None:
    target = out / uuid.uuid4().hex
    subprocess.run(["yt-dlp", "-q", "--no-warnings", "-x", "--audio-format", "mp3",
                    *(["--audio-quality", quality] if quality else []), "-o", str(target / "%(title)s.%(ext)s"),
                    feed()], check=True)
    assert len(list(target.rglob("*.mp3"))) == count, "bare yt-dlp: not every track came out"


def cli(feed: Callable[[], str], out: Path, env: dict[str, str], count: int) -> None:
    target = out / uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-m", "tasks", "convert", feed(), "--out", str(target)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == count, done.stderr


class Telegram:
    """The bot against the fake Bot API; each run a chat of its own."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.fake = FakeTelegram(flood_limit=None).__enter__()
        bot_env = {**env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": self.fake.api_url,
                   "TELEGRAM_FILE_URL": self.fake.file_url}
        self.bot = subprocess.Popen([sys.executable, "-m", "bots", "telegram"], cwd=ROOT, env=bot_env,
                                    stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.fake.wait_for(lambda f: f.calls("getUpdates"), timeout=60)
        self.chats = iter(range(40_000, 50_000))

    def album(self, feed: Callable[[], str], count: int) -> None:
        chat = next(self.chats)
        self.fake.push_message(chat, chat, feed())
        self.fake.wait_for(lambda f: len([m for m in f.sent_media("sendAudio") if int(m["chat_id"]) == chat]) >= count,
                           timeout=1800, what=f"{count} audios")

    def close(self) -> None:
        stop_process(self.bot)
        self.fake.__exit__(None, None, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--minutes", type=float, default=3, help="length of each track")
    parser.add_argument("--no-telegram", action="store_false", dest="telegram", help="leave out the bot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ytmp3-album-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        tracks = make_tracks(work / "media", args.tracks, args.minutes)
        with MediaServer(work / "media") as media:
            env = {**os.environ, "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                   "KEY_PREFIX": f"ytmp3album:{uuid.uuid4().hex[:6]}:", "TEMP_DIR": str(work / "tmp"),
                   "STORAGE_DIR": str(work / "out"), "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}",
                   "PYTHONPATH": str(ROOT), "ALBUM_CONFIRM": "0", "USER_JOBS_PER_HOUR": "100000",
                   "MAX_DURATION": "3600"}
            settings = get_settings()
            concurrency = {"download": settings.download_concurrency,
                           "conversion": settings.conversion_concurrency, "cleanup": settings.cleanup_concurrency}
            workers = [start_worker(env, work / f"{queue}.log", name=queue, queues=queue, concurrency=n, pool="threads")
                       for queue, n in concurrency.items()]
            telegram = Telegram(env, work / "bot.log") if args.telegram else None
            try:
                def feed() -> str:
                    return new_feed(media, work / "media", tracks)

                print(f"album: {args.tracks} tracks of {args.minutes:g} min, {tracks[0].stat().st_size / 1e6:.1f} MB "
                      f"each; {os.cpu_count()} cores; workers {concurrency}; {args.runs} runs each", flush=True)
                bare(feed, work / "bare", args.tracks)  # warm-up: yt-dlp's imports, the page cache, the workers
                cli(feed, work / "cli", env, args.tracks)
                if telegram:
                    telegram.album(feed, args.tracks)
                pids = [w.pid for w in workers]
                contenders = [Contender("bare yt-dlp -x mp3 192K (one by one)",
                                        lambda: bare(feed, work / "bare", args.tracks), []),
                              Contender("bare yt-dlp -x mp3 (its default, VBR 5)",
                                        lambda: bare(feed, work / "bare", args.tracks, None), []),
                              Contender("python -m tasks convert", lambda: cli(feed, work / "cli", env, args.tracks),
                                        pids)]
                if telegram:
                    contenders.append(Contender("telegram: link -> last audio",
                                                lambda: telegram.album(feed, args.tracks), [*pids, telegram.bot.pid]))
                load = os.getloadavg()[0]
                rounds(contenders, args.runs)
                print(f"load average (1 min): {load:.1f} before the runs, {os.getloadavg()[0]:.1f} after")
            finally:
                if telegram:
                    telegram.close()
                for worker in workers:
                    stop_process(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
