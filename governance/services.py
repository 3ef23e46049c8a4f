"""The ownership workflow: requests, owner and IAM decisions, provisioning, suspend/resume, owners.

Every function here is one transaction: it locks the rows it changes (``select_for_update``),
checks the lifecycle maps on the models, writes exactly one audit event, and leaves email and IdP
calls to ``transaction.on_commit``.

Who decides what:

- The requester (and the person a request is made on behalf of) never decides it.
- The owner step is decided only by a holder of the object permission ``decide_connector`` on the
  connector: its business owner. A connector without an owner (a new one, or a shadow one) cannot
  pass the owner step until IAM assigns an owner with ``connector_set_owner``: IAM never stands in
  for the business, so two different people always approve.
- The IAM step is decided by a holder of the model permission ``connectors.decide_connector``
  (the "IAM staff" group), who did not decide the owner step.
- Provisioning needs ``connectors.provision_connector``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.services import record
from connectors.models import (
    Connector,
    ConnectorApp,
    Grant,
    Identity,
    IdentitySource,
    IllegalTransition,
)
from connectors.risk import assess as assess_risk
from connectors.signals import connector_status_changed

from . import emails
from .models import ConnectorRequest, Decision, User
from .permissions import holds_object_permission

OWNER_PERMISSIONS = ("view_connector", "decide_connector", "revoke_connector")
IAM_STAFF_GROUP = "IAM staff"
# Kinds of source whose API can provision; the others are a recorded manual step with evidence.
API_PROVISIONED_KINDS = {
    IdentitySource.Kind.GITHUB,
    IdentitySource.Kind.MICROSOFT_ENTRA,
    IdentitySource.Kind.OKTA,
}

Status = ConnectorRequest.Status
CStatus = Connector.Status


class WorkflowError(Exception):
    """A workflow step refused for a reason other than the lifecycle: missing input, wrong person."""


class NotAllowed(WorkflowError):
    """The actor may not take this step (permissions or segregation of duties)."""


class AlreadyDecided(IllegalTransition):
    """Someone else moved the request first (two people deciding at the same moment)."""


# ---------------------------------------------------------------------------------------------
# helpers


def _lock_request(request: ConnectorRequest) -> ConnectorRequest:
    return ConnectorRequest.objects.select_for_update().get(pk=request.pk)


def _lock_connector(connector_id: int) -> Connector:
    return Connector.objects.select_for_update().get(pk=connector_id)


def _moves_connector(req: ConnectorRequest) -> bool:
    """New-connector and sanction requests carry the connector through its lifecycle; access ones don't."""
    return req.kind in (ConnectorRequest.Kind.NEW, ConnectorRequest.Kind.SANCTION)


def _set_connector_status(connector: Connector, status: str, now) -> None:
    connector.check_transition(status)
    connector.status = status
    connector.status_changed_at = now
    connector.save(update_fields=["status", "status_changed_at"])


def _expect_status(req: ConnectorRequest, *expected: str) -> None:
    """Refuse a request that is not in ``expected``; say who moved it when someone else did."""
    if req.status in expected:
        return
    now_is = req.get_status_display()
    last = req.decisions.select_related("decided_by").order_by("-decided_at", "-pk").first()
    if last is None:
        raise AlreadyDecided(
            f"Request #{req.pk} has already moved on (now: {now_is}); this step no longer applies."
        )
    raise AlreadyDecided(
        f"Request #{req.pk} was already decided (now: {now_is}): the {last.get_step_display()} step was "
        f"{'approved' if last.outcome == Decision.Outcome.APPROVE else 'rejected'} by {last.decided_by} "
        f"at {last.decided_at:%Y-%m-%d %H:%M} UTC."
    )


def _refuse_parties(req: ConnectorRequest, actor: AbstractBaseUser) -> None:
    if actor.pk in (req.requester_id, req.on_behalf_of_id):
        raise NotAllowed(f"You asked for request #{req.pk}: someone else must decide it.")


def _require_reason(approve: bool, reason: str) -> str:
    reason = (reason or "").strip()
    if not approve and not reason:
        raise WorkflowError("A rejection needs a reason.")
    return reason


def _queue_mail(fn, *args: Any) -> None:
    transaction.on_commit(lambda: fn(*args))


# ---------------------------------------------------------------------------------------------
# owners


