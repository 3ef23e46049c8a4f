"""Usage times in the register, rolled up from the AI activity in the chain.

The ingest API only appends events. Moving ``Grant.last_used_at`` and ``Device.last_seen``
forward happens here, afterwards, from the recorded events themselves:

- one UPDATE per table for a whole slice of the chain, so a grant used a thousand times in a
  minute is written once, and the hot path of a gateway's request writes no register rows;
- a mark (``UsageRollup``) records the last sequence read. The chain head is read after the
  transactions that wrote up to it committed, so every event at or below it is visible; a slice
  that fails rolls back with its mark and is read again next time, so nothing is skipped;
- times only ever move forward, so rolling a slice up twice changes nothing.

Ingest schedules a roll-up a few seconds after a batch commits (one at a time, through the
cache), and beat runs one every minute in case a schedule was lost. The expiry policy rolls up
before it looks for unused grants.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from audit.models import AuditChainHead, AuditEvent, UsageRollup
from connectors.models import Device, Grant
from connectors.queueing import enqueue_once

logger = logging.getLogger(__name__)

SLICE = 50_000
SCHEDULED_KEY = "lanyard:usage-rollup-scheduled"


@dataclass(slots=True)
class RollupResult:
    events: int = 0  # sequence numbers read
    grants: int = 0  # grant rows moved forward
    devices: int = 0  # device rows moved forward
    busy: bool = False  # another roll-up held the mark


def _advance_sql(target: type, field: str, event_field: str) -> str:
    table = target._meta.db_table
    column = target._meta.get_field(field).column
    ref = AuditEvent._meta.get_field(event_field).column
    ingest_key = AuditEvent._meta.get_field("ingest_key").column
    # Our identifiers only; the two sequence bounds are parameters.
    return (
        f"UPDATE {table} SET {column} = used.at "  # noqa: S608
        f"FROM (SELECT {ref} AS id, MAX(occurred_at) AS at FROM {AuditEvent._meta.db_table} "
        f"WHERE sequence > %s AND sequence <= %s AND {ingest_key} IS NOT NULL AND {ref} IS NOT NULL "
        f"GROUP BY {ref}) AS used "
        f"WHERE {table}.id = used.id AND ({table}.{column} IS NULL OR {table}.{column} < used.at)"
    )


def _mark(using: str) -> UsageRollup | None:
    """Lock and return the mark, or None when another roll-up holds it (PostgreSQL only)."""
    rollups = UsageRollup.objects.using(using)
    if connections[using].vendor == "postgresql":
        mark = rollups.select_for_update(skip_locked=True).filter(pk=1).first()
        if mark is not None or rollups.filter(pk=1).exists():
            return mark
    else:
        mark = rollups.filter(pk=1).first()
        if mark is not None:
            return mark
    # First use (and after a test flush): start from the beginning of the chain.
    rollups.bulk_create([UsageRollup(pk=1, sequence=0)], ignore_conflicts=True)
    return rollups.select_for_update().get(pk=1)


def usage_rollup(*, using: str = DEFAULT_DB_ALIAS, max_slices: int | None = None) -> RollupResult:
    """Move usage times forward from the events recorded since the last roll-up; return the counts."""
    result = RollupResult()
    grants_sql = _advance_sql(Grant, "last_used_at", "grant")
    devices_sql = _advance_sql(Device, "last_seen", "device")
    slices = 0
    while max_slices is None or slices < max_slices:
        with transaction.atomic(using=using):
            mark = _mark(using)
            if mark is None:
                result.busy = True
                return result
            head = AuditChainHead.objects.using(using).values_list("sequence", flat=True).first() or 0
            if head <= mark.sequence:
                return result
            upto = min(head, mark.sequence + SLICE)
            with connections[using].cursor() as cursor:
                cursor.execute(grants_sql, [mark.sequence, upto])
                result.grants += cursor.rowcount
                cursor.execute(devices_sql, [mark.sequence, upto])
                result.devices += cursor.rowcount
            result.events += upto - mark.sequence
            mark.sequence, mark.rolled_at = upto, timezone.now()
            mark.save(update_fields=["sequence", "rolled_at"])
        slices += 1
    return result


def schedule_rollup() -> None:
    """Ask a worker for a roll-up in a few seconds, unless one is already asked for."""
    from .tasks import rollup_usage

    delay = settings.LANYARD_USAGE_ROLLUP_SECONDS
    enqueue_once(rollup_usage, SCHEDULED_KEY, hold=delay + 60, countdown=delay)


def on_stale_check_starting(sender, **kwargs) -> None:
    """Roll usage forward before the expiry policy reads it: a grant used a moment ago is not unused."""
    usage_rollup()
