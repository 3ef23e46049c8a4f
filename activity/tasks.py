"""AI activity background work."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import OperationalError

logger = logging.getLogger(__name__)


@shared_task(name="activity.rollup_usage", max_retries=0, ignore_result=True)
def rollup_usage() -> dict[str, int]:
    """Move grants' and devices' usage times forward from the AI activity recorded since last time."""
    from .usage import SCHEDULED_KEY, usage_rollup

    # Cleared first: a batch that commits while this runs schedules the next roll-up.
    cache.delete(SCHEDULED_KEY)
    try:
        result = usage_rollup()
    except OperationalError:
        # A lock conflict with a sync or a revocation: the slice rolled back with its mark, and the
        # next roll-up (scheduled by the next batch, or beat within a minute) reads it again.
        logger.warning("usage roll-up hit a database conflict; it will be read again", exc_info=True)
        return {"events": 0, "grants": 0, "devices": 0}
    return {"events": result.events, "grants": result.grants, "devices": result.devices}