def connector_set_owner(*, connector: Connector, owner: User | None, actor: Any) -> Connector:
    """Make ``owner`` the connector's business owner and move its object permissions to them."""
    with transaction.atomic():
        connector = _lock_connector(connector.pk)
        previous_id = connector.business_owner_id
        previous = User.objects.get(pk=previous_id) if previous_id else None
        if previous is not None and (owner is None or previous.pk != owner.pk):
            for perm in OWNER_PERMISSIONS:
                remove_perm(f"connectors.{perm}", previous, connector)
        if owner is not None:
            for perm in OWNER_PERMISSIONS:
                assign_perm(f"connectors.{perm}", owner, connector)
        if previous_id == (owner.pk if owner else None):
            return connector
        connector.business_owner = owner
        connector.save(update_fields=["business_owner"])
        record(
            "connector.owner_set",
            actor=actor,
            connector=connector,
            target=connector,
            data={
                "from_user": previous_id,
                "from": previous.email if previous else None,
                "to_user": owner.pk if owner else None,
                "to": owner.email if owner else None,
            },
        )
    return connector


# ---------------------------------------------------------------------------------------------
# requests


def request_create(
    *,
    requester: User,
    kind: str,
    justification: str,
    scopes: list[str],
    connector: Connector | None = None,
    name: str = "",
    vendor: str = "",
    connector_kind: str = Connector.Kind.OAUTH_APP,
    data_reached: str = "",
    source: IdentitySource | None = None,
    provision_data: dict[str, Any] | None = None,
    on_behalf_of: User | None = None,
) -> ConnectorRequest:
    """Open a request: a new connector, access to an active one, or sanctioning a discovered one."""
    justification = (justification or "").strip()
    if not justification:
        raise WorkflowError("Say why the connector is needed.")
    scopes = [s.strip() for s in scopes if s and s.strip()]
    now = timezone.now()
    with transaction.atomic():
        if kind == ConnectorRequest.Kind.NEW:
            if connector is not None:
                raise WorkflowError("A request for a new connector names it; it does not pick one.")
            name = (name or "").strip()
            if not name:
                raise WorkflowError("Name the connector.")
            assessment = assess_risk(scopes)
            connector = Connector.objects.create(
                name=name,
                vendor=(vendor or "").strip(),
                kind=connector_kind,
                status=CStatus.REQUESTED,
                purpose=justification,
                data_reached=data_reached,
                risk=assessment.level,
                risk_score=assessment.score,
                status_changed_at=now,
            )
        elif connector is None:
            raise WorkflowError("Pick the connector the request is for.")
        else:
            connector = _lock_connector(connector.pk)
            if kind == ConnectorRequest.Kind.EXISTING:
                if connector.status != CStatus.ACTIVE:
                    raise IllegalTransition(
                        f"Connector '{connector.name}' is {connector.get_status_display().lower()}: "
                        "access can only be requested to an active connector."
                    )
                if ConnectorRequest.objects.filter(
                    connector=connector,
                    requester=requester,
                    kind=kind,
                    status__in=ConnectorRequest.OPEN,
                ).exists():
                    raise WorkflowError(f"You already have an open request for '{connector.name}'.")
            elif kind == ConnectorRequest.Kind.SANCTION:
                _set_connector_status(connector, CStatus.REQUESTED, now)
                if data_reached and not connector.data_reached:
                    connector.data_reached = data_reached
                    connector.save(update_fields=["data_reached"])
            else:
                raise WorkflowError(f"Unknown request kind {kind!r}.")
        req = ConnectorRequest.objects.create(
            connector=connector,
            kind=kind,
            requester=requester,
            on_behalf_of=on_behalf_of,
            justification=justification,
            scopes=scopes,
            data_reached=data_reached,
            source=source,
            provision_data=provision_data or {},
            created_at=now,
            updated_at=now,
        )
        record(
            "request.created",
            actor=requester,
            connector=connector,
            target=req,
            data={
                "kind": kind,
                "scopes": scopes,
                "on_behalf_of": on_behalf_of.email if on_behalf_of else None,
                "connector_status": connector.status,
            },
        )
        _queue_mail(emails.request_created, req.pk)
    return req


def _record_decision(
    req: ConnectorRequest,
    connector: Connector,
    *,
    step: str,
    approve: bool,
    actor: User,
    reason: str,
    now,
    approved: tuple[str, str],
) -> None:
    """Move a locked request (and, for new/sanction requests, its connector) after one decision step."""
    new, connector_new = approved if approve else (Status.REJECTED, CStatus.REJECTED)
    req.check_transition(new)
    if _moves_connector(req):
        _set_connector_status(connector, connector_new, now)
    Decision.objects.create(
        request=req,
        step=step,
        outcome=Decision.Outcome.APPROVE if approve else Decision.Outcome.REJECT,
        decided_by=actor,
        reason=reason,
        decided_at=now,
    )
    req.status = new
    req.updated_at = now
    req.save(update_fields=["status", "updated_at"])
    record(
        f"request.{step}_{'approved' if approve else 'rejected'}",
        actor=actor,
        connector=connector,
        target=req,
        data={"reason": reason, "connector_status": connector.status},
    )
    _queue_mail(emails.request_decided, req.pk, step)


