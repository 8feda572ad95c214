"""`python -m bots up`: everything on one machine — Redis if needed, one worker per queue, each bot with a token.

Redis. ``REDIS_URL`` from the environment is used as it is. Without it the
launcher looks for a Redis at the configured address (``redis_url`` of the
settings file, 127.0.0.1:6379 by default; ``YTMP3_PROBE_REDIS=host:port``
replaces that address). If one answers there it is used; if nothing answers and
the address is on this machine, a private ``redis-server`` is started (no
persistence, its files in a temp folder) on that port when it is free, else on a
free one, and stopped on exit. Either way one line names the Redis in use,
``[up] redis: redis://127.0.0.1:PORT/0``, and the children get it as REDIS_URL.

Checks. Then the doctor (``python -m tasks doctor``, without the workers it is
about to start) runs once; each problem it finds is a ``[up] warning: ...`` line
saying what is wrong and how to fix it, and the start goes on.

Children. One Celery worker per queue (``python -m tasks worker -Q download
-c N -n download@%h`` ... with the concurrency from settings), ``python -m
bots telegram`` / ``discord`` when their token is set, and the Prometheus
exporter (``python -m tasks metrics``) when ``METRICS_PORT`` is set. Each runs in
its own process group; its output joins this one, every line prefixed
``[part]``. A part that exits on its own is started again after a growing delay,
except a bot whose token was refused (exit status 78, ``os.EX_CONFIG``).

Stopping. SIGINT or SIGTERM: each child gets one SIGTERM (Celery's warm
shutdown: no new tasks, running ones finish; with acks late a task cut short is
handed back to the queue), the launcher waits up to STOP_GRACE seconds, then
kills what is left (a second Ctrl-C kills at once), then stops the private Redis.
No process and no port are left behind.

``--reload`` (development): the children are restarted when a .py file under
bots/, tasks/ or common/, or the settings file, changes (mtimes polled every second).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from bots.startup import REFUSED
from common.keys import QUEUES
from common.settings import Settings, get_settings, settings_file

ROOT = Path(__file__).resolve().parent.parent
PROBE_ENV = "YTMP3_PROBE_REDIS"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STOP_GRACE = 60.0  # seconds running tasks get to finish on shutdown
WATCHED = ("bots", "tasks", "common")
BACKOFF_MAX = 30.0
DOCTOR_SECONDS = 60.0


class Output:
    """One stream for every part: each line prefixed with its part's name."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.pumps: list[threading.Thread] = []

    def line(self, part: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{part}] {text}\n")
            self.stream.flush()

    def pump(self, part: str, source: IO[bytes]) -> threading.Thread:
        """Copy a child's output line by line until it closes."""

        def copy() -> None:
            for raw in iter(source.readline, b""):
                self.line(part, raw.decode(errors="replace").rstrip("\r\n"))
            source.close()

        thread = threading.Thread(target=copy, name=f"output-{part}", daemon=True)
        thread.start()
        self.pumps = [t for t in self.pumps if t.is_alive()] + [thread]
        return thread

    def drain(self, timeout: float = 2.0) -> None:
        """Wait for the last lines of children that have exited."""
        deadline = time.monotonic() + timeout
        for thread in self.pumps:
            thread.join(max(0.0, deadline - time.monotonic()))


def spawn(argv: list[str], env: dict[str, str], part: str, out: Output) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, its output into ours."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    out.pump(part, proc.stdout)
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left in a child's process group (the group is the child's own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# -- Redis ------------------------------------------------------------------------------------------------------


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something that speaks Redis answers at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own: no persistence, files in a temp folder, stopped with us."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.folder = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, out: Output, timeout: float = 10.0) -> None:
        self.folder = tempfile.mkdtemp(prefix="ytmp3-redis-")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.folder]
        self.proc = spawn(argv, dict(os.environ), "redis", out)
        deadline = time.monotonic() + timeout
        while not redis_answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the private redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            kill_group(self.proc)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def choose_redis(env: dict[str, str], settings: Settings) -> tuple[str, PrivateRedis | None]:
    """The Redis URL to use and, when nothing answers at the local address, a private Redis to start."""
    if env.get("REDIS_URL"):
        return env["REDIS_URL"], None
    url = settings.redis_url
    probe = env.get(PROBE_ENV)
    if probe:
        probe_host, _, probe_port = probe.rpartition(":")
        url = f"redis://{probe_host}:{probe_port}/0"
    parts = urlparse(url)
    if parts.scheme != "redis" or not parts.hostname:
        return url, None  # a unix socket or TLS: nothing to probe, use it as configured
    host, port = parts.hostname, parts.port or 6379
    if redis_answers(host, port):
        return url, None
    if host not in LOCAL_HOSTS:
        raise RuntimeError(f"no Redis answers at {host}:{port}; start it, or set REDIS_URL")
    if shutil.which("redis-server") is None:
        raise RuntimeError(f"no Redis answers at {host}:{port} and redis-server is not installed; "
                           "install it (apt-get install redis-server) or set REDIS_URL")
    private = PrivateRedis(port if port_free("127.0.0.1", port) else free_port())
    return private.url, private


# -- children ---------------------------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    start_at: float = 0.0  # when a part that exited on its own is started again


def parts(settings: Settings) -> list[Part]:
    """A worker per queue, each bot whose token is set, and the metrics exporter when METRICS_PORT is set."""
    concurrency = {"download": settings.download_concurrency, "conversion": settings.conversion_concurrency,
                   "cleanup": settings.cleanup_concurrency}
    found = [Part(q, [sys.executable, "-m", "tasks", "worker", "-Q", q, "-c", str(concurrency[q]), "-n", f"{q}@%h"])
             for q in QUEUES]
    if settings.telegram_token:
        found.append(Part("telegram", [sys.executable, "-m", "bots", "telegram"]))
    if settings.discord_token:
        found.append(Part("discord", [sys.executable, "-m", "bots", "discord"]))
    if settings.metrics_port:
        found.append(Part("metrics", [sys.executable, "-m", "tasks", "metrics", "--port", str(settings.metrics_port),
                                      "--host", settings.metrics_host]))
    return found


