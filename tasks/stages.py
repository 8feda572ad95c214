"""The three Celery tasks: thin wrappers that run a stage for a job id.

Every task is idempotent by job id: a stage that finds its job already past it
(a message delivered twice) does nothing, and one that finds its job cancelled
cleans up and stops the chain.

Their outcomes are Celery's own, so Flower and `celery events` show them: a stage
that fails raises its JobError (task-failed, the error code in the exception), one
that will be tried again is a Celery retry after our backoff (task-retried).  What
users see of a failure (the job record, the dead letter) is written by StageTask's
on_failure hook, fenced by the run's lease; a run that lost its lease, a duplicate
and a cancelled job end as Ignore.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from redis.client import Pipeline
from redis.exceptions import RedisError

from common import alerts, context, metrics
from common.errors import Cancelled, Code, JobError
from common.i18n import N_, Msg
from common.jobs import Job, State, Written, saying
from common.limits import disk_full
from common.settings import Settings, get_settings
from tasks import album, albumgain, interrupt, lifecycle, sitehold
from tasks.album import Expanded
from tasks.celery_app import HOLD_SPREAD, app
from tasks.convert import convert as convert_stage
from tasks.progress import LeaseTaken, StageReporter

log = logging.getLogger(__name__)

ORDER = [State.QUEUED, State.DOWNLOADING, State.CONVERTING, State.CLEANING]

Work = Callable[[Job, Settings, StageReporter], None]
LOST = "tasks.losses:StageRequest"  # sees a pool process die under a stage (by name: loaded in workers only)


class StageTask(Task):
    """The base of the stage tasks: a failure, wherever in the task it was raised, fails the job."""

    Request = LOST
    throws = (JobError,)  # a job's failure is no worker error: Celery logs it in one line, without a traceback

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        error = exc if isinstance(exc, JobError) else JobError(Code.INTERNAL, repr(exc))
        run: StageReporter | None = getattr(self.request, "stage_run", None)
        if run is not None and run.ended is not None:
            run = None  # its last write was made (a retry whose message could not be sent): no run holds the job
        try:
            if lifecycle.fail(args[0], error, self.name, retries=self.request.retries, run=run) is Written.DONE \
                    and error.alert:
                alerts.raise_alert(error.alert)
            if run is not None:
                lifecycle.remove_run_files(args[0], run.token)
        except Exception:  # Redis away: the watchdog takes the stage up again once the lease expires
            log.exception("job %s: its failure could not be recorded", args[0])
        finally:
            if run is not None:
                run.close()


def run_stage(task: Task, job_id: str, state: State, work: Work) -> None:
    settings = get_settings()
    store = context.store()
    job = store.get(job_id)
    if job is None or job.state.finished or ORDER.index(job.state) > ORDER.index(state):
        log.info("job %s: %s skipped, job is %s", job_id, state, job.state if job else "gone")
        raise Ignore
    run = StageReporter(store, job_id, state, settings.progress_interval, settings.heartbeat_timeout)
    timer = StageTimer(state)
    try:
        try:
            run.start(**saying("message", []))
            with timer, interrupt.for_stage(settings.soft_time_limit, settings.time_limit,
                                            functools.partial(_given_up, run, task.name, task.request.retries)):
                work(job, settings, run)
            _ended(run.finish())  # the stage's end, written only by the lease holder: the next one may start
        finally:
            run.stop()
            timer.report()
    except Expanded:
        log.info("job %s: an album, its tracks run as jobs of their own", job_id)
        run.finish()  # the album's job leaves the running set: nothing of it runs now
        raise Ignore from None
    except LeaseTaken:
        log.info("job %s: %s belongs to another run, this one stops", job_id, state)
        run.close()
        lifecycle.remove_run_files(job_id, run.token)
        raise Ignore from None
    except Cancelled:
        log.info("job %s: cancelled during %s", job_id, state)
        run.close()
        lifecycle.remove_files(job_id)
        raise Ignore from None
    except SoftTimeLimitExceeded as error:
        _fail_or_retry(task, job, run, JobError(Code.TIMEOUT, "task time limit"), may_retry=False, cause=error)
    except JobError as error:
        _fail_or_retry(task, job, run, error)
    except Exception as error:  # a bug: the user still hears something clear
        log.exception("job %s: %s crashed", job_id, state)
        _fail_or_retry(task, job, run, JobError(Code.INTERNAL, repr(error)), may_retry=False, cause=error)


def _ended(written: Written) -> None:
    if written is Written.LEASE_LOST:
        raise LeaseTaken
    if written is Written.FINISHED:
        raise Cancelled


def _fail_or_retry(task: Task, job: Job, run: StageReporter, failure: JobError, may_retry: bool = True,
                   cause: BaseException | None = None) -> NoReturn:
    """A stage's error: a Celery retry after a backoff if transient, else the task's failure (StageTask.on_failure)."""
    settings = get_settings()
    if not run.holds_lease():  # a stale run: the job is in other hands, which go on
        log.info("job %s: %s failed in a run that no longer holds the job: %s", job.id, run.state, failure)
        lifecycle.remove_run_files(job.id, run.token)
        raise Ignore
    retries = task.request.retries
    delay = retry_delay(job, failure, retries, settings) if may_retry else None
    if delay is None:
        task.request.stage_run = run  # on_failure fails the job as this run
        raise failure from cause
    log.warning("job %s: %s, retry %d in %.1fs", job.id, failure, retries + 1, delay)
    lifecycle.remove_run_files(job.id, run.token)

    def expect_back(pipe: Pipeline) -> None:  # silent while it waits: the watchdog knows when to expect it
        pipe.zadd(context.keys().running, {job.id: time.time() + delay})

    # Written before the retry is sent, so that a quick retry never meets this run's lease.
    message = _waiting_text(failure, delay, retries + 1, settings.max_retries)
    if run.finish(expect_back, **saying("message", message)) is not Written.DONE:
        raise Ignore  # cancelled, or taken over, meanwhile
    raise task.retry(countdown=delay, max_retries=settings.max_retries, exc=failure)


def _given_up(run: StageReporter, task: str, retries: int) -> None:
    """A stage in a thread that outlived its hard time limit (it did not stop when interrupted): its job fails,
    as the run that holds it (the run, should it ever wake, then finds its lease gone)."""
    lifecycle.fail(run.job_id, JobError(Code.TIMEOUT, "hard time limit"), task, retries=retries, run=run)


class StageTimer:
    """Times a stage's work by outcome (ok, cancelled, error); a copy that lost the lease to another counts nothing."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.outcome = ""
        self.started = self.seconds = 0.0

    def __enter__(self) -> StageTimer:
        self.started = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.seconds = time.monotonic() - self.started
        if kind is None:
            self.outcome = "ok"
        elif issubclass(kind, Cancelled):
            self.outcome = "cancelled"
        elif not issubclass(kind, LeaseTaken):
            self.outcome = "error"

    def report(self) -> None:
        """Observed once the stage is over (lease given back): the job's next step never waits for a metric."""
        if self.outcome:
            metrics.observe("ytmp3_stage_seconds", self.seconds, stage=self.state, outcome=self.outcome)