def request_decide_owner(
    *, request: ConnectorRequest, actor: User, approve: bool, reason: str = ""
) -> ConnectorRequest:
    """Record the business owner's decision; an approval passes the request to IAM."""
    reason = _require_reason(approve, reason)
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        _expect_status(req, Status.PENDING_OWNER)
        connector = _lock_connector(req.connector_id)
        _refuse_parties(req, actor)
        if connector.business_owner_id is None:
            raise NotAllowed(
                f"Connector '{connector.name}' has no business owner yet: IAM must assign one before "
                "the owner step can be decided."
            )
        # The object permission itself, not has_perm: a superuser is not the business owner.
        if not holds_object_permission(actor, "decide_connector", connector):
            raise NotAllowed(f"Only the business owner of '{connector.name}' decides this step.")
        _record_decision(
            req,
            connector,
            step=Decision.Step.OWNER,
            approve=approve,
            actor=actor,
            reason=reason,
            now=now,
            approved=(Status.PENDING_IAM, CStatus.PENDING_IAM),
        )
        if approve:
            _queue_mail(emails.request_awaits_iam, req.pk)
    return req


def request_decide_iam(
    *, request: ConnectorRequest, actor: User, approve: bool, reason: str = ""
) -> ConnectorRequest:
    """Record IAM's decision on a request the owner approved."""
    reason = _require_reason(approve, reason)
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        _expect_status(req, Status.PENDING_IAM)
        connector = _lock_connector(req.connector_id)
        _refuse_parties(req, actor)
        if not actor.has_perm("connectors.decide_connector"):
            raise NotAllowed("Only IAM staff decide the IAM step.")
        owner_decision = req.decisions.filter(step=Decision.Step.OWNER).first()
        if owner_decision is not None and owner_decision.decided_by_id == actor.pk:
            raise NotAllowed(
                f"You approved request #{req.pk} as business owner: another IAM staff member must decide."
            )
        _record_decision(
            req,
            connector,
            step=Decision.Step.IAM,
            approve=approve,
            actor=actor,
            reason=reason,
            now=now,
            approved=(Status.APPROVED, CStatus.APPROVED),
        )
    return req


def request_decide(
    *, request: ConnectorRequest, actor: User, approve: bool, reason: str = ""
) -> ConnectorRequest:
    """Decide whichever step the request waits for now (owner or IAM); for the admin's bulk actions."""
    if request.status == Status.PENDING_IAM:
        return request_decide_iam(request=request, actor=actor, approve=approve, reason=reason)
    return request_decide_owner(request=request, actor=actor, approve=approve, reason=reason)


def request_source(req: ConnectorRequest) -> IdentitySource | None:
    """Return the identity source a request is provisioned in: the one asked for, else the connector's."""
    if req.source_id:
        return req.source
    app = req.connector.apps.select_related("source").order_by("pk").first()
    return app.source if app else None


def request_provision(*, request: ConnectorRequest, actor: User, evidence: str = "") -> ConnectorRequest:
    """Provision an approved request: through the IdP's API where it has one, else as a manual step."""
    evidence = (evidence or "").strip()
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        _expect_status(req, Status.APPROVED)
        connector = _lock_connector(req.connector_id)
        if not actor.has_perm("connectors.provision_connector"):
            raise NotAllowed("Only IAM staff provision connectors.")
        source = request_source(req)
        # A discovered connector is already consented at its IdP: sanctioning it needs no IdP call,
        # only a record of what was checked.
        manual = req.kind == ConnectorRequest.Kind.SANCTION
        if manual or source is None or source.kind not in API_PROVISIONED_KINDS:
            if not evidence and manual:
                raise WorkflowError(
                    "A discovered connector is already allowed at its identity provider: record what you "
                    "checked (scopes, publisher, tenant settings) as evidence to sanction it."
                )
            if not evidence:
                where = source.get_kind_display() if source else "this connector (no identity source)"
                raise WorkflowError(
                    f"{where} has no API to allow an app: do it by hand, then record what you did "
                    "as evidence."
                )
            return _complete_provision(req, connector, actor=actor, now=now, manual=True, evidence=evidence)
        if req.provision_data.get("queued_at"):
            raise IllegalTransition(f"Request #{req.pk} is already being provisioned.")
        req.provision_data = {**req.provision_data, "queued_at": now.isoformat(), "queued_by": actor.pk}
        req.updated_at = now
        req.save(update_fields=["provision_data", "updated_at"])
        record(
            "request.provision_queued",
            actor=actor,
            connector=connector,
            source=source,
            target=req,
            data={"source_kind": source.kind},
        )
        req_id, actor_id = req.pk, actor.pk
        transaction.on_commit(lambda: _queue_provision(req_id, actor_id))
    return req


