"""django-filter sets for the audit pages and their exports (the same filters drive both)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Connector, Device, Identity, Risk

from .selectors import ACTIVITY_Q, CLOSED_STATUSES

PERIODS = [
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("365d", "Last year"),
    ("all", "All time"),
]
PERIOD_DELTAS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
}
DEFAULT_PERIOD = "30d"


def with_default_period(params: QueryDict) -> QueryDict:
    """Return the query with the default period applied when neither a period nor dates are given."""
    data = params.copy()
    if not data.get("period") and not data.get("after") and not data.get("before"):
        data["period"] = DEFAULT_PERIOD
    return data


class DateInput(forms.DateInput):
    input_type = "date"


class EventFilter(django_filters.FilterSet):
    period = django_filters.ChoiceFilter(
        choices=PERIODS, method="filter_period", empty_label="Custom: From and Until below"
    )
    after = django_filters.DateFilter(method="filter_after", label="From", widget=DateInput)
    before = django_filters.DateFilter(method="filter_before", label="Until", widget=DateInput)
    # Text, not a <select>: a register of thousands of connectors would render thousands of options.
    connector = django_filters.CharFilter(method="filter_connector", label="Connector (name or id)")
    identity = django_filters.CharFilter(method="filter_identity", label="Identity (email or id)")
    device = django_filters.CharFilter(method="filter_device", label="Device (name or id)")
    action = django_filters.CharFilter(method="filter_action", label="Action (ai. for a prefix)")
    kind = django_filters.ChoiceFilter(
        choices=[("activity", "AI and sign-in activity"), ("governance", "Governance changes")],
        method="filter_kind",
        empty_label="All events",
        label="Kind",
    )
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices, empty_label="Any outcome")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_period(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        delta = PERIOD_DELTAS.get(value)
        return queryset.filter(occurred_at__gte=timezone.now() - delta) if delta else queryset

    # Whole UTC days, compared as datetimes so that the (…, -occurred_at) indexes stay usable.
    def filter_after(self, queryset: QuerySet, name: str, value: date) -> QuerySet:
        return queryset.filter(occurred_at__gte=datetime.combine(value, time.min, tzinfo=UTC))

    def filter_before(self, queryset: QuerySet, name: str, value: date) -> QuerySet:
        end = datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)
        return queryset.filter(occurred_at__lt=end)

    def filter_connector(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if value.isdigit():
            return queryset.filter(connector_id=int(value))
        return queryset.filter(connector__in=Connector.objects.filter(name__iexact=value).values("pk"))

    def filter_identity(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if value.isdigit():
            return queryset.filter(actor_identity_id=int(value))
        return queryset.filter(actor_identity__in=Identity.objects.filter(email__iexact=value).values("pk"))

    def filter_device(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if value.isdigit():
            return queryset.filter(device_id=int(value))
        matching = Device.objects.filter(Q(name__iexact=value) | Q(external_id=value)).values("pk")
        return queryset.filter(device__in=matching)

    def filter_action(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if value.endswith((".", "*")):
            return queryset.filter(action__startswith=value.rstrip("*"))
        return queryset.filter(action=value)

    def filter_kind(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "activity":
            return queryset.filter(ACTIVITY_Q)
        return queryset.exclude(ACTIVITY_Q)


class ConnectorActivityFilter(EventFilter):
    """The event filters on one connector's page: the connector is fixed by the URL."""

    connector = None


class IdentityActivityFilter(EventFilter):
    """The event filters on one identity's page: the identity is fixed by the URL."""

    identity = None


class ConnectorListFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    status = django_filters.ChoiceFilter(choices=Connector.Status.choices, empty_label="Any status")
    risk = django_filters.ChoiceFilter(choices=Risk.choices, empty_label="Any risk")
    owner = django_filters.ChoiceFilter(
        choices=[("none", "Without an owner (open)"), ("set", "With an owner")],
        method="filter_owner",
        empty_label="Owner: any",
        label="Owner",
    )

    class Meta:
        model = Connector
        fields: list[str] = []

    def filter_owner(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "none":
            return queryset.filter(business_owner__isnull=True).exclude(status__in=CLOSED_STATUSES)
        return queryset.filter(business_owner__isnull=False)
