"""A stage whose pool process died under it while the worker lived on: the OOM killer's SIGKILL, a crash.

The worker's main process sees it (Celery's WorkerLostError) and, with ``reject_on_worker_lost``,
puts the message back; the copy that comes back meets the lease the dead process still holds and
stops, and the watchdog sends the stage again once that lease has expired. A job that kills its
worker process every time would go round until the watchdog gives up, each round costing a worker
and its memory: the second loss fails it, with a text that says why.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo
from celery.exceptions import WorkerLostError
from celery.worker.request import Request

from common import context
from common.errors import Code, JobError
from tasks import lifecycle

log = logging.getLogger(__name__)

MAX_LOSSES = 2


class StageRequest(Request):
    """A stage's request, as the worker's main process keeps it while a pool process runs the stage."""

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        error = getattr(exc_info.exception, "exc", exc_info.exception)  # unwrapped from ExceptionWithTraceback
        if isinstance(error, WorkerLostError) and self.args:
            try:
                lost(str(self.args[0]), self.name, str(error))
            except Exception:  # Redis away: the watchdog still takes the stage up, and counts it
                log.exception("job %s: could not count the loss of its worker process", self.args[0])
        return super().on_failure(exc_info, send_failed_event, return_ok)


def lost(job_id: str, task: str, detail: str) -> None:
    """Count a pool process that died under the job's stage; fail the job at the MAX_LOSSES-th."""
    store = context.store()
    job = store.get(job_id)
    if job is None or job.state.finished:
        return
    losses = job.losses + 1
    log.warning("job %s: its worker process died in %s (%s), loss %d of %d", job_id, task, detail, losses,
                MAX_LOSSES)
    store.update(job_id, losses=losses)
    if losses >= MAX_LOSSES:
        # The lease is still the dead process's: whoever holds it, the job ends here.
        lifecycle.fail(job_id, JobError(Code.OUT_OF_MEMORY, f"{detail} ({losses} times)"), task, lease=None)
