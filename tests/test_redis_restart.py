"""Redis restarts: bots and workers reconnect by themselves, users hear that the bot is away,
and queued jobs survive (append-only persistence, as in the compose file).

A private redis-server of its own, so that the session's Redis is never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT, start_worker, stop_process
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer

pytestmark = pytest.mark.slow
TOKEN = "123456789:REDIS-restart-token-abcdefghijklmnop"


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--save", "", "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop: the append-only file is complete
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


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
            # 1. a link while no worker runs: the job waits in the queue
            fake.push_message(1, 7, media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}")
            fake.wait_for(lambda f: [m for m in f.messages(1) if "No worker is online" in m.get("text", "")],
                          timeout=20)
            # 2. Redis goes away: a user who writes now hears so
            private_redis.stop()
            fake.push_message(2, 8, media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}")
            fake.wait_for(lambda f: [m for m in f.messages(2) if "temporarily unavailable" in m.get("text", "")],
                          timeout=30)
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
