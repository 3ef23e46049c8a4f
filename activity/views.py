"""Audit report pages and their exports: parse, authorise, select, render (or stream)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_filters import FilterSet
from django_tables2 import RequestConfig, Table
from django_tables2.paginators import LazyPaginator

from audit import services as audit_services
from audit.exports import FORMATS, streaming_response
from audit.models import AuditEvent
from connectors.models import Connector, Identity
from httpapi.client import client_ip

from . import selectors
from .charts import Series, column_chart, hbar_chart
from .filters import (
    ConnectorActivityFilter,
    ConnectorListFilter,
    EventFilter,
    IdentityActivityFilter,
    with_default_period,
)
from .tables import (
    ConnectorEventTable,
    ConnectorTable,
    EventTable,
    IdentityDeviceTable,
    IdentityEventTable,
    IdentityGrantTable,
)

VIEW_ALL = "audit.view_auditevent"
PER_PAGE = 50


def _require_iam(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_ALL):
        raise PermissionDenied("You have no access to the audit trail.")


def _connector_for(request: HttpRequest, pk: int) -> Connector:
    """Return the connector if the user is IAM staff or holds view_connector on it (django-guardian)."""
    connector = get_object_or_404(Connector.objects.select_related("business_owner"), pk=pk)
    user = request.user
    if not (user.has_perm(VIEW_ALL) or user.has_perm("connectors.view_connector", connector)):
        raise PermissionDenied("You have no access to this connector's activity.")
    return connector


def _lazy_table(request: HttpRequest, table: Table, per_page: int = PER_PAGE) -> Table:
    # LazyPaginator fetches one row past the page instead of COUNT(*) over millions of events.
    RequestConfig(request, paginate={"paginator_class": LazyPaginator, "per_page": per_page}).configure(table)
    return table


def _export_links(request: HttpRequest, name: str, *args: object) -> list[tuple[str, str]]:
    query = request.GET.urlencode()
    labels = {"csv": "CSV", "jsonl": "JSON Lines", "ocsf": "OCSF JSON Lines (SIEM)"}
    return [
        (label, reverse(name, args=[*args, fmt]) + (f"?{query}" if query else ""))
        for fmt, label in labels.items()
    ]


def _filters_for_record(filterset: FilterSet) -> dict[str, str]:
    data: QueryDict = filterset.data
    return {name: data.get(name)[:200] for name in filterset.filters if data.get(name)}


def _export(
    request: HttpRequest,
    queryset: QuerySet[AuditEvent],
    fmt: str,
    *,
    scope: str,
    filterset: FilterSet,
    connector: Connector | None = None,
    target: Model | None = None,
) -> StreamingHttpResponse:
    if fmt not in FORMATS:
        raise Http404("Unknown export format.")
    # Recorded before the first byte is sent: an export that fails midway is still on the record.
    exported = audit_services.record(
        "audit.exported",
        actor=request.user,
        connector=connector,
        target=target,
        data={"format": fmt, "scope": scope, "filters": _filters_for_record(filterset)},
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    # A snapshot up to the chain head at the request: rows arriving mid-stream wait for the next one.
    snapshot = queryset.filter(sequence__lt=exported.sequence)
    return streaming_response(snapshot, fmt, scope=scope)


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Answer the three questions with charts and lists (IAM staff)."""
    _require_iam(request)
    data = selectors.dashboard()
    weeks = [w.start.strftime("%d %b") for w in data.weeks]
    charts = {
        "status": hbar_chart(
            "Connectors by status", [(b.label, b.value) for b in data.by_status], css_class="status"
        ),
        "risk": hbar_chart(
            "Connectors by risk", [(b.label, b.value) for b in data.by_risk], css_class="risk"
        ),
        "weeks": column_chart(
            f"Shadow connectors discovered vs connectors sanctioned, per week (last {len(weeks)} weeks)",
            weeks,
            [
                Series("Discovered (shadow)", [w.discovered for w in data.weeks], "shadow"),
                Series("Sanctioned", [w.sanctioned for w in data.weeks], "sanctioned"),
            ],
        ),
    }
    return render(request, "activity/dashboard.html", {"data": data, "charts": charts})


@login_required
@require_GET
def connectors(request: HttpRequest) -> HttpResponse:
    """List connectors with owner, grants and last use; filter e.g. those without an owner."""
    _require_iam(request)
    filterset = ConnectorListFilter(request.GET, queryset=selectors.connectors_list())
    table = ConnectorTable(filterset.qs)
    RequestConfig(request, paginate={"per_page": PER_PAGE}).configure(table)
    return render(request, "activity/connectors.html", {"filter": filterset, "table": table})


