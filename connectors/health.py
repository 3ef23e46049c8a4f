"""The register's health checks and scrape-time metrics: syncs on time, revocations flowing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from telemetry.health import DatabaseCheck, ServiceUnavailable, ServiceWarning, ago


@dataclasses.dataclass
class SyncFreshness(DatabaseCheck):
    """Each enabled source synced successfully within twice its interval (plus the beat's minute)."""

    title = "Identity-source syncs on time"

    def probe(self) -> None:
        from .models import IdentitySource

        now = timezone.now()
        late = []
        for source in IdentitySource.objects.filter(enabled=True).order_by("name"):
            allowed = 2 * source.sync_interval + timedelta(minutes=1)
            if source.last_success_at is None:
                late.append(f"'{source.name}' has never synced successfully")
            elif now - source.last_success_at > allowed:
                late.append(
                    f"'{source.name}' last synced successfully {ago(now - source.last_success_at)} ago "
                    f"(interval {ago(source.sync_interval)})"
                )
        if late:
            raise ServiceUnavailable(
                "; ".join(late) + ". Open the source's sync runs in the admin for the error, fix its "
                "credentials or permissions, and check that a worker consumes the `sync` queue."
            )


def _stuck_after() -> timedelta:
    return timedelta(minutes=settings.LANYARD_REVOKE_SWEEP_MINUTES)


@dataclasses.dataclass
class RevocationsFlowing(DatabaseCheck):
    """No grant stays `revoking` longer than the sweep period."""

    title = "Revocations completing"

    def probe(self) -> None:
        from .models import Grant

        now = timezone.now()
        stuck = Grant.objects.filter(
            status=Grant.Status.REVOKING, revoke_requested_at__lt=now - _stuck_after()
        ).aggregate(n=Count("pk"), oldest=Min("revoke_requested_at"))
        if stuck["n"]:
            error = (
                Grant.objects.filter(status=Grant.Status.REVOKING, revoke_requested_at=stuck["oldest"])
                .values_list("revoke_error", flat=True)
                .first()
            )
            raise ServiceWarning(
                f"{stuck['n']} grant(s) still revoking after the {ago(_stuck_after())} sweep period, the "
                f"oldest for {ago(now - stuck['oldest'])}"
                + (f" (last IdP error: {error[:200]})" if error else "")
                + ". Check that a worker consumes the `revoke` queue and that the IdP credentials may revoke."
            )


def collect() -> Iterable[Metric]:
    from .models import Grant, IdentitySource

    pending = GaugeMetricFamily(
        "lanyard_revocations_pending", "Grants revoking now, and those past the sweep period.", labels=["age"]
    )
    now = timezone.now()
    counts = Grant.objects.filter(status=Grant.Status.REVOKING).aggregate(
        all=Count("pk"), stuck=Count("pk", filter=_q_stuck(now))
    )
    pending.add_metric(["any"], counts["all"])
    pending.add_metric(["past_sweep"], counts["stuck"])
    yield pending
    age = GaugeMetricFamily(
        "lanyard_sync_last_success_age_seconds",
        "Seconds since each enabled source's last successful sync.",
        labels=["source_kind", "source"],
    )
    interval = GaugeMetricFamily(
        "lanyard_sync_interval_seconds",
        "Each enabled source's sync interval.",
        labels=["source_kind", "source"],
    )
    for kind, name, last, every in IdentitySource.objects.filter(enabled=True).values_list(
        "kind", "name", "last_success_at", "sync_interval"
    ):
        if last is not None:
            age.add_metric([kind, name], (now - last).total_seconds())
        interval.add_metric([kind, name], every.total_seconds())
    yield age
    yield interval


def _q_stuck(now):
    from django.db.models import Q

    return Q(revoke_requested_at__lt=now - _stuck_after())
