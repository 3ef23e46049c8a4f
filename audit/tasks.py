"""Audit trail background work."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from .checkpoints import checkpoint_create
from .witness import WitnessError

logger = logging.getLogger(__name__)


@shared_task(
    name="audit.checkpoint",
    autoretry_for=(OperationalError, WitnessError),
    retry_backoff=True,
    max_retries=5,
)
def checkpoint() -> int:
    """Sign a checkpoint over the chain head once per period (idle periods too); return its id."""
    period = timedelta(minutes=settings.LANYARD_AUDIT_CHECKPOINT_MINUTES)
    # Half a period: a duplicate delivery signs nothing new, the next beat always does.
    return checkpoint_create(unless_since=timezone.now() - period / 2).pk


@shared_task(
    name="audit.checkpoint_now",
    autoretry_for=(OperationalError, WitnessError),
    retry_backoff=True,
    max_retries=5,
)
def checkpoint_now() -> int:
    """Sign the chain head soon after a security-relevant event (see ``services.checkpoint_soon``).

    Signs nothing new when the latest checkpoint already covers the head: a burst of revocations,
    each committing its own task, costs one signature.
    """
    return checkpoint_create(unless_signed=True).pk
