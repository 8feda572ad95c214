"""Footprint: the memory of `python -m bots up` idle, and what each concurrent download adds.

    python bench/footprint.py [--downloads 4] [--rate 40000]

Starts `python -m bots up` with default settings (no bot token; Redis from REDIS_URL, default
127.0.0.1:6379, under a key prefix of its own), waits until every worker is ready and the
stack's memory has settled, and sums PSS (proportional set size: a page shared by n processes
counts 1/n in each) over the launcher and every process below it, from /proc/PID/smaps_rollup.
Then it starts downloads of a slow local source one by one (served at --rate bytes a second, so
they stay under way) and prints the PSS with 1..N running and the cost of each extra download.
Prints figures; asserts nothing (target: idle <= 200 MB, each extra download <= 15 MB).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.media import MediaServer, make_long  # noqa: E402

MB = 1024 * 1024


def tree(pid: int) -> list[int]:
    """pid and every living process below it (children in sessions of their own included), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return sorted(found)


def pss(pid: int) -> int:
    """The process's proportional set size in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if "-Q" in words:
        return f"worker {words[words.index('-Q') + 1]}" + (" (pool)" if _is_pool(pid) else "")
    return " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words[:4]))


def _is_pool(pid: int) -> bool:
    """A prefork pool process has the same command line as its parent worker."""
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return Path(f"/proc/{parent}/cmdline").read_bytes() == Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stack_pss(root: int) -> tuple[int, list[tuple[int, str, int]]]:
    rows = [(pid, label(pid), pss(pid)) for pid in tree(root)]
    return sum(r[2] for r in rows), rows


def settled(root: int, quiet: float = 3.0, tolerance: int = MB, timeout: float = 120.0) -> int:
    """The stack's PSS once it has moved by less than `tolerance` for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = stack_pss(root)[0], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = stack_pss(root)[0]
        if abs(now - last) > tolerance:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return last


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def show(title: str, total: int, rows: list[tuple[int, str, int]]) -> None:
    print(f"{title}: {total / MB:.1f} MB PSS in {len(rows)} processes")
    for pid, name, size in rows:
        print(f"    {size / MB:7.1f} MB  {pid:>7}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--downloads", type=int, default=4, help="concurrent downloads (default 4, the default "
                                                                 "DOWNLOAD_CONCURRENCY)")
    parser.add_argument("--rate", type=int, default=40_000, help="bytes a second each download is served at")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ytmp3-footprint-") as tmp:
        work = Path(tmp)
        source = make_long(work / "media", minutes=10)
        with MediaServer(work / "media") as media:
            env = {k: v for k, v in os.environ.items()
                   if k not in ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "METRICS_PORT", "SETTINGS_FILE")}
            env.update({"REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                        "KEY_PREFIX": f"ytmp3footprint:{uuid.uuid4().hex[:6]}:",
                        "TEMP_DIR": str(work / "tmp"), "STORAGE_DIR": str(work / "out"),
                        "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}", "PYTHONUNBUFFERED": "1"})
            os.environ.update(env)  # this process submits the jobs, under the same prefix
            log = work / "up.log"
            with log.open("wb") as handle:
                up = subprocess.Popen([sys.executable, "-m", "bots", "up"], cwd=ROOT, env=env, stdout=handle,
                                      stderr=subprocess.STDOUT, start_new_session=True)
            try:
                return measure(up, log, media, source.name, args.downloads, args.rate)
            finally:
                up.send_signal(signal.SIGTERM)
                try:
                    up.wait(90)
                except subprocess.TimeoutExpired:
                    os.killpg(up.pid, signal.SIGKILL)
                    up.wait()


def measure(up: subprocess.Popen[bytes], log: Path, media: MediaServer, name: str, downloads: int, rate: int) -> int:
    from common import context
    from common.jobs import State
    from tasks import pipeline

    queues = ("download", "conversion", "cleanup")
    wait_for(lambda: all(re.search(rf"^\[{q}\] .*doctor: ", log.read_text(), re.M) for q in queues)
             or up.poll() is not None,
             timeout=120, what="every worker ready and its doctor summary logged")
    if up.poll() is not None:
        raise SystemExit(f"bots up exited:\n{log.read_text()[-3000:]}")
    idle = settled(up.pid)
    show("idle", *stack_pss(up.pid))
    store = context.store()
    jobs: list[str] = []
    running: list[int] = []
    try:
        for count in range(1, downloads + 1):
            job_id, _ = pipeline.submit(media.url(f"/slow/{rate}/{name}", n=uuid.uuid4().hex))
            jobs.append(job_id)
            wait_for(lambda: all((j := store.get(i)) and j.state == State.DOWNLOADING and j.percent > 10.5
                                 for i in jobs), timeout=60, what=f"{count} downloads under way")
            running.append(settled(up.pid, quiet=2.0))
            print(f"{count} download{'s' if count > 1 else ''} running: {running[-1] / MB:.1f} MB PSS")
        show(f"{downloads} downloads", *stack_pss(up.pid))
    finally:
        for job_id in jobs:
            pipeline.cancel(job_id)
    print(f"idle PSS: {idle / MB:.1f} MB (target <= 200)")
    print(f"first download: +{(running[0] - idle) / MB:.1f} MB")
    if downloads > 1:
        extra = (running[-1] - running[0]) / (downloads - 1)
        print(f"each extra concurrent download: +{extra / MB:.1f} MB (target <= 15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
