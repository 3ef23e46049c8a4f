"""The Celery application, configured from Django settings (``CELERY_`` namespace)."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lanyard.settings")

logger = logging.getLogger(__name__)

app = Celery("lanyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="lanyard.heartbeat")
def heartbeat() -> str:
    """Log that the worker and beat are alive."""
    from django.utils import timezone

    now = timezone.now().isoformat()
    logger.info("Lanyard heartbeat at %s", now)
    return now
