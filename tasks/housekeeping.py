"""What every worker adds to Celery: a presence heartbeat, the sweep of old files, a restart command,
the job id on its log lines, the doctor's summary at start, and one line instead of Celery's root warning.

A thread of each worker's main process (started when the worker is ready) writes
the worker's presence to Redis every few seconds with a short TTL, runs the
watchdog (tasks/watchdog.py) on the same beat, and the sweep every
``sweep_interval``; the watchdog and the sweep run under Redis locks so that one
worker at a time does them. The presence lets the bots and the monitor see, without a broadcast,
which queues are served right now; it is deleted when the worker shuts down and
expires on its own when the worker is killed.

``ytmp3_restart`` is a remote-control command (``python -m tasks restart``):
warm shutdown — no new tasks, running ones finish — then the worker runs its
own command line again, with fresh code and settings.

Every log line written while one of our tasks runs starts with ``[job ID]``, so
that one job can be followed through the merged logs of ``python -m bots up``.

Once ready, each worker logs the doctor's summary (``python -m tasks doctor``): what
it has for YouTube and what it lacks, with the fixes, run as a process of its own
(so that its imports do not stay in the worker) with short timeouts, from a
thread, so that the worker does not wait for it.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from celery import platforms
from celery._state import get_current_task
from celery.exceptions import SecurityWarning
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_init,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker import state as worker_state
from celery.worker.control import control_command

from common import context
from common.jobs import JOB_ID, State
from common.settings import get_settings
from tasks import watchdog

log = logging.getLogger(__name__)

DOCTOR_TIMEOUT = 1.0  # seconds per network check of the start-up summary (they run side by side)
DOCTOR_SECONDS = 60.0  # for the whole summary, the doctor's own start included
NO_PROBLEMS = "No problems found."  # tasks.doctor.NO_PROBLEMS (not imported here: that module loads yt-dlp)
ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_EVERY = 5.0  # seconds between presence writes
PRESENCE_TTL = 20  # seconds a presence outlives its last write
INDEX_KEEP = 3600  # seconds an index entry of a silent worker is kept

# Files of jobs in these states can go once old; others may still be worked on or delivered.
DONE = (State.DELIVERED, State.FAILED, State.CANCELLED)


def sweep(now: float | None = None) -> list[Path]:
    """Remove job folders older than file_ttl whose jobs are done or gone; return what went."""
    settings = get_settings()
    store = context.store()
    now = now or time.time()
    removed = []
    for root in (settings.temp_dir, settings.storage_dir):
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            if not JOB_ID.fullmatch(folder.name):  # not a job's (the Discord file cache, say): not ours
                continue
            age = now - folder.stat().st_mtime
            if age < settings.file_ttl:
                continue
            state = store.state(folder.name)
            if state is None or state in DONE or age > settings.job_ttl:
                _remove(folder)
                removed.append(folder)
    cutoff = now - 86400 * 2
    store.redis.zremrangebyscore(store.keys.finished, "-inf", cutoff)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Presence:
    """One worker's presence record, read from its Celery consumer."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.hostname: str = consumer.hostname
        self.started = time.time()

    def queues(self) -> list[str]:
        """The queues the worker consumes now (remote control can add or cancel some)."""
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is not None:
            return sorted(q.name for q in task_consumer.queues)
        return sorted(self.consumer.app.amqp.queues.consume_from)

    def record(self) -> dict[str, Any]:
        controller = self.consumer.controller
        concurrency = getattr(controller, "max_concurrency", None) or controller.concurrency
        return {"hostname": self.hostname, "queues": self.queues(), "concurrency": int(concurrency),
                "pid": os.getpid(), "started": self.started, "time": time.time()}

    def write(self) -> None:
        keys = context.keys()
        record = self.record()
        pipe = context.redis_client().pipeline(transaction=True)
        pipe.set(keys.worker(self.hostname), json.dumps(record), ex=PRESENCE_TTL)
        pipe.zadd(keys.workers, {self.hostname: record["time"]})
        pipe.zremrangebyscore(keys.workers, "-inf", record["time"] - INDEX_KEEP)
        pipe.execute()

    def remove(self) -> None:
        keys = context.keys()
        pipe = context.redis_client().pipeline(transaction=True)
        pipe.delete(keys.worker(self.hostname))
        pipe.zrem(keys.workers, self.hostname)
        pipe.execute()


