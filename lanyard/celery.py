"""The Celery application, configured from Django settings (``CELERY_`` namespace)."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lanyard.settings")

logger = logging.getLogger(__name__)

app = Celery("lanyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Structured logs with the task id (and the queuing request's id), task metrics, multiprocess clean-up.
from telemetry.worker import install  # noqa: E402

install(app)


@app.task(name="lanyard.heartbeat")
def heartbeat() -> str:
    """Record (for the "beat alive" health check) and log that beat and a worker are alive."""
    from telemetry.health import heartbeat_record

    now = heartbeat_record().isoformat()
    logger.info("Lanyard heartbeat at %s", now)
    return now
