"""Read queries over the register, for views, tables and reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from .models import Connector, Grant, Identity


@dataclass(frozen=True)
class RegisterSummary:
    connectors_by_status: list[tuple[str, str, int]]  # (status, label, count)
    connectors_total: int
    shadow: int
    without_owner: int
    active_identities_30d: int
    active_devices_30d: int


def register_summary(*, days: int = 30) -> RegisterSummary:
    """Return the three questions: what connectors exist, who owns them, who used them lately."""
    counts = dict(Connector.objects.order_by().values_list("status").annotate(n=Count("id")))
    by_status = [(value, label, counts.get(value, 0)) for value, label in Connector.Status.choices]
    owner = Connector.objects.exclude(
        status__in=[Connector.Status.REVOKED, Connector.Status.REJECTED]
    ).aggregate(without_owner=Count("id", filter=Q(business_owner__isnull=True)))
    since = timezone.now() - timedelta(days=days)
    used = Grant.objects.filter(last_used_at__gte=since).aggregate(
        identities=Count("identity", distinct=True), devices=Count("device", distinct=True)
    )
    return RegisterSummary(
        connectors_by_status=by_status,
        connectors_total=sum(counts.values()),
        shadow=counts.get(Connector.Status.DISCOVERED, 0),
        without_owner=owner["without_owner"],
        active_identities_30d=used["identities"],
        active_devices_30d=used["devices"],
    )


def person_identities(identity_ids: Iterable[int]) -> set[int]:
    """Return the ids of every identity of the same people as the given ones (the given ones included).

    Offboarding calls it to act on a departing person's records in every source.
    """
    ids = set(identity_ids)
    if not ids:
        return set()
    people = Identity.objects.filter(pk__in=ids, person__isnull=False).values("person_id")
    return ids | set(Identity.objects.filter(person_id__in=people).values_list("pk", flat=True))
