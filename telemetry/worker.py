"""The Celery side: structured logging in workers and beat, task metrics, multiprocess clean-up."""

from __future__ import annotations

import logging.config
import os
import time
from typing import Any

from celery import Celery, signals

from . import metrics

_started: dict[str, float] = {}


def install(app: Celery) -> None:
    """Wire a Celery app: Django's LOGGING instead of Celery's, django-structlog's task context, metrics."""
    from django_structlog.celery.steps import DjangoStructLogInitStep

    app.steps["worker"].add(DjangoStructLogInitStep)

    @signals.setup_logging.connect(weak=False)
    def _setup_logging(**kwargs: Any) -> None:
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id: str | None = None, **kwargs: Any) -> None:
        if task_id:
            _started[task_id] = time.perf_counter()

    @signals.task_postrun.connect(weak=False)
    def _postrun(
        task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any
    ) -> None:
        name = getattr(task, "name", "unknown")
        start = _started.pop(task_id or "", None)
        if start is not None:
            metrics.TASK_DURATION.labels(name).observe(time.perf_counter() - start)
        metrics.TASKS.labels(name, state or "UNKNOWN").inc()

    @signals.worker_process_shutdown.connect(weak=False)
    def _process_gone(pid: int | None = None, **kwargs: Any) -> None:
        metrics.mark_process_dead(pid or os.getpid())
