"""Celery workers and the pipeline; `celery -A tasks worker -Q download` finds `app` here."""

from tasks.celery_app import app

__all__ = ["app"]