UNQUEUED = "unqueued_at"  # in provision_data: the job could not be queued; the sweep queues it again


def _queue_provision(req_id: int, actor_id: int) -> None:
    from connectors.queueing import enqueue

    from .tasks import provision_request

    if enqueue(provision_request, req_id, actor_id, what=f"provisioning of request {req_id}"):
        return
    # Scheduling bookkeeping for the sweep, not a step of the workflow: no audit event.
    with transaction.atomic():
        req = ConnectorRequest.objects.select_for_update().get(pk=req_id)
        req.provision_data = {**req.provision_data, UNQUEUED: timezone.now().isoformat()}
        req.save(update_fields=["provision_data"])


def requests_claim_unqueued_provisioning() -> list[tuple[int, int]]:
    """Return (request, actor) of approved requests whose provisioning job was never queued; unmark them."""
    claimed: list[tuple[int, int]] = []
    with transaction.atomic():
        rows = ConnectorRequest.objects.select_for_update(skip_locked=True).filter(
            status=Status.APPROVED, provision_data__has_key=UNQUEUED
        )
        for req in rows:
            data = {k: v for k, v in req.provision_data.items() if k != UNQUEUED}
            if not data.get("queued_at"):
                continue
            req.provision_data = data
            req.save(update_fields=["provision_data"])
            claimed.append((req.pk, int(data.get("queued_by") or 0)))
    return [(r, a) for r, a in claimed if a]


def _complete_provision(
    req: ConnectorRequest,
    connector: Connector,
    *,
    actor: Any,
    now,
    manual: bool,
    evidence: str = "",
    grant: Grant | None = None,
    detail: str = "",
) -> ConnectorRequest:
    req.check_transition(Status.PROVISIONED)
    if connector.status == CStatus.APPROVED:
        _set_connector_status(connector, CStatus.ACTIVE, now)
    elif connector.status != CStatus.ACTIVE:
        raise IllegalTransition(
            f"Connector '{connector.name}' is {connector.get_status_display().lower()}: "
            "it cannot be provisioned."
        )
    Decision.objects.create(
        request=req,
        step=Decision.Step.PROVISION,
        outcome=Decision.Outcome.APPROVE,
        decided_by=actor,
        reason=evidence or detail,
        decided_at=now,
    )
    req.status = Status.PROVISIONED
    req.provision_evidence = evidence
    req.updated_at = now
    req.save(update_fields=["status", "provision_evidence", "updated_at"])
    record(
        "request.provisioned",
        actor=actor,
        connector=connector,
        grant=grant,
        source=req.source,
        target=req,
        data={"manual": manual, "evidence": evidence, "detail": detail, "connector_status": connector.status},
    )
    _queue_mail(emails.request_provisioned, req.pk)
    return req


def request_provision_complete(
    *, request: ConnectorRequest, actor: User, source: IdentitySource, result: Any
) -> ConnectorRequest:
    """Record what the IdP did for a queued provisioning (``result`` is a ProvisionResult)."""
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        _expect_status(req, Status.APPROVED)
        connector = _lock_connector(req.connector_id)
        grant = None
        idp_grant = result.grant
        client_id = (idp_grant.client_id if idp_grant else "") or req.provision_data.get("client_id", "")
        app = None
        if client_id:
            app, _ = ConnectorApp.objects.get_or_create(
                source=source,
                client_id=client_id,
                defaults={
                    "connector": connector,
                    "name": idp_grant.app_name if idp_grant else connector.name,
                },
            )
            if app.connector_id != connector.pk:
                app = None  # the client id is another register entry's path: leave that one alone
        if idp_grant is not None:
            identity = None
            if idp_grant.user_external_id:
                identity = Identity.objects.filter(
                    source=source, external_id=idp_grant.user_external_id
                ).first()
            grant, _ = Grant.objects.get_or_create(
                source=source,
                external_id=idp_grant.external_id,
                defaults={
                    "connector": connector,
                    "app": app,
                    "identity": identity,
                    "kind": idp_grant.kind,
                    "consent_type": idp_grant.consent_type,
                    "scopes": list(idp_grant.scopes),
                    "expires_at": idp_grant.expires_at,
                    "token_hint": idp_grant.token_hint,
                    "idp_data": {"client_id": idp_grant.client_id, **idp_grant.extra},
                    "first_seen": now,
                    "last_seen": now,
                },
            )
        return _complete_provision(
            req, connector, actor=actor, now=now, manual=False, grant=grant, detail=result.detail
        )


