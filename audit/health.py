"""The audit trail's health check and scrape-time metrics: checkpoints signed on time, chain length."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from telemetry.health import DatabaseCheck, ServiceUnavailable, ago


@dataclasses.dataclass
class CheckpointAge(DatabaseCheck):
    """A signed checkpoint covers the chain at least every two checkpoint periods."""

    title = "Audit checkpoint age"

    def probe(self) -> None:
        from .models import AuditCheckpoint

        period = timedelta(minutes=settings.LANYARD_AUDIT_CHECKPOINT_MINUTES)
        last = AuditCheckpoint.objects.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is None:
            raise ServiceUnavailable(
                "No audit checkpoint was ever signed: beat schedules `audit.checkpoint` every "
                f"{ago(period)}; run `manage.py audit_checkpoint` once and check that beat is running."
            )
        age = timezone.now() - last
        if age > 2 * period:
            raise ServiceUnavailable(
                f"Last audit checkpoint {ago(age)} ago (due every {ago(period)}): check beat, the default "
                "queue's workers and the signing key (`manage.py check --deploy`)."
            )


def collect() -> Iterable[Metric]:
    from .models import AuditChainHead, AuditCheckpoint

    head = AuditChainHead.objects.values_list("sequence", flat=True).first() or 0
    yield GaugeMetricFamily("lanyard_audit_chain_length", "Events in the audit hash chain.", value=head)
    last = AuditCheckpoint.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    age = GaugeMetricFamily(
        "lanyard_audit_checkpoint_age_seconds", "Seconds since the last signed checkpoint (absent: none yet)."
    )
    if last is not None:
        age.add_metric([], (timezone.now() - last).total_seconds())
    yield age
