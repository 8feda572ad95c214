"""`python -m tasks worker|convert|monitor|watch|task|purge|restart|dead|metrics|doctor`: workers and operations."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tasks", description="ytmp3 workers, jobs and operations")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("-Q", "--queues", default="download,conversion,cleanup")
    worker.add_argument("-c", "--concurrency", type=int, help="processes (default: from settings)")
    worker.add_argument("-n", "--hostname", help="worker name, e.g. download@%%h")
    worker.add_argument("-l", "--loglevel", default="INFO")
    worker.add_argument("-P", "--pool", choices=("threads", "prefork"),
                        help="threads (the default: one process, a thread per task) or prefork (a process per task)")

    convert = sub.add_parser("convert", help="convert one link through the real queue")
    convert.add_argument("url")
    convert.add_argument("--out", default=".", help="folder for the MP3 (default: here); an album or a chapter "
                                                    "split goes into a folder of its own inside it")
    convert.add_argument("--bitrate", type=int, help="kbit/s (default: from settings)")
    convert.add_argument("--limit", type=int, help="largest file in bytes; bigger ones are split")
    convert.add_argument("--range", dest="clip", metavar="RANGE",
                         help="only this part: 1:30-4:05, 90-245, -4:05 or 1:30- (hours too: 1:02:03)")
    convert.add_argument("--loudness", metavar="LUFS",
                         help="normalise to this loudness, e.g. -14, or off (default: LOUDNESS)")
    convert.add_argument("--split-chapters", action="store_true", dest="split",
                         help="one MP3 per chapter, when the video has chapters")
    convert.add_argument("--tracks", metavar="FIRST-LAST",
                         help="of a playlist or feed, only these entries, e.g. 2-5 (default: all, up to PLAYLIST_MAX)")

    monitor = sub.add_parser("monitor", help="queues, workers and what they run, outcomes, dead letters, disk, cache")
    monitor.add_argument("--json", action="store_true", help="the figures as JSON")

    watch = sub.add_parser("watch", help="the monitor, redrawn in place every second until Ctrl-C")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    watch.add_argument("--iterations", type=int, help="stop after this many redraws")
    watch.add_argument("--once", action="store_const", const=1, dest="iterations", help="draw once and stop")

    task = sub.add_parser("task", help="one job's record and history")
    task.add_argument("job_id")

    purge = sub.add_parser("purge", help="empty the queues (asks first) and cancel their jobs")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.add_argument("--queue", action="append", dest="queues", metavar="Q", help="only this queue (repeatable)")

    restart = sub.add_parser("restart", help="graceful restart of the workers through remote control")
    restart.add_argument("-d", "--destination", action="append", metavar="HOST",
                         help="only this worker, e.g. download@host (repeatable)")
    restart.add_argument("--wait", action="store_true", help="wait until the workers are back")
    restart.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")

    dead = sub.add_parser("dead", help="the dead-letter list; --retry ID runs a failed job again")
    dead.add_argument("-n", type=int, default=20, dest="count", help="how many, newest first (default 20)")
    dead.add_argument("--retry", metavar="ID", help="run this failed job's link again as a new job")

    metrics = sub.add_parser("metrics", help="serve Prometheus metrics on /metrics (off unless a port is set)")
    metrics.add_argument("--port", type=int, help="port to listen on (default: METRICS_PORT)")
    metrics.add_argument("--host", help="address to listen on (default: METRICS_HOST, 127.0.0.1)")

    doctor = sub.add_parser("doctor", help="what a YouTube deployment has and lacks; non-zero exit when "
                                           "something a download needs is missing")
    doctor.add_argument("--json", action="store_true", help="the report as JSON")
    doctor.add_argument("--no-workers", action="store_false", dest="workers",
                        help="leave out the workers (a launcher checks before it starts them)")
    doctor.add_argument("--timeout", type=float, default=3.0, help="seconds each network check may take (default 3)")
    doctor.add_argument("--lang", default="en", help="the report (but --json) in this language, as an admin's "
                                                     "chat shows it (default English)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":  # its own Redis check, with short timeouts
        from tasks import doctor

        return doctor.main(args.json, args.workers, args.timeout, args.lang)
    import redis

    from common.settings import get_settings
    from tasks import cli, exporter, monitor

    commands = {
        "worker": lambda: cli.worker(args.queues, args.concurrency, args.hostname, args.loglevel, args.pool),
        "convert": lambda: cli.convert(args.url, args.out, args.bitrate, args.limit, args.clip, args.loudness,
                                       args.split, args.tracks),
        "monitor": lambda: monitor.monitor(args.json),
        "watch": lambda: monitor.watch(args.interval, args.iterations),
        "task": lambda: monitor.task(args.job_id),
        "purge": lambda: monitor.purge(args.yes, args.queues),
        "restart": lambda: monitor.restart(args.destination, args.wait, args.timeout),
        "dead": lambda: monitor.dead(args.count, args.retry),
        "metrics": lambda: exporter.serve(args.port, args.host),
    }
    try:
        return commands[args.command]()
    except redis.ConnectionError as error:
        print(f"Redis at {get_settings().redis_url} does not answer ({error}); is it running, and is REDIS_URL right?",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