def retry_delay(job: Job, error: JobError, retries: int, settings: Settings) -> float | None:
    """Seconds until the stage runs again; None when the job fails now.

    A rate limit is not retried soon: its site is held (no download of it starts) for
    RATE_LIMIT_BACKOFF, and this job waits as long. A route failure (bot check, expired
    cookies) has had its other routes tried already; the rest are the link's own fault.
    """
    if retries >= settings.max_retries:
        return None
    if error.code == Code.RATE_LIMITED:
        return sitehold.hold(sitehold.site_of(job.url), settings.rate_limit_backoff)
    if error.transient:
        return backoff(retries, settings.retry_backoff, settings.retry_backoff_max)
    return None


def _waiting_text(error: JobError, delay: float, attempt: int, attempts: int) -> list[Msg]:
    """What the user reads while a failed stage waits for its next try."""
    if error.code == Code.RATE_LIMITED:
        return [Msg.ngettext("The site is limiting the bot's downloads; trying again in about %(n)s minute "
                             "(%(attempt)s of %(attempts)s)…",
                             "The site is limiting the bot's downloads; trying again in about %(n)s minutes "
                             "(%(attempt)s of %(attempts)s)…", _minutes(delay), attempt=attempt, attempts=attempts)]
    return [*error.said, Msg(N_("Trying again (%(attempt)s of %(attempts)s)…"), attempt=attempt, attempts=attempts)]


