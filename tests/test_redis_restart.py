"""Redis restarts: bots and workers reconnect by themselves, users hear that the bot is away,
and queued jobs survive (append-only persistence, as in the compose file).

A private redis-server of its own, so that the session's Redis is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, PrivateRedis, start_worker, stop_process, wait_until
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer

pytestmark = pytest.mark.slow
TOKEN = "123456789:REDIS-restart-token-abcdefghijklmnop"


def test_redis_restart_mid_queue(private_redis: PrivateRedis, test_env: dict[str, str], media: MediaServer,
                                 tmp_path: Path) -> None:
    env = {**test_env, "REDIS_URL": private_redis.url, "KEY_PREFIX": "restart:"}
    with FakeTelegram(flood_limit=None) as fake:
        bot_env = {**env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
                   "TELEGRAM_FILE_URL": fake.file_url}
        bot = subprocess.Popen([sys.executable, "-m", "bots", "telegram"], cwd=ROOT, env={**os.environ, **bot_env},
                               stdout=(tmp_path / "bot.log").open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            fake.wait_for(lambda f: f.calls("deleteWebhook"), timeout=30)
            # 1. a link while no worker runs: the job is recorded and its status posted, and Redis goes away
            # before the job is sent to the workers (the status's answer comes late), so the bot sends it when
            # Redis is back
            fake.late[1] = 2.0
            fake.push_message(1, 7, media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}")
            fake.wait_for(lambda f: f.messages(1), timeout=20)
            # 2. Redis goes away: a user who writes now hears so
            private_redis.stop()
            fake.late.clear()
            fake.push_message(2, 8, media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}")
            fake.wait_for(lambda f: [m for m in f.messages(2) if "temporarily unavailable" in m.get("text", "")],
                          timeout=30)
            wait_until(lambda: "not sent to the workers yet" in (tmp_path / "bot.log").read_text(), timeout=30,
                       what="the bot's first try to send the job, while Redis is away")
            # 3. Redis is back with its data; a worker comes online: the queued job is delivered
            private_redis.start()
            worker = start_worker(env, tmp_path / "worker.log", name="after-restart", concurrency=1)
            try:
                fake.wait_for(lambda f: [m for m in f.sent_media() if int(m["chat_id"]) == 1], timeout=60)
                # 4. and new links work as usual
                fake.push_message(3, 9, media.media_url("video.mp4") + f"?n={uuid.uuid4().hex}")
                fake.wait_for(lambda f: [m for m in f.sent_media() if int(m["chat_id"]) == 3], timeout=60)
            finally:
                stop_process(worker)
            assert bot.poll() is None  # the bot never crashed
        finally:
            stop_process(bot)
