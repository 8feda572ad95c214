"""`python -m tasks monitor|watch|task|purge|restart|dead` as subprocesses, against real Redis and real workers.

Queue contents (depth, position, purge) are checked on a private redis-server that
no worker consumes, so that purging touches nothing but this test's messages.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.up import Output, PrivateRedis, free_port
from common import context, stats
from common.jobs import State
from tasks import pipeline
from tests.conftest import ROOT, deliver, origin, start_worker, stop_process, wait_job, wait_until
from tests.media import MediaServer


def run(*args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tasks", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def idle_env(test_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The test environment on a private Redis where no worker runs: submitted jobs stay queued."""
    server = PrivateRedis(free_port())
    server.start(Output(io.StringIO()))
    yield {**test_env, "REDIS_URL": server.url}
    server.stop()


def submit_queued(env: dict[str, str], count: int) -> list[str]:
    code = ("import sys, uuid; from tasks import pipeline\n"
            f"for _ in range({count}): print(pipeline.submit(sys.argv[1] + uuid.uuid4().hex)[0])")
    result = subprocess.run([sys.executable, "-c", code, "http://example.org/video?n="], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


def test_monitor_counts_queued_jobs_when_no_worker_serves_the_queue(idle_env: dict[str, str]) -> None:
    jobs = submit_queued(idle_env, 3)
    result = run("monitor", env=idle_env)
    assert result.returncode == 0, result.stderr
    assert "Workers: 0 online" in result.stdout
    assert "download: 3 waiting, 0 in progress, no worker online: jobs wait safely" in result.stdout
    shown = run("task", jobs[2], env=idle_env)
    assert f"Job {jobs[2]}: queued, 0%" in shown.stdout
    assert "queue position: 2 ahead" in shown.stdout
    assert "queue position: 0 ahead" in run("task", jobs[0], env=idle_env).stdout


def test_purge_asks_first_then_empties_the_queues_and_cancels_their_jobs(idle_env: dict[str, str]) -> None:
    submit_queued(idle_env, 2)
    waiting = int(re.search(r"download: (\d+) waiting", run("monitor", env=idle_env).stdout).group(1))
    assert waiting >= 2
    refused = run("purge", env=idle_env, stdin="n\n")
    assert refused.returncode == 1 and "Nothing purged." in refused.stdout
    assert f"Purge {waiting} waiting message(s) (download {waiting}, conversion 0, cleanup 0)" in refused.stdout
    jobs = submit_queued(idle_env, 1)
    done = run("purge", "--yes", env=idle_env)
    assert done.returncode == 0, done.stderr
    assert f"Purged {waiting + 1} message(s) (download {waiting + 1}, conversion 0, cleanup 0); " \
           f"cancelled {waiting + 1} job(s)." in done.stdout
    assert "download: 0 waiting" in run("monitor", env=idle_env).stdout
    assert f"Job {jobs[0]}: cancelled" in run("task", jobs[0], env=idle_env).stdout
    again = run("purge", "--queue", "download", env=idle_env)
    assert again.returncode == 0 and "Nothing to purge: download is empty." in again.stdout


@pytest.mark.usefixtures("worker")
def test_monitor_shows_workers_and_what_they_run(media: MediaServer) -> None:
    job_id = pipeline.submit(media.url("/slow/10000/opus.webm", n=uuid.uuid4().hex), origin=origin())[0]
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.DOWNLOADING, timeout=20, what="downloading")
    result = run("monitor")
    assert result.returncode == 0, result.stderr
    worker_line = next(line for line in result.stdout.splitlines() if line.startswith("  test-"))
    assert "cleanup, conversion, download, concurrency 2" in worker_line
    assert re.search(rf"test-\w+@\S+: .*running tasks\.download {job_id}", result.stdout), result.stdout
    assert re.search(rf"  {job_id} downloading \d+%", result.stdout)
    assert "Dead letters:" in result.stdout and "Disk: temp" in result.stdout
    assert wait_job(job_id).state == State.READY
    deliver(job_id)


