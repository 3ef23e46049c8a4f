"""The transmitter's health check and scrape-time metrics: Lanyard's own SETs leave the outbox."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from telemetry.health import DatabaseCheck, ServiceUnavailable, ServiceWarning, ago


def _overdue_after() -> timedelta:
    """A pending SET due longer than two sweep periods ago has been missed by the workers and the sweep."""
    return timedelta(seconds=2 * settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS)


def _counts(now):
    from .models import OutboxSet, TransmitterStream

    live = Q(stream__status=TransmitterStream.Status.ENABLED)
    pending = Q(state=OutboxSet.State.PENDING)
    return OutboxSet.objects.filter(pending | Q(state=OutboxSet.State.DEAD)).aggregate(
        pending=Count("pk", filter=pending),
        overdue=Count("pk", filter=pending & live & Q(next_attempt_at__lt=now - _overdue_after())),
        oldest=Min("created_at", filter=pending & live),
        dead=Count("pk", filter=Q(state=OutboxSet.State.DEAD)),
    )


@dataclasses.dataclass
class SignalsOutbox(DatabaseCheck):
    """No SET for an enabled stream waits past its due time by two sweeps; dead SETs are shown."""

    title = "Shared Signals outbox"

    def probe(self) -> None:
        now = timezone.now()
        counts = _counts(now)
        if counts["overdue"]:
            raise ServiceUnavailable(
                f"{counts['overdue']} SET(s) for enabled streams are overdue by more than "
                f"{ago(_overdue_after())}, the oldest written {ago(now - counts['oldest'])} ago: check "
                "that a worker consumes the `default` queue and that beat runs the outbox sweep."
            )
        if counts["dead"]:
            raise ServiceWarning(
                f"{counts['dead']} SET(s) are dead (their receiver refused them or stayed unreachable): see "
                "Shared Signals → Outbox in the admin for the error, fix the receiver, then replay them."
            )


def collect() -> Iterable[Metric]:
    now = timezone.now()
    counts = _counts(now)
    sets = GaugeMetricFamily(
        "lanyard_ssf_outbox_sets", "SETs Lanyard owes its receivers, by state.", labels=["state"]
    )
    sets.add_metric(["pending"], counts["pending"])
    sets.add_metric(["overdue"], counts["overdue"])
    sets.add_metric(["dead"], counts["dead"])
    yield sets
    oldest = GaugeMetricFamily(
        "lanyard_ssf_outbox_oldest_pending_seconds",
        "Age of the oldest pending SET for an enabled stream (0 when none waits).",
    )
    oldest.add_metric([], (now - counts["oldest"]).total_seconds() if counts["oldest"] else 0.0)
    yield oldest