class Housekeeper(threading.Thread):
    """The background thread: presence every HEARTBEAT_EVERY seconds, the sweep every sweep_interval."""

    def __init__(self, presence: Presence) -> None:
        super().__init__(name="housekeeping", daemon=True)
        self.presence = presence
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = get_settings().sweep_interval
        next_beat, next_sweep = time.monotonic(), time.monotonic() + interval
        while True:
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_EVERY
                self._guarded(self.presence.write, "presence write")
                self._guarded(self._watch, "watchdog")
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + interval
                self._guarded(self._sweep, "sweep")
            if self.stopping.wait(max(0.05, min(next_beat, next_sweep) - time.monotonic())):
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        self._guarded(self.presence.remove, "presence removal")

    @staticmethod
    def _sweep() -> None:
        lock = context.keys().sweep_lock
        if context.redis_client().set(lock, "1", nx=True, ex=int(get_settings().sweep_interval)):
            gone = sweep()
            if gone:
                log.info("sweep removed %d old folders", len(gone))

    @staticmethod
    def _watch() -> None:
        """Take up the stages whose worker vanished, and albums whose last step was lost (one worker per round,
        under a lock)."""
        if context.redis_client().set(context.keys().watchdog_lock, "1", nx=True, ex=int(HEARTBEAT_EVERY)):
            watchdog.check()
            watchdog.check_albums()

    @staticmethod
    def _guarded(work: Any, what: str) -> None:
        try:
            work()
        except Exception:  # Redis away or a folder vanishing under us: try again next round
            log.exception("%s failed", what)


_housekeeper: Housekeeper | None = None


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    """The sender of worker_ready is the worker's consumer."""
    global _housekeeper
    if _housekeeper is not None and _housekeeper.is_alive():
        _housekeeper.presence.consumer = sender  # the consumer was restarted after a broker reconnection
        return
    _housekeeper = Housekeeper(Presence(sender))
    _housekeeper.start()
    threading.Thread(target=log_doctor_summary, name="doctor", daemon=True).start()


def log_doctor_summary() -> None:
    """The doctor's report, once per worker start: a warning when something is wrong.

    From a process of its own: its checks load all of yt-dlp, its plugins and its JS challenge
    solvers, memory that a worker would otherwise keep for as long as it runs.
    """
    command = [sys.executable, "-m", "tasks", "doctor", "--no-workers", "--timeout", str(DOCTOR_TIMEOUT)]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=DOCTOR_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:  # a courtesy: never a reason for a worker to stop
        log.warning("doctor: the checks did not run (%s); try python -m tasks doctor", error)
        return
    report = result.stdout.strip()
    if not report:
        log.warning("doctor: the checks failed: %s", result.stderr.strip()[-2000:])
        return
    well = report.endswith(NO_PROBLEMS)
    log.log(logging.INFO if well else logging.WARNING, "doctor: %s\n%s", "all is well" if well else "problems found",
            report)


@worker_init.connect
def _load_ytdlp(sender: Any = None, **_: Any) -> None:
    """A worker of the download queue loads yt-dlp as it starts, not in its first job (the others never do:
    tens of MB). A prefork pool's processes, forked after this, share it."""
    if "download" in sender.app.amqp.queues.consume_from:
        importlib.import_module("tasks.download")


@celeryd_init.connect
def _root_note(**_: Any) -> None:
    """Celery's long warning about root (its check follows this signal), said in one line instead."""
    if os.geteuid() == 0:
        warnings.filterwarnings("ignore", category=SecurityWarning)
        print("note: this worker runs as root; better a user of its own (the Docker image runs as 'ytmp3')",
              file=sys.stderr, flush=True)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    global _housekeeper
    if _housekeeper is not None:
        _housekeeper.stop()
        _housekeeper = None


@control_command()
def ytmp3_restart(state: Any, **_: Any) -> dict[str, str]:
    """Warm shutdown, then the same command line again (fresh code and settings)."""
    log.warning("restart requested through remote control: finishing running tasks first")
    atexit.register(_run_again)
    worker_state.should_stop = platforms.EX_OK  # the worker's own loop raises WorkerShutdown: a warm shutdown
    return {"ok": "restarting"}


def _run_again() -> None:
    """Replace this process by a fresh run of the command that started it (same pid, same output)."""
    platforms.close_open_fds([sys.__stdin__, sys.__stdout__, sys.__stderr__])
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class JobTag(logging.Filter):
    """Puts ``[job ID]`` in front of a log line written while one of our tasks runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            job_id = _current_job()
            record.__dict__["job_id"] = job_id  # as logging's `extra=` sets a field
            if job_id:
                record.msg = f"[job {job_id}] {record.msg}"
        return True


def _current_job() -> str:
    task = get_current_task()
    if task is None or not str(task.name).startswith("tasks."):
        return ""
    args = task.request.args or ()
    return str(args[0]) if args else ""


@after_setup_logger.connect
@after_setup_task_logger.connect
def _tag_logs(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, JobTag) for f in handler.filters):
            handler.addFilter(JobTag())
