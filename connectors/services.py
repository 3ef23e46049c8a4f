"""State changes of the register: revocation, expiry, identity status; and the IdP adapter of a source.

Every function here that changes state runs in one transaction, re-reads the rows it changes with
``select_for_update()``, refuses a transition the model does not allow, records one audit event per
changed row in that transaction and queues IdP calls with ``transaction.on_commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent

from . import signals
from .idp.base import Adapter, GrantRef, IdpConfig
from .models import Connector, Grant, Identity, IdentitySource, IllegalTransition

logger = logging.getLogger(__name__)

CHUNK = 500
REVOCABLE = (Grant.Status.ACTIVE, Grant.Status.EXPIRED)
# Identity statuses that start offboarding (connectors.signals.identity_status_changed).
OFFBOARDING_STATUSES = (Identity.Status.SUSPENDED, Identity.Status.DEPROVISIONED)
IDENTITY_ACTIONS = {
    Identity.Status.ACTIVE: "identity.reactivated",
    Identity.Status.SUSPENDED: "identity.suspended",
    Identity.Status.DEPROVISIONED: "identity.deprovisioned",
}
# Kept in Grant.idp_data when the grant's user is not (yet) an Identity: a revocation still needs it.
USER_KEY = "lanyard_user_external_id"


class TenantWideConfirmationRequired(IllegalTransition):
    """Revoking a tenant-wide (AllPrincipals) consent needs ``confirm_tenant_wide=True``."""


@dataclass(frozen=True, slots=True)
class RevokeSummary:
    revoking: int = 0  # handed to the IdP
    revoked: int = 0  # revoked locally at once (no source)
    skipped_tenant_wide: int = 0  # tenant-wide consents left alone for want of confirmation

    @property
    def total(self) -> int:
        return self.revoking + self.revoked


# ---------------------------------------------------------------------------------------- adapters


def source_config(source: IdentitySource) -> IdpConfig:
    """Return the adapter configuration of ``source``, credentials decrypted."""
    return IdpConfig(
        kind=source.kind,
        name=source.name,
        base_url=source.base_url,
        token_url=source.token_url,
        credentials=source.credentials,
        timeout=settings.LANYARD_IDP_TIMEOUT,
        max_retries=settings.LANYARD_IDP_MAX_RETRIES,
        backoff_base=settings.LANYARD_IDP_BACKOFF_BASE,
        backoff_max=settings.LANYARD_IDP_BACKOFF_MAX,
        page_size=settings.LANYARD_SYNC_PAGE_SIZE,
    )


def source_adapter(source: IdentitySource) -> Adapter:
    """Return the adapter that speaks to ``source``'s identity provider."""
    from .idp import get_adapter

    return get_adapter(source_config(source))