@pytest.mark.usefixtures("worker")
def test_task_shows_the_record_and_history(media: MediaServer) -> None:
    url = media.register_page(f"mon-{uuid.uuid4().hex[:6]}", title="Monitor <Song> & co")
    job = wait_job(pipeline.submit(url, origin=origin())[0])
    result = run("task", job.id)
    assert result.returncode == 0
    out = result.stdout
    assert f"Job {job.id}: ready, 100%" in out
    assert "  title: Monitor <Song> & co" in out and f"  url: {url}" in out
    assert '"platform": "test"' in out.split("Requested by:")[1].splitlines()[0]
    history = out.split("History:")[1]
    assert history.index('"state": "queued"') < history.index('"state": "downloading"') \
        < history.index('"state": "converting"') < history.index('"state": "ready"')
    deliver(job.id)
    missing = run("task", "nosuchjob")
    assert missing.returncode == 1 and "No job nosuchjob" in missing.stdout


@pytest.mark.usefixtures("worker")
def test_dead_lists_letters_and_retries_a_job(media: MediaServer) -> None:
    key = uuid.uuid4().hex
    failed = wait_job(pipeline.submit(media.url(f"/flaky/4/{key}/opus.webm"), origin=origin())[0])
    assert failed.state == State.FAILED
    listed = run("dead", "-n", "50")
    assert listed.returncode == 0
    assert re.search(rf"^  \S+ \S+  {failed.id}  tasks\.download  server: ", listed.stdout, re.M), listed.stdout
    retried = run("dead", "--retry", failed.id)
    assert retried.returncode == 0, retried.stderr
    new_id = re.search(rf"Retried job {failed.id} as job (\w+)\.", retried.stdout).group(1)
    assert new_id != failed.id
    assert wait_job(new_id).state == State.READY  # the fifth request gets the file
    deliver(new_id)
    requesters = [[o["id"] for o in context.store().origins(j)] for j in (new_id, failed.id)]
    assert requesters[0] == requesters[1]  # the same requesters get the new job
    refused = run("dead", "--retry", new_id)
    assert refused.returncode == 1 and "cannot be retried" in refused.stdout


@pytest.mark.usefixtures("worker")
def test_watch_draws_the_figures_and_stops_after_iterations() -> None:
    result = run("watch", "--iterations", "2", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    assert "(Ctrl-C to quit)" in result.stdout and "Workers: " in result.stdout and "Queues:" in result.stdout


@pytest.mark.usefixtures("worker")
def test_watch_redraws_in_place_on_a_terminal_until_ctrl_c() -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tasks", "watch", "--interval", "0.2"], cwd=ROOT,
                            stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "120"})
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(b"Workers: ") < 3 and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 65536)
        assert seen.count(b"Workers: ") >= 3, seen[-2000:]
        assert b"\x1b[" in seen  # cursor movement: redrawn in place, not appended
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


@pytest.mark.slow
def test_restart_brings_a_worker_back_through_remote_control(test_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    queue = f"restartq-{uuid.uuid4().hex[:6]}"
    proc = start_worker(test_env, log, name="restart", queues=queue, concurrency=1)
    try:
        worker = wait_until(lambda: next((w for w in stats.workers() if queue in w.queues), None), timeout=10,
                            what="presence")
        result = run("restart", "-d", worker.hostname, "--wait", "--timeout", "60", timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{worker.hostname}: restarting" in result.stdout
        assert f"{worker.hostname}: back (pid {proc.pid})" in result.stdout  # the same process, run again
        assert proc.poll() is None
        assert log.read_text().count(" ready.") == 2
        assert "restart requested through remote control" in log.read_text()
        again = next(w for w in stats.workers() if w.hostname == worker.hostname)
        assert again.started > worker.started
        nobody = run("restart", "-d", "nobody@nowhere")
        assert nobody.returncode == 1 and "No worker answered." in nobody.stdout
    finally:
        stop_process(proc)


def test_commands_say_when_redis_does_not_answer(test_env: dict[str, str]) -> None:
    result = run("monitor", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.returncode == 1
    assert "does not answer" in result.stderr and "Traceback" not in result.stderr
