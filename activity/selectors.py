"""Read queries for the audit reports: the dashboard, activity pages, event search and exports.

Every selector here runs a fixed number of aggregate queries whatever the size of the trail, and
each leans on an existing index: audit events on (connector|actor_identity|device|action,
-occurred_at) and (-occurred_at); grants on (connector, status) and (status, last_used_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, Max, OuterRef, Q, QuerySet, StringAgg, Subquery, Value, Window
from django.db.models.functions import TruncWeek
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Connector, ConnectorApp, Device, Grant, Identity, Risk
from connectors.selectors import people_count, person_key

# What counts as "use" of a connector: AI gateway events and IdP-derived token/sign-in activity.
ACTIVITY_Q = Q(action__startswith="ai.") | Q(action__startswith="token.") | Q(action="signin")
CLOSED_STATUSES = (Connector.Status.REVOKED, Connector.Status.REJECTED)


@dataclass(frozen=True)
class Bar:
    key: str
    label: str
    value: int


@dataclass(frozen=True)
class Week:
    start: date
    discovered: int
    sanctioned: int


@dataclass(frozen=True)
class TopConnector:
    id: int
    name: str
    status: str
    identities: int
    devices: int
    last_used_at: datetime | None

    @property
    def status_label(self) -> str:
        return Connector.Status(self.status).label


@dataclass(frozen=True)
class UnmanagedDevice:
    id: int
    name: str
    platform: str
    owner_email: str
    last_activity_at: datetime | None
    active_grants: int


@dataclass(frozen=True)
class Dashboard:
    by_status: list[Bar]
    by_risk: list[Bar]
    total: int
    shadow: int
    sanctioned: int
    without_owner: int
    weeks: list[Week]
    top_connectors: list[TopConnector]
    unmanaged_devices_total: int
    unmanaged_devices: list[UnmanagedDevice]
    days: int
    people: int = 0  # people known to the register, each counted once across identity providers


def _week_start(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def _as_date(value: datetime | date) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value


def connector_counts() -> dict[str, int]:
    """Return connector counts by status, by risk and without an owner, in one aggregate query.

    A merged connector is an alias of the one it was merged into: it is not counted.
    """
    aggregates = {f"status_{value}": Count("id", filter=Q(status=value)) for value in Connector.Status.values}
    aggregates |= {f"risk_{value}": Count("id", filter=Q(risk=value)) for value in Risk.values}
    aggregates["without_owner"] = Count(
        "id", filter=Q(business_owner__isnull=True) & ~Q(status__in=CLOSED_STATUSES)
    )
    aggregates["total"] = Count("id")
    return Connector.objects.exclude(status=Connector.Status.MERGED).order_by().aggregate(**aggregates)


def shadow_vs_sanctioned_by_week(*, weeks: int = 12, now: datetime | None = None) -> list[Week]:
    """Return, per week, connectors discovered as shadow and connectors that became sanctioned.

    Discovered comes from ``Connector.discovered_at``; sanctioned counts connectors now approved,
    active or suspended whose ``status_changed_at`` falls in the week (two grouped queries).
    """
    now = now or timezone.now()
    first = _week_start(now) - timedelta(weeks=weeks - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    week = TruncWeek("discovered_at", tzinfo=UTC)
    discovered = {
        _as_date(row["week"]): row["n"]
        for row in Connector.objects.filter(discovered_at__gte=start)
        .annotate(week=week)
        .order_by()
        .values("week")
        .annotate(n=Count("id"))
    }
    week = TruncWeek("status_changed_at", tzinfo=UTC)
    sanctioned = {
        _as_date(row["week"]): row["n"]
        for row in Connector.objects.filter(status__in=Connector.SANCTIONED, status_changed_at__gte=start)
        .annotate(week=week)
        .order_by()
        .values("week")
        .annotate(n=Count("id"))
    }
    days = [first + timedelta(weeks=i) for i in range(weeks)]
    return [Week(d, discovered.get(d, 0), sanctioned.get(d, 0)) for d in days]


def top_connectors_by_use(
    *, days: int = 30, limit: int = 10, now: datetime | None = None
) -> list[TopConnector]:
    """Return the connectors with the most people (then devices) using them in the window.

    Read from ``Grant.last_used_at`` (kept current by syncs and AI ingest), so the cost grows with
    the number of grants, not with the number of audit events: one grouped query.
    """
    since = (now or timezone.now()) - timedelta(days=days)
    rows = (
        Grant.objects.filter(last_used_at__gte=since)
        .order_by()
        .values("connector_id", "connector__name", "connector__status")
        .annotate(
            identities=Count(person_key("identity"), distinct=True),
            devices=Count("device_id", distinct=True),
            last=Max("last_used_at"),
        )
        .order_by("-identities", "-devices", "connector__name")[:limit]
    )
    return [
        TopConnector(
            id=r["connector_id"],
            name=r["connector__name"],
            status=r["connector__status"],
            identities=r["identities"],
            devices=r["devices"],
            last_used_at=r["last"],
        )
        for r in rows
    ]


def unmanaged_devices_using_ai(
    *, days: int = 30, limit: int = 20, now: datetime | None = None
) -> tuple[int, list[UnmanagedDevice]]:
    """Return how many unmanaged devices showed activity in the window, and the latest ones, in one query.

    Activity is any audit event carrying the device (AI gateway calls and IdP sign-ins/tokens are
    the events that carry one). Each device costs one index-only probe of (device, -occurred_at),
    so the query grows with unmanaged devices, not with events; a window count gives the total.
    """
    since = (now or timezone.now()) - timedelta(days=days)
    last_activity = Subquery(
        AuditEvent.objects.filter(device=OuterRef("pk")).order_by("-occurred_at").values("occurred_at")[:1]
    )
    active_grants = Subquery(
        Grant.objects.filter(device=OuterRef("pk"), status=Grant.Status.ACTIVE)
        .order_by()
        .values("device")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    rows = list(
        Device.objects.filter(managed=False)
        .annotate(last_activity=last_activity)
        .filter(last_activity__gte=since)
        .values("id", "name", "external_id", "platform", "owner__email", "last_activity")
        .annotate(grant_count=active_grants, total=Window(Count("id")))
        .order_by("-last_activity", "name")[:limit]
    )
    return (rows[0]["total"] if rows else 0), [
        UnmanagedDevice(
            id=r["id"],
            name=r["name"] or r["external_id"],
            platform=r["platform"],
            owner_email=r["owner__email"] or "",
            last_activity_at=r["last_activity"],
            active_grants=r["grant_count"] or 0,
        )
        for r in rows
    ]


def dashboard(*, days: int = 30, weeks: int = 12, now: datetime | None = None) -> Dashboard:
    """Return everything the audit dashboard shows, in six aggregate queries."""
    now = now or timezone.now()
    counts = connector_counts()
    by_status = [
        Bar(v, label, counts[f"status_{v}"])
        for v, label in Connector.Status.choices
        if v != Connector.Status.MERGED
    ]
    by_risk = [Bar(v, label, counts[f"risk_{v}"]) for v, label in Risk.choices]
    unmanaged_total, unmanaged = unmanaged_devices_using_ai(days=days, now=now)
    return Dashboard(
        by_status=by_status,
        by_risk=by_risk,
        total=counts["total"],
        shadow=counts[f"status_{Connector.Status.DISCOVERED}"],
        sanctioned=sum(counts[f"status_{s}"] for s in Connector.SANCTIONED),
        without_owner=counts["without_owner"],
        weeks=shadow_vs_sanctioned_by_week(weeks=weeks, now=now),
        top_connectors=top_connectors_by_use(days=days, now=now),
        unmanaged_devices_total=unmanaged_total,
        unmanaged_devices=unmanaged,
        days=days,
        people=people_count(),
    )


def events() -> QuerySet[AuditEvent]:
    """Return audit events newest first with what the event tables show joined in."""
    return AuditEvent.objects.select_related("actor_identity", "device", "connector").order_by(
        "-occurred_at", "-sequence"
    )


@dataclass(frozen=True)
class ActivitySummary:
    events: int
    identities: int
    devices: int
    last_used_at: datetime | None
    top_identities: list[dict]
    top_devices: list[dict]


def activity_summary(queryset: QuerySet[AuditEvent], *, limit: int = 5) -> ActivitySummary:
    """Summarise filtered events: counts, distinct identities and devices, last use, top users (5 queries)."""
    qs = queryset.order_by()
    totals = qs.aggregate(
        events=Count("*"),
        identities=Count("actor_identity_id", distinct=True),
        devices=Count("device_id", distinct=True),
        last=Max("occurred_at", filter=ACTIVITY_Q),
    )
    # Group on the bare ids first and join the few winners after: joining identities or devices
    # before grouping would read the whole table and defeat an index-only scan of the events.
    top_identities = list(
        qs.filter(actor_identity__isnull=False)
        .values("actor_identity_id")
        .annotate(n=Count("*"), last=Max("occurred_at"))
        .order_by("-n", "actor_identity_id")[:limit]
    )
    identities = Identity.objects.only("email", "name").in_bulk(
        [r["actor_identity_id"] for r in top_identities]
    )
    for r in top_identities:
        identity = identities.get(r["actor_identity_id"])
        r["email"], r["name"] = (identity.email, identity.name) if identity else ("", "")
    top_devices = list(
        qs.filter(device__isnull=False)
        .values("device_id")
        .annotate(n=Count("*"), last=Max("occurred_at"))
        .order_by("-n", "device_id")[:limit]
    )
    devices = Device.objects.only("name", "external_id", "platform", "managed").in_bulk(
        [r["device_id"] for r in top_devices]
    )
    for r in top_devices:
        device = devices.get(r["device_id"])
        r["name"] = (device.name or device.external_id) if device else str(r["device_id"])
        r["platform"], r["managed"] = (device.platform, device.managed) if device else ("", None)
    return ActivitySummary(
        events=totals["events"],
        identities=totals["identities"],
        devices=totals["devices"],
        last_used_at=totals["last"],
        top_identities=top_identities,
        top_devices=top_devices,
    )


def connector_grant_totals(connector: Connector) -> dict[str, int | datetime | None]:
    """Return a connector's grant counts (active, all) and the last use any grant reports."""
    return Grant.objects.filter(connector=connector).aggregate(
        active=Count("id", filter=Q(status=Grant.Status.ACTIVE)),
        total=Count("id"),
        holders=Count(person_key("identity"), distinct=True, filter=Q(status=Grant.Status.ACTIVE)),
        last_used_at=Max("last_used_at"),
    )


