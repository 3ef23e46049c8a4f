import logging

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(name="governance.heartbeat")
def heartbeat() -> str:
    """Log that the worker and beat are alive."""
    now = timezone.now().isoformat()
    logger.info("Lanyard heartbeat at %s", now)
    return now
