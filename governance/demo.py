"""Demo requests for ``seed_demo``: a realistic inbox for the demo owner and IAM, through the services."""

from __future__ import annotations

from collections.abc import Sequence

from connectors.models import Connector

from .models import ConnectorRequest, User
from .services import (
    connector_set_owner,
    request_create,
    request_decide_iam,
    request_decide_owner,
    request_provision,
    request_withdraw,
)

REASONS = [
    "Summarise customer calls into the CRM.",
    "Draft first replies to support tickets.",
    "Search our design docs while reviewing pull requests.",
    "Prepare the weekly pipeline report.",
    "Translate onboarding material for the Madrid office.",
    "Meeting notes for the leadership offsite.",
]
SCOPES = [
    ["https://www.googleapis.com/auth/calendar.readonly"],
    ["https://www.googleapis.com/auth/drive.readonly"],
    ["https://www.googleapis.com/auth/documents.readonly", "https://www.googleapis.com/auth/drive.file"],
]


def build_demo_workflow(
    *, iam_user: User, owner_user: User, employee_users: Sequence[User]
) -> list[ConnectorRequest]:
    """Create pending requests (some for the owner, some for IAM) and a few decided ones; idempotent."""
    employees = [u for u in employee_users if u.pk not in (iam_user.pk, owner_user.pk)]
    if not employees or ConnectorRequest.objects.filter(requester__in=employees).exists():
        return []
    # Eight access requests in all, spread over the owner's connectors and the employees.
    wanted = -(-8 // len(employees))
    owned = list(Connector.objects.filter(status=Connector.Status.ACTIVE, business_owner=owner_user)[:wanted])
    if len(owned) < wanted:
        for connector in Connector.objects.filter(status=Connector.Status.ACTIVE, business_owner=None)[
            : wanted - len(owned)
        ]:
            owned.append(connector_set_owner(connector=connector, owner=owner_user, actor=iam_user))
    if not owned:
        return []

    made: list[ConnectorRequest] = []
    slots = [(e, c) for e in employees for c in owned]

    def ask(i: int) -> ConnectorRequest | None:
        if i >= len(slots):
            return None
        employee, connector = slots[i]
        req = request_create(
            requester=employee,
            kind=ConnectorRequest.Kind.EXISTING,
            connector=connector,
            justification=REASONS[(i + len(made)) % len(REASONS)],
            scopes=SCOPES[len(made) % len(SCOPES)],
            data_reached="Calendars and shared drives of the requester",
        )
        made.append(req)
        return req

    # Decided first (a closed request frees its requester to ask again): one rejected by the owner,
    # one approved by both and provisioned by hand (the demo directory is Google: no API), one withdrawn.
    if req := ask(0):
        request_decide_owner(
            request=req, actor=owner_user, approve=False, reason="Use the sanctioned Claude for Work instead."
        )
    if req := ask(1 % len(slots)):
        request_decide_owner(request=req, actor=owner_user, approve=True)
        request_decide_iam(
            request=req, actor=iam_user, approve=True, reason="Read-only scopes, EU data residency."
        )
        app = req.connector.apps.select_related("source").first()
        if app is None or app.source.kind == "google_workspace":
            request_provision(
                request=req,
                actor=iam_user,
                evidence="Marked Trusted in the Google Admin console for the requester's OU.",
            )
    if req := ask(2 % len(slots)):
        request_withdraw(request=req, actor=req.requester, reason="Found what I needed elsewhere.")
    # Open: waiting for IAM (the owner approved) and waiting for the owner. Fresh slots, so a request
    # left approved above (provisioned through an IdP API by the worker) never collides with a new one.
    for i in range(3, 5):
        if req := ask(i):
            request_decide_owner(request=req, actor=owner_user, approve=True, reason="Fits the team's use.")
    for i in range(5, 8):
        ask(i)
    # A brand-new connector nobody owns yet: IAM's inbox asks for an owner.
    made.append(
        request_create(
            requester=employees[0],
            kind=ConnectorRequest.Kind.NEW,
            name="Granola",
            vendor="Granola Inc.",
            connector_kind=Connector.Kind.BOT,
            justification="Private meeting notes that do not join the call as a bot.",
            scopes=["https://www.googleapis.com/auth/calendar.readonly"],
            data_reached="Calendar events and meeting audio on the laptop",
        )
    )
    return made
