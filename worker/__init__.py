"""The worker: Celery tasks, AI providers and the recovery sweep. Never imports ``api``."""

from worker.celery_app import app

__all__ = ["app"]
