"""django-filter filter sets for the portal lists."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q, QuerySet

from audit.models import AuditEvent
from connectors.models import Connector, Grant, Risk

from .models import ConnectorRequest


def _search(fields: tuple[str, ...]):
    def method(queryset: QuerySet, name: str, value: str) -> QuerySet:
        q = Q()
        for field in fields:
            q |= Q(**{f"{field}__icontains": value})
        return queryset.filter(q)

    return method


class ConnectorFilter(filters.FilterSet):
    q = filters.CharFilter(label="Search", method="search")
    status = filters.ChoiceFilter(choices=Connector.Status.choices)
    risk = filters.ChoiceFilter(choices=Risk.choices)
    kind = filters.ChoiceFilter(choices=Connector.Kind.choices)

    search = staticmethod(_search(("name", "vendor")))

    class Meta:
        model = Connector
        fields = ["q", "status", "risk", "kind"]


class ShadowFilter(filters.FilterSet):
    q = filters.CharFilter(label="Search", method="search")
    risk = filters.ChoiceFilter(choices=Risk.choices)
    kind = filters.ChoiceFilter(choices=Connector.Kind.choices)

    search = staticmethod(_search(("name", "vendor")))

    class Meta:
        model = Connector
        fields = ["q", "risk", "kind"]


class RequestFilter(filters.FilterSet):
    q = filters.CharFilter(label="Search", method="search")
    status = filters.ChoiceFilter(choices=ConnectorRequest.Status.choices)
    kind = filters.ChoiceFilter(choices=ConnectorRequest.Kind.choices)
    risk = filters.ChoiceFilter(field_name="connector__risk", choices=Risk.choices, label="Risk")

    search = staticmethod(_search(("connector__name", "connector__vendor", "requester__email")))

    class Meta:
        model = ConnectorRequest
        fields = ["q", "status", "kind", "risk"]


class GrantFilter(filters.FilterSet):
    q = filters.CharFilter(label="Search", method="search")
    status = filters.ChoiceFilter(choices=Grant.Status.choices)
    kind = filters.ChoiceFilter(choices=Grant.Kind.choices)

    search = staticmethod(_search(("connector__name", "identity__email", "device__name")))

    class Meta:
        model = Grant
        fields = ["q", "status", "kind"]


class SigninEventFilter(filters.FilterSet):
    """Filters of the IAM security page: which event, which account, from which address."""

    action = filters.ChoiceFilter(label="Event", method="by_action", choices=())
    account = filters.CharFilter(label="Account", method="by_account")
    ip = filters.CharFilter(label="From address", method="by_ip")
    outcome = filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)

    def __init__(self, *args, **kwargs):
        from .signin import ACTIONS

        super().__init__(*args, **kwargs)
        self.filters["action"].extra["choices"] = list(ACTIONS.items())

    def by_action(self, queryset, name, value):
        return queryset.filter(action=value)

    def by_account(self, queryset, name, value):
        return queryset.filter(data__account__icontains=value.strip()[:254])

    def by_ip(self, queryset, name, value):
        return queryset.filter(ip=value.strip()) if _is_ip(value.strip()) else queryset.none()

    class Meta:
        model = AuditEvent
        fields = ["action", "account", "ip", "outcome"]


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
