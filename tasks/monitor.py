"""Operations from a terminal: `python -m tasks monitor|watch|task ID|purge|restart|dead`.

The figures come from common.stats (the admin chat commands use the same module);
this side adds what needs the Celery app: the remote inspection of workers, the
restart command, and retrying a dead letter through the pipeline.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import asdict, fields

from rich.console import Console
from rich.live import Live
from rich.text import Text

from common import context, stats
from common.jobs import Job
from tasks import pipeline
from tasks.celery_app import QUEUES, app

RESTART_COMMAND = "ytmp3_restart"  # registered by tasks.housekeeping in every worker


def inspect_workers(names: list[str], timeout: float = 1.0) -> stats.Inspection:
    """Ask the named workers what they run and hold; returns as soon as all of them answered."""
    inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    return stats.Inspection(active=inspect.active() or {}, reserved=inspect.reserved() or {},
                            stats=inspect.stats() or {})


def monitor(as_json: bool = False) -> int:
    """Queue depths, workers and what they run, outcomes, timings, dead letters, disk, cache: once."""
    figures = stats.collect(inspect_workers)
    print(json.dumps(asdict(figures), indent=2) if as_json else stats.render_stats(figures))
    return 0


def watch(interval: float = 1.0, iterations: int | None = None) -> int:
    """The monitor's view, redrawn in place until Ctrl-C (or `iterations` times)."""
    console = Console()
    drawn = 0
    try:
        with Live(Text(""), console=console, auto_refresh=False, transient=False) as live:
            while True:
                live.update(_screen(), refresh=True)
                drawn += 1
                if iterations is not None and drawn >= iterations:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    console.line()
    return 0


def _screen() -> Text:
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return Text(f"ytmp3 — {now} (Ctrl-C to quit)\n\n{stats.render_stats(stats.collect(inspect_workers))}")


def task(job_id: str) -> int:
    """One job's full record, its requesters and its history of changes."""
    store = context.store()
    job = store.get(job_id)
    if job is None:
        print(f"No job {job_id} (unknown, or expired).")
        return 1
    print(f"Job {job.id}: {job.state}, {job.percent:.0f}%")
    for line in _record_lines(job):
        print(line)
    position = stats.queue_position(job.id)
    if position is not None:
        print(f"  queue position: {position} ahead")
    origins = store.origins(job_id)
    print(f"Requested by: {', '.join(json.dumps(o, ensure_ascii=False) for o in origins) or 'nobody recorded'}")
    print("History:")
    for event_id, change in store.history(job_id):
        print(f"  {_event_time(event_id)}  {json.dumps(change, ensure_ascii=False)}")
    return 0


def _record_lines(job: Job) -> list[str]:
    lines = []
    for item in fields(Job):
        value = getattr(job, item.name)
        if item.name in ("id", "state", "percent") or value in (None, "", [], False):
            continue
        if item.name in ("created", "updated", "started", "finished"):
            value = _clock(value)
        lines.append(f"  {item.name}: {value}")
    return lines


def _event_time(event_id: str) -> str:
    return _clock(int(event_id.split("-")[0]) / 1000, millis=True)


def _clock(seconds: float, millis: bool = False) -> str:
    moment = datetime.datetime.fromtimestamp(seconds)
    return moment.isoformat(sep=" ", timespec="milliseconds" if millis else "seconds")


def purge(yes: bool = False, queues: list[str] | None = None, ask: Callable[[str], str] = input) -> int:
    """Empty the queues (after a confirmation) and cancel the jobs whose messages went."""
    names = queues or list(QUEUES)
    unknown = set(names) - set(QUEUES)
    if unknown:
        print(f"Unknown queue(s): {', '.join(sorted(unknown))}; choose from {', '.join(QUEUES)}.")
        return 2
    waiting = {name: stats.queue_depth(name) for name in names}
    if not sum(waiting.values()):
        print(f"Nothing to purge: {', '.join(names)} {'is' if len(names) == 1 else 'are'} empty.")
        return 0
    question = f"Purge {sum(waiting.values())} waiting message(s) ({_counts(waiting)}) and cancel their jobs? [y/N] "
    if not yes and not _confirm(ask, question):
        print("Nothing purged.")
        return 1
    counts, cancelled = empty(names)
    print(f"Purged {sum(counts.values())} message(s) ({_counts(counts)}); cancelled {cancelled} job(s).")
    return 0