def _connector_activity(request: HttpRequest, pk: int) -> tuple[Connector, ConnectorActivityFilter]:
    connector = _connector_for(request, pk)
    filterset = ConnectorActivityFilter(
        with_default_period(request.GET), queryset=selectors.events().filter(connector=connector)
    )
    return connector, filterset


@login_required
@require_GET
def connector_activity(request: HttpRequest, pk: int) -> HttpResponse:
    """Show who used a connector, from which devices, when and for what."""
    connector, filterset = _connector_activity(request, pk)
    is_iam = request.user.has_perm(VIEW_ALL)
    context = {
        "connector": connector,
        "filter": filterset,
        "summary": selectors.activity_summary(filterset.qs),
        "grants": selectors.connector_grant_totals(connector),
        "paths": connector.apps.select_related("source").order_by("source__name", "client_id"),
        "table": _lazy_table(request, ConnectorEventTable(filterset.qs, link_identities=is_iam)),
        "is_iam": is_iam,
        "exports": _export_links(request, "audit:connector_activity_export", connector.pk),
    }
    return render(request, "activity/connector_activity.html", context)


@login_required
@require_GET
def connector_activity_export(request: HttpRequest, pk: int, fmt: str) -> StreamingHttpResponse:
    """Stream one connector's filtered activity as CSV, JSON Lines or OCSF."""
    connector, filterset = _connector_activity(request, pk)
    return _export(
        request,
        filterset.qs,
        fmt,
        scope=f"connector-{connector.pk}",
        filterset=filterset,
        connector=connector,
    )


def _identity_activity(
    request: HttpRequest, pk: int
) -> tuple[Identity, list[Identity], IdentityActivityFilter]:
    """Load the identity and every record of its person: the page and its exports cover the person."""
    _require_iam(request)
    identity = get_object_or_404(
        Identity.objects.select_related("manager", "source", "user", "person", "person__manager"), pk=pk
    )
    records = selectors.person_records(identity)
    filterset = IdentityActivityFilter(
        with_default_period(request.GET), queryset=selectors.events().filter(actor_identity__in=records)
    )
    return identity, records, filterset


@login_required
@require_GET
def identity_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show one person's connectors (their grants), devices and activity (IAM staff)."""
    identity, records, filterset = _identity_activity(request, pk)
    grants = IdentityGrantTable(selectors.identity_grants(records), prefix="g-")
    RequestConfig(request, paginate={"paginator_class": LazyPaginator, "per_page": 25}).configure(grants)
    devices = IdentityDeviceTable(selectors.identity_devices(records), prefix="d-")
    RequestConfig(request, paginate={"paginator_class": LazyPaginator, "per_page": 25}).configure(devices)
    events = IdentityEventTable(filterset.qs, prefix="e-")
    context = {
        "identity": identity,
        "person": identity.person,
        "records": records,
        "filter": filterset,
        "summary": selectors.activity_summary(filterset.qs),
        "grants": grants,
        "devices": devices,
        "table": _lazy_table(request, events),
        "exports": _export_links(request, "audit:identity_export", identity.pk),
    }
    return render(request, "activity/identity.html", context)


@login_required
@require_GET
def identity_export(request: HttpRequest, pk: int, fmt: str) -> StreamingHttpResponse:
    """Stream one identity's filtered activity."""
    identity, _, filterset = _identity_activity(request, pk)
    return _export(
        request, filterset.qs, fmt, scope=f"identity-{identity.pk}", filterset=filterset, target=identity
    )


def _event_search(request: HttpRequest) -> EventFilter:
    _require_iam(request)
    return EventFilter(with_default_period(request.GET), queryset=selectors.events())


@login_required
@require_GET
def events(request: HttpRequest) -> HttpResponse:
    """Search the whole trail by time, connector, identity, device, action and outcome."""
    filterset = _event_search(request)
    table = _lazy_table(request, EventTable(filterset.qs))
    context = {"filter": filterset, "table": table, "exports": _export_links(request, "audit:events_export")}
    return render(request, "activity/events.html", context)


@login_required
@require_GET
def events_export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    """Stream the filtered event search."""
    filterset = _event_search(request)
    return _export(request, filterset.qs, fmt, scope="events", filterset=filterset)
