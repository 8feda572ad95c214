"""Shared, expensive fixtures: test media and its server, one Redis database, one worker process.

Everything the tests start talks only to 127.0.0.1.  The tests run against a real
Redis (REDIS_URL's server, database 12, keys under a per-run prefix) and a real
prefork Celery worker started once per session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import redis

from common import context
from common.delivery import mark_delivered
from common.jobs import Job
from tests.media import MediaServer, make_media

ROOT = Path(__file__).resolve().parent.parent
YTDLP_PLUGINS = ROOT / "tests" / "ytdlp_plugins"
TEST_DB = 12


def _test_redis_url() -> str:
    url = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return urlunparse(url._replace(path=f"/{TEST_DB}"))


def _clean_db(url: str, prefix: str) -> None:
    """Only what this run writes: everything is under its key prefix, Celery's queues included."""
    client = redis.Redis.from_url(url)
    doomed = list(client.scan_iter(f"{prefix}*"))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    make_media(folder)
    return folder


@pytest.fixture(scope="session")
def media(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


@pytest.fixture(scope="session")
def test_env(media: MediaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of this run, set in this process and given to every process it starts."""
    prefix = f"ytmp3test:{uuid.uuid4().hex[:8]}:"
    data = tmp_path_factory.mktemp("data")
    env = {
        "REDIS_URL": _test_redis_url(),
        "KEY_PREFIX": prefix,
        "TEMP_DIR": str(data / "tmp"),
        "STORAGE_DIR": str(data / "out"),
        "SETTINGS_FILE": str(ROOT / "settings.toml"),
        "NETWORK_ALLOWLIST": f"127.0.0.1:{media.port}",
        "RETRY_BACKOFF": "0.3",
        "RETRY_BACKOFF_MAX": "1",
        "PROGRESS_INTERVAL": "0.1",
        "MAX_DURATION": "900",
        "SOCKET_TIMEOUT": "3",
        "HEARTBEAT_TIMEOUT": "6",
        # The suite's few test users send more than an hour's quota between them; tests/test_limits.py tests it.
        "USER_JOBS_PER_HOUR": "1000",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    context.reset()
    _clean_db(env["REDIS_URL"], prefix)
    yield env
    _clean_db(env["REDIS_URL"], prefix)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    context.reset()


def use_prefix(prefix: str) -> None:
    """Point this process's clients (ours and Celery's producer) at another key prefix: a world of its own."""
    from tasks.celery_app import app

    context.reset()
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": prefix}
    app._pool = None  # kombu keys its pools by connection, transport options included
    app.amqp._producer_pool = None


def start_worker(env: dict[str, str], log: Path, name: str = "test", queues: str = "download,conversion,cleanup",
                 concurrency: int = 2, pool: str = "prefork") -> subprocess.Popen:
    """A worker process; prefork (a process per task) unless `pool` says threads, as `python -m tasks worker` runs."""
    cmd = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues, "-c", str(concurrency),
           "-P", pool, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
           "-l", "INFO"]
    handle = log.open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while b" ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


class BotProcess:
    """A chat bot (`python -m bots <platform>`) as a real process, which a test may kill and start again."""

    def __init__(self, platform: str, env: dict[str, str], log: Path) -> None:
        self.platform = platform
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, started: Callable[[], object], timeout: float = 30) -> None:
        """Start it; `started()` (made before the start) turns true once the bot is up."""
        handle = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bots", self.platform], cwd=ROOT,
                                     env={**os.environ, **self.env}, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_until(started, timeout=timeout, interval=0.05, what=f"the {self.platform} bot starting")

    def kill(self) -> None:
        """SIGKILL: nothing gets to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL the whole process group if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def worker(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    """One real prefork worker serving all three queues for the whole session.

    Its yt-dlp also has the tests' extractor plugins (fake YouTube answers, a site's paged list),
    which take only links http://127.0.0.1:PORT/yt/<case> and /paged/<id>: see tests/ytdlp_plugins.
    """
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    path = os.pathsep.join(filter(None, [str(YTDLP_PLUGINS), os.environ.get("PYTHONPATH")]))
    proc = start_worker({**test_env, "PYTHONPATH": path}, log)
    yield proc
    stop_process(proc)


class World:
    """A key prefix of its own: its own jobs and queues, served only by the workers started here.

    For tests that kill workers or need a worker with settings of its own (the session's worker is shared).
    """

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.workers: list[subprocess.Popen] = []

    def worker(self, name: str, concurrency: int = 1, pool: str = "prefork", **extra: str) -> subprocess.Popen:
        proc = start_worker({**self.env, **extra}, self.log, name=name, concurrency=concurrency, pool=pool)
        self.workers.append(proc)
        return proc

    def __getitem__(self, key: str) -> str:
        return self.env[key]


@pytest.fixture
def world(test_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A world of its own, so that killing or freezing its workers does not touch the session's."""
    env = {**test_env, "KEY_PREFIX": f"{test_env['KEY_PREFIX']}{uuid.uuid4().hex[:6]}:"}
    with world_of(env, tmp_path, monkeypatch) as place:
        yield place


@contextmanager
def world_of(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    saved = (os.environ["REDIS_URL"], os.environ["KEY_PREFIX"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    use_redis(env["REDIS_URL"], env["KEY_PREFIX"])
    place = World(env, tmp_path / "workers.log")
    try:
        yield place
    finally:
        for proc in place.workers:  # whatever the test did, no worker outlives it
            stop_process(proc)
        use_redis(*saved)


def use_redis(url: str, prefix: str) -> None:
    """Point this process's clients (ours and Celery's producer) at another Redis and key prefix."""
    from tasks.celery_app import app

    app.conf.broker_url = url
    use_prefix(prefix)


class PrivateRedis:
    """A redis-server of its own, which a test may stop, pause and start again."""

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
             "--save", "", "--dir", str(self.folder), "--enable-debug-command", "local"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A throwaway TCP listener on another local port (Redis's stand-in): it must never see a connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound but not listening: connections are refused, and nobody else takes it meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def connections(sock: socket.socket) -> int:
    """How many connections a listener has received (and closes them)."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def wait_until(
    predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05, what: str | Callable[[], str] = ""
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what or predicate}")


def origin() -> dict[str, str]:
    return {"id": f"test:{uuid.uuid4().hex[:8]}", "platform": "test"}


def deliver(job_id: str) -> None:
    """Play the chat's part: every requester got the MP3, so its files go (later tests glob the storage)."""
    store = context.store()
    job = store.get(job_id)
    for requester in store.origins(job_id):
        mark_delivered(store, job, str(requester["id"]))


def wait_job(job_id: str, timeout: float = 60) -> Job:
    """Block on the job's own events until it has finished."""
    store = context.store()
    cursor = "0-0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job is not None and job.state.finished:
            return job
        _, cursor = store.job_events(job_id, cursor, block_ms=500)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {store.get(job_id)}")
