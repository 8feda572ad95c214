"""`python -m bots up|telegram|discord`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bots", description="ytmp3 chat bots")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="everything on one machine: Redis if needed, workers, bots")
    up.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    sub.add_parser("telegram", help="the Telegram bot")
    sub.add_parser("discord", help="the Discord bot")
    args = parser.parse_args(argv)
    if args.command == "up":
        from bots.up import main as run_up

        return run_up(reload=args.reload)
    if args.command == "telegram":
        from bots.telegram_bot import main as run_telegram

        return run_telegram()
    from bots.discord_bot import main as run_discord

    return run_discord()


if __name__ == "__main__":
    sys.exit(main())