def grant_ref(grant: Grant) -> GrantRef:
    """Return what the adapter needs to revoke ``grant``."""
    extra = dict(grant.idp_data or {})
    user = extra.pop(USER_KEY, None)
    if grant.identity_id is not None:
        user = grant.identity.external_id
    client_id = grant.app.client_id if grant.app_id else extra.get("client_id", "")
    return GrantRef(
        external_id=grant.external_id,
        client_id=client_id,
        kind=grant.kind,
        user_external_id=user,
        consent_type=grant.consent_type,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------- helpers


def _user(actor: Any) -> AbstractBaseUser | None:
    return actor if isinstance(actor, AbstractBaseUser) else None


def _enqueue_revocations(pks: list[int]) -> None:
    from .queueing import enqueue
    from .tasks import revoke_grant_at_idp

    unqueued = [pk for pk in pks if not enqueue(revoke_grant_at_idp, pk, what=f"revocation of grant {pk}")]
    if unqueued:
        # Scheduling bookkeeping, not a change of state: the next sweep takes them first thing.
        Grant.objects.filter(pk__in=unqueued, status=Grant.Status.REVOKING).update(
            revoke_next_attempt_at=timezone.now()
        )


def _retry_after() -> timedelta:
    return timedelta(minutes=settings.LANYARD_REVOKE_SWEEP_MINUTES)


def _chunks(qs: QuerySet, size: int = CHUNK) -> Iterator[list[int]]:
    """Yield the primary keys of ``qs`` in ascending chunks, re-querying so memory stays flat."""
    last = 0
    while True:
        pks = list(qs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not pks:
            return
        yield pks
        last = pks[-1]


def _tenant_wide_message(what: str) -> str:
    return (
        f"{what} is a tenant-wide (AllPrincipals) consent: revoking it removes the app for every "
        "user in the tenant. Confirm explicitly (confirm_tenant_wide=True, --confirm-tenant-wide)."
    )


# ---------------------------------------------------------------------------------------- grants


def grant_revoke(*, grant: Grant, actor: Any, reason: str, confirm_tenant_wide: bool = False) -> Grant:
    """Start revoking a grant: mark it revoking with why and by whom, then call the IdP after commit."""
    now = timezone.now()
    with transaction.atomic():
        grant = Grant.objects.select_related("connector").select_for_update(of=("self",)).get(pk=grant.pk)
        if grant.source_id is None:
            # Portal credentials live only here: nothing to call, revoked at once.
            grant.check_transition(Grant.Status.REVOKED)
            grant.status = Grant.Status.REVOKED
            grant.revoked_at = now
            grant.revoked_by = _user(actor)
            grant.revoke_reason = reason[:300]
            grant.revoke_requested_at = now
            grant.save(
                update_fields=["status", "revoked_at", "revoked_by", "revoke_reason", "revoke_requested_at"]
            )
            audit.record(
                "grant.revoked",
                actor=actor,
                connector=grant.connector,
                grant=grant,
                target=grant,
                data={"reason": reason, "at_idp": False},
            )
            signals.grants_ended.send(sender=Grant, grant_ids=[grant.pk])
            return grant
        grant.check_transition(Grant.Status.REVOKING)
        tenant_wide = grant.consent_type == Grant.ConsentType.ALL_PRINCIPALS
        if tenant_wide and not confirm_tenant_wide:
            raise TenantWideConfirmationRequired(_tenant_wide_message(f"Grant {grant.pk}"))
        grant.status = Grant.Status.REVOKING
        grant.revoke_reason = reason[:300]
        grant.revoked_by = _user(actor)
        grant.revoke_requested_at = now
        grant.revoke_next_attempt_at = now + _retry_after()
        grant.revoke_attempts = 0
        grant.revoke_error = ""
        grant.revoke_tenant_wide_confirmed = tenant_wide
        grant.save(
            update_fields=[
                "status",
                "revoke_reason",
                "revoked_by",
                "revoke_requested_at",
                "revoke_next_attempt_at",
                "revoke_attempts",
                "revoke_error",
                "revoke_tenant_wide_confirmed",
            ]
        )
        audit.record(
            "grant.revoke_requested",
            actor=actor,
            connector=grant.connector,
            grant=grant,
            source=grant.source,
            target=grant,
            data={"reason": reason, "tenant_wide": tenant_wide},
        )
        pk = grant.pk
        signals.grants_revoking.send(sender=Grant, grant_ids=[pk])
        transaction.on_commit(lambda: _enqueue_revocations([pk]))
    return grant


def grant_revoke_many(
    *, grants_qs: QuerySet[Grant], actor: Any, reason: str, confirm_tenant_wide: bool = False
) -> RevokeSummary:
    """Start revoking many grants in chunks: one audit event per grant, IdP calls queued after commit."""
    now = timezone.now()
    user = _user(actor)
    revoking = revoked = skipped = 0
    candidates = grants_qs.filter(status__in=REVOCABLE)
    for pks in _chunks(candidates):
        with transaction.atomic():
            rows = list(
                Grant.objects.select_for_update()
                .filter(pk__in=pks, status__in=REVOCABLE)
                .only("pk", "status", "source_id", "connector_id", "consent_type", "external_id")
            )
            connectors = Connector.objects.in_bulk({g.connector_id for g in rows})
            changed: list[Grant] = []
            events: list[dict[str, Any]] = []
            to_idp: list[int] = []
            for g in rows:
                tenant_wide = g.consent_type == Grant.ConsentType.ALL_PRINCIPALS
                if tenant_wide and g.source_id is not None and not confirm_tenant_wide:
                    skipped += 1
                    continue
                # Every field bulk_update writes is set here: a deferred one would be fetched row by row.
                g.revoke_reason = reason[:300]
                g.revoked_by = user
                g.revoke_requested_at = now
                g.revoke_attempts = 0
                g.revoke_error = ""
                if g.source_id is None:
                    g.status = Grant.Status.REVOKED
                    g.revoked_at = now
                    g.revoke_next_attempt_at = None
                    g.revoke_tenant_wide_confirmed = False
                    action, data = "grant.revoked", {"reason": reason, "at_idp": False}
                    revoked += 1
                else:
                    g.status = Grant.Status.REVOKING
                    g.revoked_at = None
                    g.revoke_next_attempt_at = now + _retry_after()
                    g.revoke_tenant_wide_confirmed = tenant_wide
                    action, data = "grant.revoke_requested", {"reason": reason, "tenant_wide": tenant_wide}
                    to_idp.append(g.pk)
                    revoking += 1
                changed.append(g)
                events.append(
                    {
                        "action": action,
                        "actor": actor,
                        "connector": connectors.get(g.connector_id),
                        "grant": g,
                        "target": g,
                        "data": data,
                    }
                )
            if changed:
                Grant.objects.bulk_update(
                    changed,
                    [
                        "status",
                        "revoked_at",
                        "revoked_by",
                        "revoke_reason",
                        "revoke_requested_at",
                        "revoke_next_attempt_at",
                        "revoke_attempts",
                        "revoke_error",
                        "revoke_tenant_wide_confirmed",
                    ],
                )
                audit.record_batch(events)
                local = [g.pk for g in changed if g.source_id is None]
                if local:
                    signals.grants_ended.send(sender=Grant, grant_ids=local)
            if to_idp:
                signals.grants_revoking.send(sender=Grant, grant_ids=to_idp)
                transaction.on_commit(lambda pks=to_idp: _enqueue_revocations(pks))
    return RevokeSummary(revoking=revoking, revoked=revoked, skipped_tenant_wide=skipped)


def grant_revoke_claim(*, grant_id: int, now: datetime | None = None) -> bool:
    """Claim a revoking grant for one IdP call (compare-and-swap); False when another task holds it."""
    # Scheduling bookkeeping, not a change of the grant's state: no audit event. A duplicate delivery
    # of the task (acks_late, a sweep re-enqueue) finds the claim and skips, so the IdP is called once
    # and the outcome of the call that removed the grant is the one recorded.
    now = now or timezone.now()
    lease = now - timedelta(minutes=settings.LANYARD_REVOKE_CLAIM_MINUTES)
    claimed = (
        Grant.objects.filter(pk=grant_id, status=Grant.Status.REVOKING)
        .filter(Q(revoke_claimed_at__isnull=True) | Q(revoke_claimed_at__lt=lease))
        .update(revoke_claimed_at=now)
    )
    return claimed == 1


def grant_mark_revoked(*, grant: Grant, idp_outcome: str = "revoked") -> Grant:
    """Record that the IdP revoked the grant (or no longer had it)."""
    now = timezone.now()
    with transaction.atomic():
        grant = Grant.objects.select_related("connector").select_for_update(of=("self",)).get(pk=grant.pk)
        grant.check_transition(Grant.Status.REVOKED)
        grant.status = Grant.Status.REVOKED
        grant.revoked_at = now
        grant.revoke_error = ""
        grant.revoke_next_attempt_at = None
        grant.revoke_claimed_at = None
        fields = ["status", "revoked_at", "revoke_error", "revoke_next_attempt_at", "revoke_claimed_at"]
        grant.save(update_fields=fields)
        audit.record(
            "grant.revoked",
            actor=grant.revoked_by or "system",
            connector=grant.connector,
            grant=grant,
            source=grant.source,
            target=grant,
            data={"reason": grant.revoke_reason, "at_idp": True, "idp_outcome": idp_outcome},
        )
    return grant


def grant_record_revoke_failure(
    *, grant: Grant, error: str, permanent: bool, retry_at: datetime | None
) -> Grant:
    """Record a failed IdP call for a revoking grant and when to try again; it stays revoking."""
    with transaction.atomic():
        grant = Grant.objects.select_related("connector").select_for_update(of=("self",)).get(pk=grant.pk)
        if grant.status != Grant.Status.REVOKING:
            raise IllegalTransition(f"Grant {grant.pk} is {grant.status}, not revoking.")
        grant.revoke_attempts = min(grant.revoke_attempts + 1, 32767)
        grant.revoke_error = error[:500]
        grant.revoke_next_attempt_at = retry_at
        grant.revoke_claimed_at = None  # the next attempt (a retry, the sweep) claims it afresh
        grant.save(
            update_fields=["revoke_attempts", "revoke_error", "revoke_next_attempt_at", "revoke_claimed_at"]
        )
        audit.record(
            "grant.revoke_failed" if permanent else "grant.revoke_retrying",
            outcome=AuditEvent.Outcome.FAILURE,
            connector=grant.connector,
            grant=grant,
            source=grant.source,
            target=grant,
            data={"error": error[:500], "attempt": grant.revoke_attempts, "permanent": permanent},
        )
    return grant


def grants_claim_revoke_retries(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Return revoking grants whose retry time has come, pushing that time on so one sweep takes each."""
    # Scheduling bookkeeping, not a change of the grant's state: no audit event.
    now = now or timezone.now()
    with transaction.atomic():
        pks = list(
            Grant.objects.select_for_update(skip_locked=True)
            .filter(Q(revoke_next_attempt_at__lte=now) | Q(revoke_next_attempt_at__isnull=True))
            .filter(status=Grant.Status.REVOKING)
            .order_by("revoke_next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if pks:
            Grant.objects.filter(pk__in=pks).update(revoke_next_attempt_at=now + _retry_after())
    return pks


def grant_expire_many(*, grants_qs: QuerySet[Grant], now: datetime | None = None) -> int:
    """Mark active grants past their expiry as expired, one audit event each."""
    now = now or timezone.now()
    count = 0
    for pks in _chunks(grants_qs.filter(status=Grant.Status.ACTIVE, expires_at__lte=now)):
        with transaction.atomic():
            rows = list(
                Grant.objects.select_for_update()
                .filter(pk__in=pks, status=Grant.Status.ACTIVE, expires_at__lte=now)
                .only("pk", "status", "connector_id", "external_id", "expires_at")
            )
            connectors = Connector.objects.in_bulk({g.connector_id for g in rows})
            for g in rows:
                g.status = Grant.Status.EXPIRED
            Grant.objects.bulk_update(rows, ["status"])
            audit.record_batch(
                {
                    "action": "grant.expired",
                    "connector": connectors.get(g.connector_id),
                    "grant": g,
                    "target": g,
                    "data": {"expires_at": g.expires_at},
                }
                for g in rows
            )
            if rows:
                signals.grants_ended.send(sender=Grant, grant_ids=[g.pk for g in rows])
            count += len(rows)
    return count


@dataclass(frozen=True, slots=True)
class ExpirySummary:
    expired: int
    stale: RevokeSummary
    unsanctioned: RevokeSummary


def grants_apply_expiry_policy(*, now: datetime | None = None) -> ExpirySummary:
    """Expire grants past expiry; revoke grants unused beyond policy or held on a connector not active."""
    now = now or timezone.now()
    expired = grant_expire_many(grants_qs=Grant.objects.all(), now=now)
    days = settings.LANYARD_STALE_GRANT_DAYS
    cutoff = now - timedelta(days=days)
    # Usage recorded by gateways reaches grants through the roll-up: bring it up to date first, so
    # a grant used a moment ago is not revoked as unused.
    signals.stale_check_starting.send(sender=Grant)
    stale = grant_revoke_many(
        grants_qs=Grant.objects.filter(status=Grant.Status.ACTIVE).filter(
            Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, first_seen__lt=cutoff)
        ),
        actor="system",
        reason=f"unused for more than {days} days",
    )
    # Revoked and rejected connectors lose their grants at once; a connector still being triaged,
    # requested, approved or suspended keeps them for a grace period so people can act first.
    grace = now - timedelta(days=settings.LANYARD_UNSANCTIONED_GRACE_DAYS)
    unsanctioned = RevokeSummary()
    for status, label in Connector.Status.choices:
        if status == Connector.Status.ACTIVE:
            continue
        qs = Grant.objects.filter(status=Grant.Status.ACTIVE, connector__status=status)
        if status not in (Connector.Status.REVOKED, Connector.Status.REJECTED):
            qs = qs.filter(connector__status_changed_at__lt=grace)
        done = grant_revoke_many(
            grants_qs=qs, actor="system", reason=f"connector is {label.lower()}, not active"
        )
        unsanctioned = RevokeSummary(
            revoking=unsanctioned.revoking + done.revoking,
            revoked=unsanctioned.revoked + done.revoked,
            skipped_tenant_wide=unsanctioned.skipped_tenant_wide + done.skipped_tenant_wide,
        )
    return ExpirySummary(expired=expired, stale=stale, unsanctioned=unsanctioned)


def _hold_change(grants_qs: QuerySet[Grant], *, hold: bool, actor: Any, reason: str, now: datetime) -> int:
    count = 0
    wanted = grants_qs.filter(status__in=REVOCABLE, held_at__isnull=hold)
    for pks in _chunks(wanted):
        with transaction.atomic():
            rows = list(
                Grant.objects.select_for_update()
                .filter(pk__in=pks, status__in=REVOCABLE, held_at__isnull=hold)
                .only("pk", "status", "connector_id", "source_id", "external_id", "held_at", "hold_reason")
            )
            connectors = Connector.objects.in_bulk({g.connector_id for g in rows})
            previous = {g.pk: g.hold_reason for g in rows}
            for g in rows:
                g.held_at = now if hold else None
                g.hold_reason = reason[:300] if hold else ""
            Grant.objects.bulk_update(rows, ["held_at", "hold_reason"])
            audit.record_batch(
                {
                    "action": "grant.held" if hold else "grant.released",
                    "actor": actor,
                    "connector": connectors.get(g.connector_id),
                    "grant": g,
                    "target": g,
                    "data": {"reason": reason} | ({} if hold else {"held_because": previous[g.pk]}),
                }
                for g in rows
            )
            count += len(rows)
    return count


def grants_hold(*, grants_qs: QuerySet[Grant], actor: Any, reason: str, now: datetime | None = None) -> int:
    """Hold active grants not yet held (they stay at the IdP but count as unusable); one event each."""
    return _hold_change(grants_qs, hold=True, actor=actor, reason=reason, now=now or timezone.now())


def grants_release(
    *, grants_qs: QuerySet[Grant], actor: Any, reason: str, now: datetime | None = None
) -> int:
    """Release held grants that are still active or expired; one event each."""
    return _hold_change(grants_qs, hold=False, actor=actor, reason=reason, now=now or timezone.now())


# ---------------------------------------------------------------------------------------- connectors


def connector_revoke(
    *, connector: Connector, actor: Any, reason: str, confirm_tenant_wide: bool = False
) -> Connector:
    """Revoke a connector and start revoking every one of its grants at its IdP."""
    now = timezone.now()
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        connector.check_transition(Connector.Status.REVOKED)
        tenant_wide = connector.grants.filter(
            status__in=REVOCABLE, consent_type=Grant.ConsentType.ALL_PRINCIPALS, source__isnull=False
        ).count()
        if tenant_wide and not confirm_tenant_wide:
            raise TenantWideConfirmationRequired(
                _tenant_wide_message(f"Connector '{connector.name}' holds {tenant_wide} grant(s) that")
            )
        previous = connector.status
        connector.status = Connector.Status.REVOKED
        connector.status_changed_at = now
        connector.save(update_fields=["status", "status_changed_at"])
        audit.record(
            "connector.revoked",
            actor=actor,
            connector=connector,
            target=connector,
            data={"reason": reason, "from": previous},
        )
        signals.connector_status_changed.send(
            sender=Connector, connector=connector, status=connector.status, previous=previous, reason=reason
        )
        grant_revoke_many(
            grants_qs=Grant.objects.filter(connector=connector),
            actor=actor,
            reason=reason,
            confirm_tenant_wide=confirm_tenant_wide,
        )
    return connector


def connectors_dismiss_discovered_by_keys(*, key_ids: Iterable[int], actor: Any, reason: str) -> int:
    """Reject every still-discovered connector the given ingest keys created; one event each."""
    # What a leaked key or a buggy gateway filled the register with goes in one step. Only connectors
    # still discovered: one IAM has since sanctioned, requested or merged is left as it is.
    now = timezone.now()
    count = 0
    wanted = Connector.objects.filter(discovered_by_key__in=list(key_ids), status=Connector.Status.DISCOVERED)
    for pks in _chunks(wanted):
        with transaction.atomic():
            rows = list(
                Connector.objects.select_for_update()
                .filter(pk__in=pks, status=Connector.Status.DISCOVERED)
                .only("pk", "name", "status", "status_changed_at", "discovered_by_key_id")
            )
            for c in rows:
                c.status = Connector.Status.REJECTED
                c.status_changed_at = now
            Connector.objects.bulk_update(rows, ["status", "status_changed_at"])
            audit.record_batch(
                {
                    "action": "connector.dismissed",
                    "actor": actor,
                    "connector": c,
                    "target": c,
                    "data": {
                        "reason": reason,
                        "from": Connector.Status.DISCOVERED,
                        "ingest_key": c.discovered_by_key_id,
                    },
                }
                for c in rows
            )
            count += len(rows)
    return count


# ---------------------------------------------------------------------------------------- identities


def _send_status_changed(identity_ids: list[int], status: str, source_id: int | None) -> None:
    signals.identity_status_changed.send(
        sender=Identity, identity_ids=identity_ids, status=status, source_id=source_id
    )


def identity_set_status(*, identity: Identity, status: str, actor: Any = None, reason: str = "") -> Identity:
    """Change an identity's status; a newly suspended or deprovisioned one starts offboarding on commit."""
    now = timezone.now()
    with transaction.atomic():
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        if identity.status == status:
            return identity
        previous = identity.status
        identity.status = status
        identity.status_changed_at = now
        identity.save(update_fields=["status", "status_changed_at"])
        identities_record_status_changes(
            changes=[(identity, previous)], source=identity.source, actor=actor, reason=reason
        )
        identities_announce_status_changes(changed={status: [identity.pk]}, source_id=identity.source_id)
    return identity


def identities_record_status_changes(
    *,
    changes: Iterable[tuple[Identity, str | None]],
    source: IdentitySource | None,
    actor: Any = None,
    reason: str = "",
) -> int:
    """Record one audit event per identity whose status was just changed (``(identity, previous)``)."""
    changes = list(changes)
    recorded = audit.record_batch(
        {
            "action": IDENTITY_ACTIONS[identity.status],
            "actor": actor,
            "source": source,
            "target": identity,
            "data": {"from": previous, "to": identity.status, "email": identity.email}
            | ({"reason": reason} if reason else {}),
        }
        for identity, previous in changes
    )
    by_status: dict[str, list[int]] = {}
    for identity, _ in changes:
        by_status.setdefault(identity.status, []).append(identity.pk)
    source_id = source.pk if source is not None else None
    for status, ids in by_status.items():
        signals.identities_status_recorded.send(
            sender=Identity, identity_ids=ids, status=status, source_id=source_id
        )
    return recorded


def identities_announce_status_changes(*, changed: dict[str, list[int]], source_id: int | None) -> None:
    """Send identity_status_changed for identities whose status just changed, once committed."""
    for status, ids in changed.items():
        for i in range(0, len(ids), 1000):
            chunk = list(ids[i : i + 1000])
            transaction.on_commit(lambda c=chunk, s=status: _send_status_changed(c, s, source_id))
