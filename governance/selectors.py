"""Read queries for the portal pages: each one scoped with joins, never with lists of ids.

An owner's connectors and inbox are found through ``ConnectorUserObjectPermission`` (a real foreign
key, indexed by ``user, permission, content_object``) in an ``EXISTS`` subquery, so neither the
number of connectors in the register nor the number an owner holds changes the shape of the SQL.
"""

from __future__ import annotations

import operator
from functools import reduce

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import (
    Count,
    Exists,
    Expression,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    StringAgg,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from audit.models import AuditEvent
from connectors.models import Connector, ConnectorApp, Grant, Identity
from connectors.selectors import person_key

from .models import ConnectorRequest, ConnectorUserObjectPermission, Decision
from .permissions import can_provision, is_iam


def _object_permission(user: AbstractBaseUser, codename: str, connector_ref: str) -> Exists:
    return Exists(
        ConnectorUserObjectPermission.objects.filter(
            user=user,
            permission__codename=codename,
            permission__content_type__app_label="connectors",
            content_object=OuterRef(connector_ref),
        )
    )


def _count(qs: QuerySet, field: str | Expression = "pk", distinct: bool = False) -> Coalesce:
    """Count rows of ``qs`` (filtered on OuterRef connector) as a correlated subquery, 0 when none."""
    return Coalesce(
        Subquery(
            qs.order_by().values("connector").annotate(n=Count(field, distinct=distinct)).values("n")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def _with_usage(qs: QuerySet[Connector]) -> QuerySet[Connector]:
    active = Grant.objects.filter(connector=OuterRef("pk"), status=Grant.Status.ACTIVE)
    return qs.annotate(
        holders=_count(active, person_key("identity"), distinct=True),  # people, not identity records
        active_grants=_count(active),
        last_used=Subquery(
            Grant.objects.filter(connector=OuterRef("pk"))
            .order_by()
            .values("connector")
            .annotate(m=Max("last_used_at"))
            .values("m")[:1]
        ),
    )


def my_connectors(user: AbstractBaseUser) -> QuerySet[Connector]:
    """Return the connectors the user may view as their owner, with holders, last use and pending requests."""
    pending = ConnectorRequest.objects.filter(
        connector=OuterRef("pk"),
        status__in=[ConnectorRequest.Status.PENDING_OWNER, ConnectorRequest.Status.PENDING_IAM],
    )
    qs = Connector.objects.filter(_object_permission(user, "view_connector", "pk")).select_related(
        "business_owner"
    )
    return _with_usage(qs).annotate(pending_requests=_count(pending)).order_by("name", "pk")


def inbox(user: AbstractBaseUser) -> QuerySet[ConnectorRequest]:
    """Return the requests waiting for this user: owner steps, IAM steps, provisioning."""
    Status = ConnectorRequest.Status
    owns = ConnectorUserObjectPermission.objects.filter(user=user).exists()
    scopes: list[Q] = []
    if is_iam(user):
        scopes += [
            Q(status=Status.PENDING_IAM),
            Q(status=Status.PENDING_OWNER, connector__business_owner=None),
        ]
    if can_provision(user):
        scopes.append(Q(status=Status.APPROVED))
    if owns and not scopes:
        # An owner only: a plain join from their permission rows (unique per user, permission and
        # connector, so no duplicates) lets PostgreSQL start from the index on those rows.
        qs = ConnectorRequest.objects.filter(
            status=Status.PENDING_OWNER,
            connector__user_permissions__user=user,
            connector__user_permissions__permission__codename="decide_connector",
            connector__user_permissions__permission__content_type__app_label="connectors",
        )
    elif scopes:
        if owns:
            # Owner and IAM at once (rare): the permission as EXISTS, OR-ed with the IAM scope.
            scopes.append(
                Q(status=Status.PENDING_OWNER) & _object_permission(user, "decide_connector", "connector_id")
            )
        qs = ConnectorRequest.objects.filter(reduce(operator.or_, scopes))
    else:
        return ConnectorRequest.objects.none()
    requester_identity = Identity.objects.filter(user=OuterRef("requester_id")).order_by("pk")
    owner_decision = Decision.objects.filter(request=OuterRef("pk"), step=Decision.Step.OWNER)
    return (
        qs.select_related("connector", "connector__business_owner", "requester", "on_behalf_of", "source")
        .annotate(
            requester_department=Subquery(requester_identity.values("department")[:1]),
            manager_name=Subquery(requester_identity.exclude(manager=None).values("manager__name")[:1]),
            manager_email=Subquery(requester_identity.exclude(manager=None).values("manager__email")[:1]),
            owner_decided_by=Subquery(owner_decision.values("decided_by__email")[:1]),
            risk=F("connector__risk"),
        )
        .order_by("created_at", "pk")
    )


def similar_sanctioned(requests: list[ConnectorRequest]) -> dict[int, str]:
    """Return, per request of a page, the sanctioned connectors from the same vendor, in one query."""
    vendors = {r.connector.vendor for r in requests if r.connector.vendor}
    by_vendor: dict[str, list[tuple[int, str]]] = {}
    for pk, vendor, name in (
        Connector.objects.filter(vendor__in=vendors, status__in=Connector.SANCTIONED)
        .order_by("name")
        .values_list("pk", "vendor", "name")
    ):
        by_vendor.setdefault(vendor, []).append((pk, name))
    return {
        r.pk: ", ".join(name for pk, name in by_vendor.get(r.connector.vendor, []) if pk != r.connector_id)
        for r in requests
    }


def my_grants(user: AbstractBaseUser) -> QuerySet[Grant]:
    """Return the grants held by the identities linked to the user."""
    return (
        Grant.objects.filter(identity__user=user)
        .select_related("connector", "identity", "device", "source")
        .order_by("-last_seen", "pk")
    )


def my_requests(user: AbstractBaseUser) -> QuerySet[ConnectorRequest]:
    """Return the requests the user made or that were made on their behalf, newest first."""
    return (
        ConnectorRequest.objects.filter(Q(requester=user) | Q(on_behalf_of=user))
        .select_related("connector")
        .order_by("-created_at", "-pk")
    )


def shadow_connectors() -> QuerySet[Connector]:
    """Return discovered connectors with how many people hold them and where they were seen."""
    # One ConnectorApp per source a connector was seen in, so no DISTINCT is needed.
    sources = (
        ConnectorApp.objects.filter(connector=OuterRef("pk"))
        .order_by()
        .values("connector")
        .annotate(names=StringAgg("source__name", delimiter=Value(", ")))
        .values("names")[:1]
    )
    return (
        _with_usage(Connector.objects.filter(status=Connector.Status.DISCOVERED))
        .annotate(seen_in=Subquery(sources))
        .order_by("-risk_score", "name", "pk")
    )


def connector_grants(connector: Connector) -> QuerySet[Grant]:
    """Return a connector's grants with their identities and devices."""
    return (
        Grant.objects.filter(connector=connector)
        .select_related("connector", "identity", "device", "source")
        .order_by("status", "-last_used_at", "pk")
    )


def connector_history(connector: Connector, limit: int = 50) -> QuerySet[AuditEvent]:
    """Return the connector's lifecycle and decision events (everything but AI activity), newest first."""
    return (
        AuditEvent.objects.filter(connector=connector)
        .exclude(action__startswith="ai.")
        .select_related("actor_user", "actor_identity")
        .order_by("-sequence")[:limit]
    )


def connector_activity(connector: Connector, limit: int = 25) -> QuerySet[AuditEvent]:
    """Return the most recent AI activity through the connector."""
    return (
        AuditEvent.objects.filter(connector=connector, action__startswith="ai.")
        .select_related("actor_identity", "device")
        .order_by("-occurred_at", "-sequence")[:limit]
    )


def connector_requests(connector: Connector) -> QuerySet[ConnectorRequest]:
    """Return the requests for a connector with their decisions."""
    return (
        ConnectorRequest.objects.filter(connector=connector)
        .select_related("requester")
        .prefetch_related("decisions__decided_by")
        .order_by("-created_at")
    )


def connector_paths(connector: Connector) -> QuerySet[ConnectorApp]:
    """Return a connector's paths (one per source it appears in) with their active grant counts."""
    active = Grant.objects.filter(app=OuterRef("pk"), status=Grant.Status.ACTIVE)
    return (
        ConnectorApp.objects.filter(connector=connector)
        .select_related("source")
        .annotate(active_grants=_count(active))
        .order_by("source__name", "client_id")
    )


# -------------------------------------------------------------------------- sign-in security (hardening)


def signin_events() -> QuerySet:
    """Return the sign-in security events, newest first (one query per page: no relation is read)."""
    from audit.models import AuditEvent

    from .signin import ACTIONS

    return AuditEvent.objects.filter(action__in=list(ACTIONS)).order_by("-occurred_at", "-sequence")
