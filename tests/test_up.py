"""`python -m bots up`: a private Redis when none answers, a worker per queue, one log stream, a clean stop."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mutagen.mp3 import MP3

from bots import up
from common.settings import Settings
from tests.conftest import ROOT, wait_until
from tests.cookiefiles import write_cookies
from tests.media import MediaServer


def descendants(pid: int) -> set[int]:
    """Every living process below pid (children in their own sessions included), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def command_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def up_env(test_env: dict[str, str]) -> Iterator[tuple[dict[str, str], int]]:
    """No REDIS_URL, and the probe pointed at a closed port: `up` must bring its own Redis there."""
    port = up.free_port()
    env = {k: v for k, v in {**os.environ, **test_env}.items()
           if k not in ("REDIS_URL", "TELEGRAM_TOKEN", "DISCORD_TOKEN")}
    env.update({up.PROBE_ENV: f"127.0.0.1:{port}", "KEY_PREFIX": f"uptest:{uuid.uuid4().hex[:6]}:",
                "DOWNLOAD_CONCURRENCY": "1", "CONVERSION_CONCURRENCY": "1"})
    yield env, port


@pytest.mark.slow
def test_up_runs_everything_and_leaves_nothing_behind(
    up_env: tuple[dict[str, str], int], media: MediaServer, tmp_path: Path
) -> None:
    env, port = up_env
    loose = write_cookies(tmp_path / "cookies.txt", mode=0o644)
    env = {**env, "COOKIES_FILE": str(loose)}
    log = tmp_path / "up.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "bots", "up"], cwd=ROOT, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: all(f"[{q}] " in (text := log.read_text()) and f"{q}@" in text and " ready." in
                               text.split(f"{q}@", 1)[1] for q in up.QUEUES) or proc.poll() is not None,
                   timeout=60, what=lambda: f"three workers ready:\n{log.read_text()[-3000:]}")
        text = log.read_text()
        assert proc.poll() is None, text[-3000:]
        url = f"redis://127.0.0.1:{port}/0"
        assert f"[up] redis: {url} (private, stopped on exit)" in text
        assert "(no TELEGRAM_TOKEN or DISCORD_TOKEN: no bot)" in text
        warning = f"{loose}: readable by other users (mode 644); chmod 600 it"
        assert f"[up] warning: cookies {warning}" in text  # checked first by the launcher's doctor
        wait_until(lambda: all(re.search(rf"^\[{q}\] - cookies {re.escape(warning)}$", log.read_text(), re.M)
                               for q in up.QUEUES),  # then in each worker's doctor summary
                   timeout=30, what=lambda: f"each worker's warning:\n{log.read_text()}")
        assert listening(port)

        out = tmp_path / "out"
        converted = subprocess.run(
            [sys.executable, "-m", "tasks", "convert", media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}",
             "--out", str(out)], cwd=ROOT, env={**env, "REDIS_URL": url}, capture_output=True, text=True,
            timeout=90)
        assert converted.returncode == 0, converted.stderr + log.read_text()[-3000:]
        mp3 = Path(converted.stdout.strip().splitlines()[-1])
        assert abs(MP3(mp3).info.length - 8.0) < 0.5
        text = log.read_text()
        assert re.search(r"^\[download\] .*\[job [0-9a-f]{12}\] ", text, re.M), text[-3000:]  # job id on lines
        assert all(re.match(r"\[(up|redis|download|conversion|cleanup)\] ", line) for line in text.splitlines())

        for queue in up.QUEUES:  # every queue in the threads of one process (its banner says so), none forked
            assert re.search(rf"^\[{queue}\] .*concurrency: 1 \(thread\)$", text, re.M), text[:3000]
        family = descendants(proc.pid)
        commands = [command_of(pid) for pid in family]
        assert sorted(c[:5] for c in commands if "tasks" in c) == \
            [[sys.executable, "-m", "tasks", "worker", "-Q"]] * 3, commands
        assert sum("redis-server" in c[0] for c in commands) == 1
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not [pid for pid in family if alive(pid)]
    assert not listening(port)
    text = log.read_text()
    assert "Warm shutdown" in text and text.rstrip().endswith("[up] stopped")


def test_redis_choice(test_env: dict[str, str]) -> None:
    settings = Settings()
    given = {"REDIS_URL": "redis://example.org:6380/1"}
    assert up.choose_redis(given, settings) == ("redis://example.org:6380/1", None)
    answering = urlparse(test_env["REDIS_URL"]).port or 6379
    assert up.choose_redis({up.PROBE_ENV: f"127.0.0.1:{answering}"}, settings) == \
        (f"redis://127.0.0.1:{answering}/0", None)
    closed = up.free_port()
    url, private = up.choose_redis({up.PROBE_ENV: f"127.0.0.1:{closed}"}, settings)
    assert private is not None and private.port == closed and url == f"redis://127.0.0.1:{closed}/0"
    taken = up.choose_redis({up.PROBE_ENV: f"127.0.0.1:{answering}"}, settings)
    assert taken[1] is None  # an answering Redis is used, never shadowed
    with pytest.raises(RuntimeError, match=r"no Redis answers at 10\.255\.255\.1"):
        up.choose_redis({up.PROBE_ENV: "10.255.255.1:6379"}, settings)


def test_private_redis_moves_to_a_free_port_when_the_probed_one_is_taken() -> None:
    with socket.socket() as holder:  # something that is not Redis holds the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        _, private = up.choose_redis({up.PROBE_ENV: f"127.0.0.1:{port}"}, Settings())
        assert private is not None and private.port != port
        private.start(up.Output(io.StringIO()))
        try:
            assert up.redis_answers("127.0.0.1", private.port)
        finally:
            private.stop()
        assert not listening(private.port)


def test_parts_follow_settings_and_tokens() -> None:
    settings = Settings(download_concurrency=5, conversion_concurrency=3, telegram_token="123:abc")
    found = {p.name: p.argv for p in up.parts(settings)}
    assert list(found) == ["download", "conversion", "cleanup", "telegram"]
    assert found["download"][1:] == ["-m", "tasks", "worker", "-Q", "download", "-c", "5", "-n", "download@%h"]
    assert found["conversion"][3:] == ["worker", "-Q", "conversion", "-c", "3", "-n", "conversion@%h"]
    assert found["telegram"][1:] == ["-m", "bots", "telegram"]


def test_code_watcher_sees_a_changed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tasks").mkdir()
    module = tmp_path / "tasks" / "thing.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(up, "ROOT", tmp_path)
    watcher = up.CodeWatcher()
    watcher.checked = 0.0
    assert watcher.changed() is None
    os.utime(module, (time.time() + 5, time.time() + 5))
    watcher.checked = 0.0
    assert watcher.changed() == "tasks/thing.py"
    (tmp_path / "tasks" / "new.py").write_text("")
    watcher.checked = 0.0
    assert watcher.changed() == "tasks/new.py"
