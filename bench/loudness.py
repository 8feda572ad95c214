"""Benchmark: what loudness normalisation and ReplayGain cost the conversion of the 10-minute source.

    python bench/loudness.py [--runs 5] [--minutes 10]

1. ffmpeg alone, CPU seconds (user + sys, steadier than the clock on a shared machine) and wall clock
   of the commands the conversion runs (the filters from tasks/loudness.py):
   - "before": the plain encode, as before ReplayGain existed;
   - "off": the encode measuring ReplayGain on the way (LOUDNESS=off);
   - "-14": the measuring pass, then the encode at one gain (LOUDNESS=-14).
2. The conversion stage through a real worker (from the job's "converting" event to its "cleaning"
   one), LOUDNESS off against -14, the source served on 127.0.0.1 (target: -14 adds at most 35%).
Needs Redis on REDIS_URL (default 127.0.0.1:6379) and ffmpeg. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
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

from tasks import loudness  # noqa: E402
from tests.conftest import start_worker, stop_process  # noqa: E402
from tests.media import MediaServer, make_long  # noqa: E402

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "level+info", "-y"]
ENCODE = ["-map", "0:a:0", "-vn", "-map_metadata", "-1"]
MP3 = ["-c:a", "libmp3lame", "-b:a", "192k"]


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the processes it ran)."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - started, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ffmpeg(*args: str) -> None:
    subprocess.run([*FFMPEG, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ffmpeg_figures(source: Path, out: Path, runs: int) -> None:
    target = out / "out.mp3"

    def normalised() -> None:
        ffmpeg("-i", str(source), *loudness.MEASURE)
        ffmpeg("-i", str(source), *ENCODE, "-af", "volume=10.7dB", *MP3, str(target))

    cases: dict[str, Callable[[], None]] = {
        "before (no ReplayGain)": lambda: ffmpeg("-i", str(source), *ENCODE, *MP3, str(target)),
        "off (ReplayGain measured)": lambda: ffmpeg("-i", str(source), *ENCODE, "-af",
                                                    loudness.MEASURE_WHILE_ENCODING, *MP3, str(target)),
        "-14 (measure, then encode)": normalised,
    }
    print("ffmpeg alone:")
    cpu: dict[str, float] = {}
    for label, run in cases.items():
        figures = [timed(run) for _ in range(runs)]
        cpu[label] = statistics.median(c for _, c in figures)
        wall = statistics.median(w for w, _ in figures)
        print(f"  {label:<28} CPU median {cpu[label]:6.2f} s   wall median {wall:6.2f} s   "
              f"CPU runs: {', '.join(f'{c:.2f}' for _, c in figures)}")
    before, off, on = cpu.values()
    print(f"  ReplayGain adds {100 * (off / before - 1):.0f}% CPU to the encode; -14 adds {100 * (on / off - 1):.0f}% "
          f"to off")


def stage_seconds(job_id: str) -> float:
    """From the job's entering "converting" to its entering "cleaning", by the events' own times."""
    from common import context

    times = {change["state"]: change["updated"] for _, change in context.store().history(job_id)
             if "state" in change and "updated" in change}
    return times["cleaning"] - times["converting"]


def pipeline_figures(url: str, runs: int) -> None:
    from common import context
    from tasks import pipeline
    from tests.conftest import deliver, origin, wait_job

    print("conversion stage through a worker:")
    medians = {}
    for label, level in (("LOUDNESS=off", None), ("LOUDNESS=-14", -14.0)):
        seconds = []
        for _ in range(runs + 1):  # the first is a warm-up
            job = wait_job(pipeline.submit(f"{url}?n={uuid.uuid4().hex}", loudness=level, origin=origin())[0], 300)
            assert job.state == "ready", job.error_text
            seconds.append(stage_seconds(job.id))
            deliver(job.id)
        medians[label] = statistics.median(seconds[1:])
        print(f"  {label:<28} median {medians[label]:6.2f} s   runs: {', '.join(f'{s:.2f}' for s in seconds[1:])}")
    off, on = medians.values()
    print(f"  -14 adds {100 * (on / off - 1):.0f}% to the conversion (target <= 35%)")
    context.reset()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ytmp3-bench-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        source = make_long(work / "media", minutes=args.minutes)
        print(f"source: {args.minutes:g} min ({source.name}, Opus mono 48 kHz); {args.runs} runs each")
        ffmpeg_figures(source, work, args.runs)
        with MediaServer(work / "media") as media:
            env = {"KEY_PREFIX": f"ytmp3bench:{uuid.uuid4().hex[:6]}:", "TEMP_DIR": str(work / "tmp"),
                   "STORAGE_DIR": str(work / "out"), "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}",
                   "PYTHONPATH": str(ROOT)}
            os.environ.update(env)
            worker = start_worker({**os.environ, **env}, work / "worker.log", name="bench", concurrency=1)
            try:
                pipeline_figures(media.media_url(source.name), args.runs)
            finally:
                stop_process(worker)
                _forget(env["KEY_PREFIX"])
    return 0


def _forget(prefix: str) -> None:
    """The run's keys out of Redis (its jobs, queues and events)."""
    from common import context

    client = context.redis_client()
    for key in list(client.scan_iter(f"{prefix}*")):
        client.delete(key)


if __name__ == "__main__":
    sys.exit(main())
