"""Read queries over the register, for views, tables and reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, IntegerField, Q, When
from django.utils import timezone

from .models import Connector, Grant, Identity


@dataclass(frozen=True)
class RegisterSummary:
    connectors_by_status: list[tuple[str, str, int]]  # (status, label, count)
    connectors_total: int
    shadow: int
    without_owner: int
    active_identities_30d: int  # people, not identity records: one human seen in four IdPs counts once
    active_devices_30d: int
    people_total: int = 0


def register_summary(*, days: int = 30) -> RegisterSummary:
    """Return the three questions: what connectors exist, who owns them, who used them lately."""
    # Connectors, not paths: a merged connector is an alias of its survivor and is not counted.
    counts = dict(
        Connector.objects.exclude(status=Connector.Status.MERGED)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    by_status = [
        (value, label, counts.get(value, 0))
        for value, label in Connector.Status.choices
        if value != Connector.Status.MERGED
    ]
    owner = Connector.objects.exclude(status__in=CLOSED_OR_MERGED).aggregate(
        without_owner=Count("id", filter=Q(business_owner__isnull=True))
    )
    since = timezone.now() - timedelta(days=days)
    used = Grant.objects.filter(last_used_at__gte=since).aggregate(
        people=Count(person_key("identity"), distinct=True), devices=Count("device", distinct=True)
    )
    return RegisterSummary(
        connectors_by_status=by_status,
        connectors_total=sum(counts.values()),
        shadow=counts.get(Connector.Status.DISCOVERED, 0),
        without_owner=owner["without_owner"],
        active_identities_30d=used["people"],
        active_devices_30d=used["devices"],
        people_total=people_count(),
    )


CLOSED_OR_MERGED = (Connector.Status.REVOKED, Connector.Status.REJECTED, Connector.Status.MERGED)


def person_key(identity: str = "") -> Case:
    """An expression naming the person behind ``identity`` (a path to an Identity, "" for Identity itself).

    Counting it distinct counts people: an identity linked to a person stands for that person, one
    not linked (yet) for itself. Even numbers are people, odd ones lone identities, so they never
    collide.
    """
    prefix = f"{identity}__" if identity else ""
    return Case(
        When(**{f"{prefix}person__isnull": False}, then=F(f"{prefix}person_id") * 2),
        When(**{f"{prefix}pk__isnull": False}, then=F(f"{prefix}pk") * 2 + 1),
        default=None,
        output_field=IntegerField(),
    )


def people_count() -> int:
    """Return how many people the register knows (identities not linked yet count one each)."""
    return Identity.objects.aggregate(n=Count(person_key(), distinct=True))["n"]


def person_identities(identity_ids: Iterable[int]) -> set[int]:
    """Return the ids of every identity of the same people as the given ones (the given ones included).

    Offboarding calls it to act on a departing person's records in every source.
    """
    ids = set(identity_ids)
    if not ids:
        return set()
    people = Identity.objects.filter(pk__in=ids, person__isnull=False).values("person_id")
    return ids | set(Identity.objects.filter(person_id__in=people).values_list("pk", flat=True))


@dataclass(frozen=True, slots=True)
class Standing:
    """Where an identity stands for offboarding: its own status, or its person's when that is worse."""

    status: str
    since: datetime | None
    # The identity whose status decided (itself, or its person's record in the HR source).
    decided_by: int
    person_wide: bool


_SEVERITY = {Identity.Status.ACTIVE: 0, Identity.Status.SUSPENDED: 1, Identity.Status.DEPROVISIONED: 2}


def identities_standing(identity_ids: Iterable[int] | None = None) -> dict[int, Standing]:
    """Return the standing of the given identities (all when None) and of every identity of their people.

    A person's status is the one its source for HR data reports (``people.hr_order``: the source IAM
    marks authoritative, else the first with manager data): deprovisioned there, every identity of
    the person is leaving, in every source; suspended there, every one is suspended. An identity's
    own worse status (removed from one GitHub organisation) still counts for that identity alone.
    """
    from .people import hr_order

    qs = Identity.objects.all()
    if identity_ids is not None:
        qs = qs.filter(pk__in=person_identities(identity_ids))
    rows = list(qs.order_by().values_list("pk", "person_id", "status", "status_changed_at", "source_id"))
    order = hr_order()
    hr: dict[int, tuple] = {}
    for pk, person_id, status, since, source_id in rows:
        if person_id is None:
            continue
        rank = (order.get(source_id, len(order)), status != Identity.Status.ACTIVE, pk)
        if person_id not in hr or rank < hr[person_id][0]:
            hr[person_id] = (rank, status, since, pk)
    standing: dict[int, Standing] = {}
    for pk, person_id, status, since, _source_id in rows:
        own = Standing(status, since, pk, False)
        if person_id in hr:
            _rank, p_status, p_since, p_pk = hr[person_id]
            if _SEVERITY.get(p_status, 0) > _SEVERITY.get(status, 0):
                own = Standing(p_status, p_since, p_pk, True)
        standing[pk] = own
    return standing
