"""Celery: process received SETs, poll the poll-delivery streams, deliver and sweep the outbox."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import OperationalError

from .models import ReceiverStream
from .polling import PollError, poll_stream

logger = logging.getLogger(__name__)


@shared_task(name="signals.poll_streams", max_retries=0)
def poll_streams() -> dict[str, int]:
    """Poll every enabled poll-delivery stream once; a transmitter that fails is logged, not fatal."""
    done = {"streams": 0, "received": 0, "failed": 0}
    for stream in ReceiverStream.objects.select_related("source").filter(
        enabled=True, delivery=ReceiverStream.Delivery.POLL
    ):
        try:
            summary = poll_stream(stream)
        except PollError as exc:
            logger.warning("SSF: %s", exc)
            done["failed"] += 1
            continue
        done["streams"] += 1
        done["received"] += summary.received
    return done


@shared_task(name="signals.process_received", max_retries=0, ignore_result=True)
def process_received() -> dict[str, int]:
    """Act on the received SETs still pending (scheduled on commit by the receiver; beat too)."""
    from .services import SCHEDULED_KEY, received_process_pending

    # Cleared first: a SET stored while this runs schedules the next run.
    cache.delete(SCHEDULED_KEY)
    try:
        done = received_process_pending()
    except OperationalError:
        # A conflict with another writer (SQLite's write lock; a lock timeout): nothing committed,
        # the SETs stay pending for the next run (the next SET's schedule, or beat).
        logger.warning("SSF: processing the received SETs hit a database conflict", exc_info=True)
        return {"processed": 0, "failed": 0, "retry": 0}
    return {"processed": done.processed, "failed": done.failed, "retry": done.retry}


@shared_task(name="signals.deliver_set", max_retries=0)
def deliver_set(outbox_id: int) -> str:
    """Push one outbox SET to its receiver (retries are rescheduled by the service, with backoff)."""
    from .outbox import outbox_deliver

    return outbox_deliver(outbox_id=outbox_id)


@shared_task(name="signals.sweep_outbox", max_retries=0)
def sweep_outbox() -> int:
    """Re-enqueue pending push SETs whose task was lost or whose retry is overdue."""
    from .outbox import enqueue_deliveries, outbox_claim_due

    return enqueue_deliveries(outbox_claim_due())
