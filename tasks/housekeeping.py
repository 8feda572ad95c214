"""Work every worker does in the background: the sweep of old files.

It runs in a thread of each worker's main process (started when the worker is
ready), guarded by a Redis lock so that one worker at a time does it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from common import context
from common.jobs import State
from common.settings import get_settings

log = logging.getLogger(__name__)

_stop = threading.Event()
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


def _loop() -> None:
    settings = get_settings()
    client = context.redis_client()
    while not _stop.wait(settings.sweep_interval):
        try:
            if client.set(context.keys().sweep_lock, "1", nx=True, ex=int(settings.sweep_interval)):
                gone = sweep()
                if gone:
                    log.info("sweep removed %d old folders", len(gone))
        except Exception:  # Redis away or a folder vanishing under us: try again next round
            log.exception("sweep failed")


@worker_ready.connect
def _start(**_: Any) -> None:
    _stop.clear()
    threading.Thread(target=_loop, name="housekeeping", daemon=True).start()


@worker_shutdown.connect
def _stop_loop(**_: Any) -> None:
    _stop.set()
