"""The stage's watch (tasks.interrupt) in this process, on real threads and a real child process."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from common.errors import Code, JobError
from tasks import interrupt


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[BaseException | object]]:
    """Run work in a thread of its own (as a threads pool does); its outcome lands in the list."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # what the stage would see
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_failing_check_stops_a_thread_that_waits_on_its_child() -> None:
    """The read of a child that says nothing ends at once: the child is killed, the check's error raised."""
    calls = []

    def check() -> None:
        calls.append(time.monotonic())
        if len(calls) >= 2:
            raise JobError(Code.TOO_SLOW, "judged")

    def work() -> bytes:
        with interrupt.Watch(tick=0.1), interrupt.checking(check):
            proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
            with interrupt.child(proc):
                assert proc.stdout is not None
                return proc.stdout.read()  # blocks in C until the child dies

    started = time.monotonic()
    thread, outcome = in_thread(work)
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    [error] = outcome
    assert isinstance(error, JobError) and error.code == Code.TOO_SLOW


def test_the_soft_limit_interrupts_python_code_in_a_thread() -> None:
    def work() -> None:
        with interrupt.Watch(soft_limit=0.3, tick=0.05):
            while True:  # pure Python: interrupted at its next instruction
                time.sleep(0.01)

    thread, outcome = in_thread(work)
    thread.join(5)
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, SoftTimeLimitExceeded)


def test_past_the_hard_limit_a_stuck_stage_is_given_up() -> None:
    """A thread stuck in C code (here a long sleep) cannot be interrupted: at the hard limit it is given up,
    and once it comes back it still ends with the soft limit's error."""
    given_up = threading.Event()

    def work() -> None:
        with interrupt.Watch(soft_limit=0.2, hard_limit=0.6, on_hard=given_up.set, tick=0.05):
            time.sleep(2)

    started = time.monotonic()
    thread, outcome = in_thread(work)
    assert given_up.wait(5)
    assert time.monotonic() - started < 1.5 and thread.is_alive()
    thread.join(5)
    [error] = outcome
    assert isinstance(error, SoftTimeLimitExceeded)


def test_an_interruption_never_lands_after_its_block() -> None:
    """Stages that end just as their watch looks: each is stopped inside its block or not at all."""
    def work() -> int:
        stopped = 0
        for _ in range(30):
            try:
                with interrupt.Watch(soft_limit=0.02, tick=0.005):
                    time.sleep(0.02)
            except SoftTimeLimitExceeded:
                stopped += 1
        time.sleep(0.3)  # one left pending would land here, as an Interrupted
        return stopped

    thread, outcome = in_thread(work)
    thread.join(15)
    [stopped] = outcome
    assert isinstance(stopped, int), stopped


def test_a_prefork_pool_process_keeps_celerys_own_limits() -> None:
    """On the main thread (a prefork pool process) Celery's signals stop a task: the watch sets no limit."""
    assert threading.current_thread() is threading.main_thread()
    watch = interrupt.for_stage(1.0, 2.0, lambda: None)
    assert watch.soft_limit is None and watch.hard_limit is None
    thread, outcome = in_thread(lambda: interrupt.for_stage(1.0, 2.0, lambda: None))
    thread.join(5)
    [in_a_thread] = outcome
    assert isinstance(in_a_thread, interrupt.Watch) and in_a_thread.soft_limit == 1.0


def test_outside_a_stage_nothing_is_watched() -> None:
    with interrupt.checking(lambda: pytest.fail("no watch calls it")):
        time.sleep(0.05)
    assert interrupt.current() is None