class Launcher:
    def __init__(self, env: dict[str, str], settings: Settings, out: Output, reload: bool = False) -> None:
        self.env = env
        self.out = out
        self.parts = parts(settings)
        self.reload = reload
        self.signals = 0  # SIGINT/SIGTERM received: 1 stops gracefully, 2 kills

    def on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals == 1:
            self.out.line("up", f"{signal.Signals(signum).name}: stopping; running tasks finish first "
                                "(Ctrl-C again to kill them)")

    def start(self, part: Part) -> None:
        part.proc = spawn(part.argv, self.env, part.name, self.out)
        part.started = time.monotonic()

    def run(self) -> None:
        """Start every part and look after them until a signal asks to stop."""
        for part in self.parts:
            self.start(part)
        watcher = CodeWatcher() if self.reload else None
        while not self.signals:
            for part in self.parts:
                self.look_after(part)
            if watcher is not None and (changed := watcher.changed()):
                self.out.line("up", f"{changed} changed: restarting workers and bots")
                self.stop_all()
                if not self.signals:
                    for part in self.parts:
                        self.start(part)
            time.sleep(0.2)
        self.stop_all()

    def look_after(self, part: Part) -> None:
        """Start again, after a growing delay, a part that exited on its own."""
        now = time.monotonic()
        if part.proc is None:
            if now >= part.start_at:
                self.start(part)
            return
        code = part.proc.poll()
        if code is None:
            return
        kill_group(part.proc)
        if code == REFUSED:  # a refused token stays refused: starting it again would only repeat the refusal
            self.out.line("up", f"{part.name} stopped: it refused its configuration (its last line says why); "
                                "fix it, then start again")
            part.proc, part.start_at = None, math.inf
            return
        part.failures = 1 if now - part.started > 60 else part.failures + 1
        delay = min(BACKOFF_MAX, 2.0 ** (part.failures - 1))
        self.out.line("up", f"{part.name} exited with code {code}; starting it again in {delay:.0f} s")
        part.proc, part.start_at = None, now + delay

    def stop_all(self, grace: float = STOP_GRACE) -> None:
        """One SIGTERM each (warm shutdown), wait, kill what is left."""
        running = [p.proc for p in self.parts if p.proc is not None and p.proc.poll() is None]
        signals_before = self.signals
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace
        while any(proc.poll() is None for proc in running):
            if time.monotonic() > deadline or self.signals > max(signals_before, 1):
                self.out.line("up", "killing what is left")
                break
            time.sleep(0.1)
        for part in self.parts:
            if part.proc is not None:
                kill_group(part.proc)
                part.proc.wait()
                part.proc = None


class CodeWatcher:
    """Notices a change of a .py file under the project's packages or of the settings file."""

    def __init__(self) -> None:
        self.seen = self.snapshot()
        self.checked = time.monotonic()

    @staticmethod
    def snapshot() -> dict[Path, float]:
        files = [path for folder in WATCHED for path in (ROOT / folder).rglob("*.py")]
        files.append(settings_file().resolve())
        found = {}
        for path in files:
            try:
                found[path] = path.stat().st_mtime
            except FileNotFoundError:
                continue
        return found

    def changed(self) -> str | None:
        """The first changed, added or removed file since the last call (checked at most once a second)."""
        if time.monotonic() - self.checked < 1.0:
            return None
        self.checked = time.monotonic()
        now = self.snapshot()
        before, self.seen = self.seen, now
        for path in sorted(set(now) | set(before)):
            if now.get(path) != before.get(path):
                return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        return None


def doctor_problems(env: dict[str, str]) -> list[str]:
    """What `python -m tasks doctor` finds wrong, before the workers start (they would log it too, later)."""
    try:
        result = subprocess.run([sys.executable, "-m", "tasks", "doctor", "--json", "--no-workers"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=DOCTOR_SECONDS)
        problems = json.loads(result.stdout)["problems"]
    except (subprocess.TimeoutExpired, ValueError, KeyError) as error:
        return [f"the doctor did not run ({type(error).__name__}); try python -m tasks doctor"]
    return [str(problem) for problem in problems]


def main(reload: bool = False) -> int:
    """Run everything until SIGINT or SIGTERM; 0 after a requested stop."""
    settings = get_settings()
    out = Output()
    env = dict(os.environ)
    try:
        url, private = choose_redis(env, settings)
        if private is not None:
            private.start(out)
    except RuntimeError as error:
        out.line("up", str(error))
        return 1
    env.update(REDIS_URL=url, PYTHONUNBUFFERED="1")
    out.line("up", f"redis: {url}" + (" (private, stopped on exit)" if private else ""))
    for problem in doctor_problems(env):
        out.line("up", f"warning: {problem}")
    launcher = Launcher(env, settings, out, reload)
    names = ", ".join(part.name for part in launcher.parts)
    bots = {"telegram", "discord"} & {part.name for part in launcher.parts}
    out.line("up", f"starting {names}" + ("" if bots else " (no TELEGRAM_TOKEN or DISCORD_TOKEN: no bot)"))
    previous = {sig: signal.signal(sig, launcher.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        launcher.run()
    finally:
        launcher.stop_all(grace=0 if launcher.signals > 1 else STOP_GRACE)
        if private is not None:
            private.stop()
        out.drain()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.line("up", "stopped")
    return 0