def request_provision_failed(*, request: ConnectorRequest, error: str) -> ConnectorRequest:
    """Record that the IdP refused a queued provisioning, so IAM can retry or do it by hand."""
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        _expect_status(req, Status.APPROVED)
        data = {k: v for k, v in req.provision_data.items() if k not in ("queued_at", "queued_by")}
        data["last_error"] = error[:500]
        req.provision_data = data
        req.updated_at = now
        req.save(update_fields=["provision_data", "updated_at"])
        record(
            "request.provision_failed",
            actor="system",
            outcome="failure",
            connector=req.connector,
            target=req,
            data={"error": error[:500]},
        )
    return req


# Where a withdrawn request leaves its connector: a shadow connector goes back to triage while it
# can; anything else becomes "rejected" (not sanctioned), which a new request can reopen.
_WITHDRAW_CONNECTOR = {
    (ConnectorRequest.Kind.SANCTION, CStatus.REQUESTED): CStatus.DISCOVERED,
    (ConnectorRequest.Kind.SANCTION, CStatus.PENDING_IAM): CStatus.REJECTED,
    (ConnectorRequest.Kind.NEW, CStatus.REQUESTED): CStatus.REJECTED,
    (ConnectorRequest.Kind.NEW, CStatus.PENDING_IAM): CStatus.REJECTED,
}


def request_withdraw(*, request: ConnectorRequest, actor: User, reason: str = "") -> ConnectorRequest:
    """Withdraw an open request; only the requester can, and only before it is provisioned."""
    now = timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        if actor.pk not in (req.requester_id, req.on_behalf_of_id):
            raise NotAllowed("Only the requester can withdraw a request.")
        _expect_status(req, *ConnectorRequest.OPEN)
        if req.provision_data.get("queued_at"):
            raise IllegalTransition(f"Request #{req.pk} is being provisioned: it can no longer be withdrawn.")
        connector = _lock_connector(req.connector_id)
        req.check_transition(Status.WITHDRAWN)
        if _moves_connector(req):
            target = _WITHDRAW_CONNECTOR.get((req.kind, connector.status), CStatus.REVOKED)
            _set_connector_status(connector, target, now)
        req.status = Status.WITHDRAWN
        req.updated_at = now
        req.save(update_fields=["status", "updated_at"])
        record(
            "request.withdrawn",
            actor=actor,
            connector=connector,
            target=req,
            data={"reason": reason.strip(), "connector_status": connector.status},
        )
    return req


def connector_sanction(
    *,
    connector: Connector,
    actor: User,
    owner: User,
    justification: str,
    scopes: list[str] | None = None,
    on_behalf_of: User | None = None,
) -> ConnectorRequest:
    """Start sanctioning a discovered connector: assign its owner and open a request on someone's behalf."""
    with transaction.atomic():
        connector_set_owner(connector=connector, owner=owner, actor=actor)
        return request_create(
            requester=actor,
            kind=ConnectorRequest.Kind.SANCTION,
            connector=connector,
            justification=justification,
            scopes=scopes or [],
            on_behalf_of=on_behalf_of,
        )


# ---------------------------------------------------------------------------------------------
# suspend / resume


def _connector_move(*, connector: Connector, actor: User, status: str, action: str, reason: str) -> Connector:
    if not actor.has_perm("connectors.revoke_connector"):
        raise NotAllowed("Only IAM staff suspend or resume connectors.")
    with transaction.atomic():
        connector = _lock_connector(connector.pk)
        previous = connector.status
        _set_connector_status(connector, status, timezone.now())
        record(action, actor=actor, connector=connector, target=connector, data={"reason": reason})
        connector_status_changed.send(
            sender=Connector, connector=connector, status=status, previous=previous, reason=reason
        )
    return connector


def connector_suspend(*, connector: Connector, actor: User, reason: str = "") -> Connector:
    """Suspend an active connector (its grants stay, the stale-grant sweep treats them as unsanctioned)."""
    return _connector_move(
        connector=connector,
        actor=actor,
        status=CStatus.SUSPENDED,
        action="connector.suspended",
        reason=reason,
    )


def connector_resume(*, connector: Connector, actor: User, reason: str = "") -> Connector:
    """Resume a suspended connector."""
    return _connector_move(
        connector=connector, actor=actor, status=CStatus.ACTIVE, action="connector.resumed", reason=reason
    )