def person_records(identity: Identity) -> list[Identity]:
    """Return every identity (source record) of the identity's person, this one first, in one query."""
    if identity.person_id is None:
        return [identity]
    others = (
        Identity.objects.filter(person_id=identity.person_id)
        .exclude(pk=identity.pk)
        .select_related("source")
        .order_by("source__name", "pk")
    )
    return [identity, *others]


def identity_grants(identity: Identity | list[Identity]) -> QuerySet[Grant]:
    """Return the grants of an identity (or of several: one person's records), most recently used first."""
    records = identity if isinstance(identity, list) else [identity]
    return (
        Grant.objects.filter(identity__in=records)
        .select_related("connector", "device")
        .order_by("status", "-last_used_at", "pk")
    )


def identity_devices(identity: Identity | list[Identity]) -> QuerySet[Device]:
    """Return devices the identity (or person's records) owns or was seen using, with the last use of each."""
    records = identity if isinstance(identity, list) else [identity]
    seen = AuditEvent.objects.filter(actor_identity__in=records, device__isnull=False).values("device_id")
    last = Subquery(
        AuditEvent.objects.filter(actor_identity__in=records, device=OuterRef("pk"))
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    return (
        Device.objects.filter(Q(owner__in=records) | Q(pk__in=seen))
        .annotate(last_activity=last)
        .order_by("-managed", "name", "pk")
    )


def connectors_list() -> QuerySet[Connector]:
    """Return connectors (merged aliases left out) with owner, paths, active grants and last use."""
    grants = Grant.objects.filter(connector=OuterRef("pk")).order_by().values("connector")
    paths = (
        ConnectorApp.objects.filter(connector=OuterRef("pk"))
        .order_by()
        .values("connector")
        .annotate(names=StringAgg("source__name", delimiter=Value(", ")))
        .values("names")[:1]
    )
    return (
        Connector.objects.exclude(status=Connector.Status.MERGED)
        .select_related("business_owner")
        .annotate(
            paths=Subquery(paths),
            active_grants=Subquery(
                grants.filter(status=Grant.Status.ACTIVE).annotate(n=Count("id")).values("n")[:1]
            ),
            last_used_at=Subquery(grants.annotate(m=Max("last_used_at")).values("m")[:1]),
        )
        .order_by("name", "pk")
    )
