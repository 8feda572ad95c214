"""Stopping a running stage from outside its thread — its time limits, a download's pace — in any pool.

Celery enforces time limits by signals to a prefork pool process. A threads pool runs each task
in a thread of the worker, which no signal reaches and nothing can kill. So every running stage has
a watch: a thread that, once a second, asks the stage's checks (a download's pace) and, when the
stage runs off the main thread where Celery's limits do not reach, its soft time limit. The first
that fails stops the stage: the processes it started (ffmpeg) are killed, so that no read waits on
them, and its thread is interrupted at its next Python instruction — as Celery's signal interrupts
a pool process — with that failure raised there. A wait on a socket ends within SOCKET_TIMEOUT at
the latest. A stage still running at the hard time limit (stuck in C code) is given up: `on_hard`
(its job fails as a timeout) while the thread is left to end on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between two looks

Check = Callable[[], None]  # raises to stop the stage


class Interrupted(BaseException):
    """Raised in a stage's thread by its watch; the watch raises the reason in its place.

    A BaseException, as KeyboardInterrupt is: no ``except Exception`` on the way holds it up.
    """


class Watch:
    """The watch of the stage running in this thread, for as long as the block runs."""

    def __init__(self, soft_limit: float | None = None, hard_limit: float | None = None,
                 on_hard: Callable[[], None] | None = None, tick: float = TICK) -> None:
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.on_hard = on_hard
        self.tick = tick
        self.reason: BaseException | None = None
        self._checks: list[Check] = []
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()  # between interrupting the thread and the thread leaving the block
        self._done = threading.Event()
        self._thread = threading.current_thread()
        self._started = 0.0
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.current_thread()
        self._started = time.monotonic()
        _local.watch = self
        self._watcher = threading.Thread(target=self._run, name=f"watch-{self._thread.name}", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        while True:  # an interruption on its way may arrive here, once: then leave again
            try:
                with self._lock:
                    self._done.set()
                    _raise_in(self._thread, None)  # one not yet delivered never will be
                break
            except Interrupted:
                kind = Interrupted
        _local.watch = None
        if kind is not None and self.reason is not None:  # however the stage ended, it was stopped for this
            raise self.reason from None

    def checking(self, check: Check) -> Iterator[None]:
        self._checks.append(check)
        try:
            yield
        finally:
            self._checks.remove(check)

    def child(self, proc: subprocess.Popen[bytes]) -> Iterator[None]:
        with self._lock:
            self._children.add(proc)
        try:
            yield
        finally:
            with self._lock:
                self._children.discard(proc)

    def _run(self) -> None:
        while not self._done.wait(self.tick):
            if self.reason is None:
                reason = self._judge()
                if reason is not None:
                    self._interrupt(reason)
            if self.hard_limit is not None and time.monotonic() - self._started > self.hard_limit:
                log.error("stage in %s still running past its hard time limit (%gs): given up", self._thread.name,
                          self.hard_limit)
                if self.on_hard is not None:
                    self.on_hard()
                return

    def _judge(self) -> BaseException | None:
        for check in list(self._checks):
            try:
                check()
            except Exception as failure:
                return failure
        if self.soft_limit is not None and time.monotonic() - self._started > self.soft_limit:
            return SoftTimeLimitExceeded(f"soft time limit ({self.soft_limit:g}s) exceeded")
        return None

    def _interrupt(self, reason: BaseException) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self.reason = reason
            _raise_in(self._thread, Interrupted)  # first: the thread that wakes up meets it at once
            for proc in self._children:
                with contextlib.suppress(OSError):
                    proc.kill()


_local = threading.local()


def current() -> Watch | None:
    """The watch of the stage running in this thread, if any."""
    return getattr(_local, "watch", None)


@contextmanager
def checking(check: Check) -> Iterator[None]:
    """Have the stage's watch call `check` every second while the block runs (nothing outside a stage)."""
    watch = current()
    if watch is None:
        yield
        return
    yield from watch.checking(check)


@contextmanager
def child(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """A process the stage waits on: killed when the stage is stopped, so that no read waits on it."""
    watch = current()
    if watch is None:
        yield
        return
    yield from watch.child(proc)


def for_stage(soft_limit: float, hard_limit: float, on_hard: Callable[[], None]) -> Watch:
    """The watch of a Celery task's stage: with its time limits where Celery's own do not reach.

    A prefork pool process (and only it, here) runs its task on its main thread, and Celery stops it
    there by signal; in a threads pool's thread the limits are the watch's.
    """
    if threading.current_thread() is threading.main_thread():
        return Watch()
    return Watch(soft_limit, hard_limit, on_hard)


def _raise_in(thread: threading.Thread, kind: type[BaseException] | None) -> None:
    """Raise `kind` in `thread` at its next Python instruction; None takes back one not yet raised."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(kind) if kind is not None else None)
