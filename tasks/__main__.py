"""`python -m tasks worker|convert ...`: run a worker, or one job from a terminal."""

from __future__ import annotations

import argparse
import sys

from tasks import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description="ytmp3 workers and jobs")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("-Q", "--queues", default="download,conversion,cleanup")
    worker.add_argument("-c", "--concurrency", type=int, help="processes (default: from settings)")
    worker.add_argument("-n", "--hostname", help="worker name, e.g. download@%%h")
    worker.add_argument("-l", "--loglevel", default="INFO")

    convert = sub.add_parser("convert", help="convert one link through the real queue")
    convert.add_argument("url")
    convert.add_argument("--out", default=".", help="folder for the MP3 (default: here)")
    convert.add_argument("--bitrate", type=int, help="kbit/s (default: from settings)")
    convert.add_argument("--limit", type=int, help="largest file in bytes; bigger ones are split")

    args = parser.parse_args(argv)
    if args.command == "worker":
        return cli.worker(args.queues, args.concurrency, args.hostname, args.loglevel)
    return cli.convert(args.url, args.out, args.bitrate, args.limit)


if __name__ == "__main__":
    sys.exit(main())
