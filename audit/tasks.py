"""Audit trail background work."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError
from django.utils import timezone

from .checkpoints import checkpoint_create

logger = logging.getLogger(__name__)


@shared_task(
    name="audit.checkpoint",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def checkpoint() -> int:
    """Sign a checkpoint over the chain head once per period (idle periods too); return its id."""
    period = timedelta(minutes=settings.LANYARD_AUDIT_CHECKPOINT_MINUTES)
    # Half a period: a duplicate delivery signs nothing new, the next beat always does.
    return checkpoint_create(unless_since=timezone.now() - period / 2).pk


@shared_task(name="audit.rollup_usage", max_retries=0, ignore_result=True)
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
