"""The Celery app: three queues, reliable delivery settings, configured on first use."""

from __future__ import annotations

from typing import Any

from celery import Celery

from common.settings import Settings, get_settings

QUEUES = ("download", "conversion", "cleanup")
HOLD_SPREAD = 60.0  # jobs held for a rate-limited site start spread over up to this many seconds after it

app = Celery("ytmp3", include=["tasks.stages", "tasks.housekeeping"])


def celery_config(settings: Settings) -> dict[str, Any]:
    # A message not acked within the visibility timeout is delivered again, also while
    # its task still runs: keep it above the longest task plus the longest retry delay
    # (a rate limit's wait is the longest, spread a little).
    longest_wait = max(settings.retry_backoff_max, settings.rate_limit_backoff + HOLD_SPREAD)
    visibility = int(settings.time_limit + longest_wait + 600)
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        # Queues live under the key prefix too, so that two deployments (or test runs) can share a Redis.
        "broker_transport_options": {"visibility_timeout": visibility, "global_keyprefix": settings.key_prefix},
        # No result backend: job state lives in our own records, outcomes travel as task events.
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_acks_on_failure": True,  # a failed stage is told in the job record: never run it again
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_time_limit": settings.time_limit,
        "task_default_queue": "download",
        "task_routes": {
            "tasks.download": {"queue": "download"},
            "tasks.convert": {"queue": "conversion"},
            "tasks.cleanup": {"queue": "cleanup"},
            "tasks.album_gain": {"queue": "cleanup"},  # an album's last step: tags, no encode
        },
        "worker_send_task_events": True,  # Flower and `celery events`: task-failed, task-retried...
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.conf.update(celery_config(get_settings()))