def _minutes(seconds: float) -> int:
    return max(1, round(seconds / 60))


def wait_for_site(task: Task, job_id: str) -> None:
    """A download whose site is on hold is sent again for when the hold ends (waiting is not a retry:
    the same message, its retry count unchanged, with a countdown) and this run stops."""
    store = context.store()
    job = store.get(job_id)
    if job is None or job.state.finished:
        return  # run_stage skips it
    wait = sitehold.held_for(job.url)
    if wait < 1:
        return
    wait += random.uniform(0, min(HOLD_SPREAD, wait / 10))  # held jobs start one by one, not all at its end
    log.info("job %s: its site is on hold, starting in %.0fs", job_id, wait)
    held = Msg.ngettext("The site is limiting the bot's downloads; starting in about %(n)s minute…",
                        "The site is limiting the bot's downloads; starting in about %(n)s minutes…", _minutes(wait))
    if not store.update_unless_finished(job_id, **saying("message", [held])):
        return
    if job.state != State.QUEUED:  # a retry: the watchdog waits for it as long
        store.redis.zadd(store.keys.running, {job_id: time.time() + wait})
    task.signature_from_request(countdown=wait).apply_async()
    raise Ignore


def backoff(retries: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter in its upper half."""
    delay = min(cap, base * 2**retries)
    return random.uniform(delay / 2, delay)


def _download(job: Job, settings: Settings, run: StageReporter) -> None:
    # yt-dlp (tens of MB once its extractors are in) is loaded by the first download, in the process that
    # runs it: conversion and cleanup workers never hold it.
    from tasks import download as download_stage

    if disk_full(settings):  # refuse early rather than fail halfway
        raise JobError(Code.DISK_FULL)
    if job.entries:  # an album expanded already (its message delivered twice): its tracks run on their own
        raise Expanded
    try:
        download_stage.download(job, settings, lifecycle.workdir(job.id, run.token), run)
    except download_stage.Playlist as found:
        lifecycle.remove_files(job.id)
        if job.parent:  # an album's entry that is a playlist itself: albums don't nest
            raise JobError(Code.PLAYLIST, "a playlist inside a playlist") from None
        album.expand(job, found.info, settings)
        raise Expanded from None
    run.progress(1.0, download_run=run.token)  # the conversion reads this run's folder


def _convert(job: Job, settings: Settings, run: StageReporter) -> None:
    files = convert_stage(job, settings, lifecycle.workdir(job.id, job.download_run),
                          lifecycle.workdir(job.id, run.token), lifecycle.outdir(job.id, run.token), run)
    run.progress(1.0, files=[str(f) for f in files])


def _cleanup(job: Job, settings: Settings, run: StageReporter) -> None:
    if job.parent:  # an album's track: ready with the others, once the album's ReplayGain is known
        lifecycle.wait_for_album(job, run)
    else:
        lifecycle.ready(job.id, run)


@app.task(bind=True, base=StageTask, name="tasks.download")
def download(self: Task, job_id: str) -> None:
    wait_for_site(self, job_id)
    run_stage(self, job_id, State.DOWNLOADING, _download)


@app.task(bind=True, base=StageTask, name="tasks.convert")
def convert(self: Task, job_id: str) -> None:
    run_stage(self, job_id, State.CONVERTING, _convert)


@app.task(bind=True, base=StageTask, name="tasks.cleanup")
def cleanup(self: Task, job_id: str) -> None:
    run_stage(self, job_id, State.CLEANING, _cleanup)



@app.task(name=lifecycle.ALBUM_STEP, autoretry_for=(RedisError,), retry_backoff=True, max_retries=5)
def album_gain(album_id: str) -> None:
    """An album whose tracks are all done: its ReplayGain on each, then they are ready (tasks/albumgain.py)."""
    albumgain.finish(album_id)