def empty(names: list[str]) -> tuple[dict[str, int], int]:
    """Take every waiting message off these queues and cancel their jobs: (messages per queue, jobs cancelled)."""
    removed = {name: _take_all(name) for name in names}
    job_ids = {stats.message_job_id(raw) for messages in removed.values() for raw in messages}
    cancelled = sum(pipeline.cancel(job_id) for job_id in job_ids if job_id)
    return {name: len(messages) for name, messages in removed.items()}, cancelled


def _confirm(ask: Callable[[str], str], question: str) -> bool:
    try:
        return ask(question).strip().lower() in ("y", "yes")
    except EOFError:  # no answer: no
        print()
        return False


def _counts(per_queue: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in per_queue.items())


def _take_all(queue: str) -> list[bytes]:
    """Remove every waiting message of a queue (priority sub-queues too) in one transaction; return them."""
    keys = context.keys()
    names = [keys.broker_queue(queue, step) for step in stats.PRIORITY_STEPS]
    pipe = context.redis_client().pipeline(transaction=True)
    for name in names:
        pipe.lrange(name, 0, -1)
    pipe.delete(*names)
    *lists, _deleted = pipe.execute()
    return [raw for messages in lists for raw in messages]


def restart(destinations: list[str] | None = None, wait: bool = False, timeout: float = 120.0) -> int:
    """Graceful restart through remote control: each worker stops taking tasks, lets its running
    tasks finish, then runs its own command line again (see tasks.housekeeping.ytmp3_restart)."""
    asked = time.time()
    replies = app.control.broadcast(RESTART_COMMAND, destination=destinations or None, reply=True, timeout=2.0,
                                    limit=len(destinations) if destinations else None)
    restarting = []
    for reply in replies or []:
        for hostname, answer in reply.items():
            if "ok" in answer:
                restarting.append(hostname)
                print(f"{hostname}: restarting — it finishes its running tasks first")
            else:
                print(f"{hostname}: {answer.get('error', answer)}")
    if not restarting:
        print("No worker answered." if not replies else "No worker restarted.")
        return 1
    if wait:
        return _wait_back(restarting, asked, timeout)
    return 0


def _wait_back(hostnames: list[str], since: float, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pending = set(hostnames)
    while pending and time.monotonic() < deadline:
        for worker in stats.workers():
            if worker.hostname in pending and worker.started > since:
                print(f"{worker.hostname}: back (pid {worker.pid})")
                pending.discard(worker.hostname)
        time.sleep(0.2)
    for hostname in sorted(pending):
        print(f"{hostname}: not back after {timeout:.0f} s")
    return 1 if pending else 0


def dead(count: int = 20, retry_id: str | None = None) -> int:
    """The newest dead letters; with retry_id, run that job's link again as a new job."""
    if retry_id:
        new_id = pipeline.retry(retry_id)
        if new_id is None:
            print(f"Job {retry_id} cannot be retried: it is unknown, expired, or did not fail.")
            return 1
        print(f"Retried job {retry_id} as job {new_id}.")
        return 0
    client, keys = context.redis_client(), context.keys()
    total = client.llen(keys.dead)
    print(f"Dead letters: {total}" + (f" (newest {count} shown)" if total > count else ""))
    for raw in client.lrange(keys.dead, 0, count - 1):
        letter = json.loads(raw)
        print(f"  {_clock(letter.get('time', 0))}  {letter.get('job_id')}  {letter.get('task')}  "
              f"{letter.get('code')}: {letter.get('error')}")
    return 0
