"""Offboarding: a person who leaves loses their grants in every source; their connectors go to their manager.

It acts on the **person** (``connectors.people``): a person deprovisioned or suspended in the source
IAM trusts for HR data (``IdentitySource.hr_authoritative``, else the first source with manager data)
is so in every source, so the grants of all their identities are revoked or held
(``connectors.selectors.identities_standing``). An identity's own worse status (removed from one
GitHub organisation while still employed) counts for that identity alone.

Offboarding is **level-triggered**: after every successful sync (``connectors.signals.sync_succeeded``),
every hour (beat), and when an identity's status is changed by hand (``identity_status_changed``),
``offboarding_reconcile`` compares each identity's status with its grants and acts on what is out of
line, whenever the identity got that status (a first sync that failed after committing identities
leaves nothing behind):

- deprovisioned: ``identity_offboard`` (below) while the identity holds a revocable grant, or its
  person still owns a connector or is offered one;
- suspended: its active grants are **held** at once (``Grant.held_at``/``hold_reason``: the grant stays
  at the IdP, the decision point must refuse it and attestations show it held); once the suspension
  is ``LANYARD_OFFBOARD_SUSPENDED_DAYS`` old (0: at once) the identity is offboarded like a
  deprovisioned one;
- active again: its held grants are released.

IAM can also call ``identity_offboard`` by hand.

What happens:
- every active grant of the identity is revoked through ``connectors.services.grant_revoke_many``;
- each connector whose business owner is the identity's user (when that person has no other
  active identity) loses its owner at once, so the dashboard counts it as "owner missing", and
  is offered to the first active manager above the identity who has a Lanyard account, as a
  pending ``OwnershipTransfer`` (reason offboarding) with an email. With no such manager it stays
  ownerless for IAM to assign.
- pending transfers offered to the departing user are cancelled.
Running it again changes nothing and records nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.checks import Error
from django.db import transaction
from django.db.models import Min, Q
from django.db.models.functions import Lower
from django.utils import timezone

from audit.services import record, values_in
from connectors.models import Connector, Grant, Identity
from connectors.selectors import identities_standing

from .attestations import first_active_above, manager_chains
from .models import OwnershipTransfer, User
from .services import connector_set_owner
from .transfers import CLOSED_CONNECTOR, transfer_mail_offered

logger = logging.getLogger(__name__)


class OffboardingNotAllowed(Exception):
    """The actor may not offboard identities."""


def departing_user(identity: Identity) -> User | None:
    """Return the Lanyard account of the person behind ``identity`` (linked, else by email)."""
    if identity.user_id:
        return identity.user
    return User.objects.filter(email__iexact=identity.email).first()


def next_owner(identity: Identity) -> User | None:
    """Return the Lanyard account of the first active manager above the identity that has one."""
    chains = manager_chains([identity.pk])
    current = identity.pk
    for _ in range(len(chains)):
        current = first_active_above(current, chains)
        if current is None:
            return None
        manager = Identity.objects.select_related("user").get(pk=current)
        if manager.user is not None and manager.user.is_active:
            return manager.user
    return None


def identity_offboard(
    *, identity: Identity, actor: Any, why: str = "", person_left: bool = False
) -> dict[str, int]:
    """Revoke the identity's active grants and hand the connectors its person owned to their manager.

    ``person_left``: the person is gone (their HR source says so), whatever other sources still show.
    """
    if isinstance(actor, AbstractBaseUser) and not actor.has_perm("connectors.change_identity"):
        raise OffboardingNotAllowed("Only IAM staff can offboard an identity.")
    from connectors.services import grant_revoke_many

    now = timezone.now()
    with transaction.atomic():
        identity = Identity.objects.select_for_update(of=("self",)).select_related("user").get(pk=identity.pk)
        revoked = grant_revoke_many(
            grants_qs=Grant.objects.filter(identity=identity),
            actor=actor,
            reason=f"Offboarding: {identity.email} {why or 'left'}",
        )

        user = departing_user(identity)
        still_here = (
            not person_left
            and user is not None
            and Identity.objects.filter(user=user, status=Identity.Status.ACTIVE)
            .exclude(pk=identity.pk)
            .exists()
        )
        connectors: list[Connector] = []
        if user is not None and not still_here:
            connectors = list(
                Connector.objects.filter(business_owner=user)
                .exclude(status__in=CLOSED_CONNECTOR)
                .order_by("pk")
            )
        heir = next_owner(identity) if connectors else None
        if heir is not None and heir.pk == (user.pk if user else None):
            heir = None
        transfers: list[OwnershipTransfer] = []
        for connector in connectors:
            connector_set_owner(connector=connector, owner=None, actor=actor)
            already = OwnershipTransfer.objects.filter(
                connector=connector, status=OwnershipTransfer.Status.PENDING
            )
            if heir is None or already.exists():
                continue  # an offer the owner made before leaving still stands
            transfers.append(
                OwnershipTransfer.objects.create(
                    connector=connector,
                    from_user=user,
                    to_user=heir,
                    reason=OwnershipTransfer.Reason.OFFBOARDING,
                    note=f"{identity.email} left; you are their manager.",
                    created_at=now,
                )
            )
        cancelled = 0
        if user is not None and not still_here:
            for transfer in OwnershipTransfer.objects.select_for_update().filter(
                to_user=user, status=OwnershipTransfer.Status.PENDING
            ):
                transfer.status = OwnershipTransfer.Status.CANCELLED
                transfer.decided_at = now
                transfer.note = f"{transfer.note}\n\nCancelled: {identity.email} left.".strip()
                transfer.save(update_fields=["status", "decided_at", "note"])
                cancelled += 1

        summary = {
            "grants_revoked": revoked.total,
            "connectors_unowned": len(connectors),
            "transfers_offered": len(transfers),
            "transfers_cancelled": cancelled,
        }
        if not any(summary.values()):
            return summary
        record(
            "identity.offboarded",
            actor=actor,
            target=identity,
            data={
                **summary,
                "identity": identity.email,
                "connectors": [c.pk for c in connectors],
                "heir": heir.email if heir else None,
            },
        )
        for transfer in transfers:
            transaction.on_commit(lambda pk=transfer.pk: transfer_mail_offered(pk))
    return summary


REVOCABLE = (Grant.Status.ACTIVE, Grant.Status.EXPIRED)


def _with_something_left(identity_ids: list[int]) -> list[Identity]:
    """Those of the identities that still hold a grant, own a connector or are offered one."""
    if not identity_ids:
        return []
    owners = set(
        Connector.objects.exclude(status__in=CLOSED_CONNECTOR)
        .exclude(business_owner=None)
        .values_list("business_owner_id", flat=True)
    )
    owners |= set(
        OwnershipTransfer.objects.filter(status=OwnershipTransfer.Status.PENDING).values_list(
            "to_user_id", flat=True
        )
    )
    emails = set(User.objects.filter(pk__in=owners).annotate(e=Lower("email")).values_list("e", flat=True))
    return list(
        Identity.objects.filter(values_in("pk", identity_ids))
        .annotate(email_lower=Lower("email"))
        .filter(
            Q(grants__status__in=REVOCABLE)
            | Q(user_id__in=owners)
            | Q(user__isnull=True, email_lower__in=emails)
        )
        .distinct()
        .order_by("pk")
    )


def offboarding_reconcile(
    *,
    source_id: int | None = None,
    identity_ids: list[int] | None = None,
    actor: Any = "system",
    now: datetime | None = None,
) -> dict[str, int]:
    """Bring grants and ownership in line with each person's status (all, one source's or a few).

    A person deprovisioned (or suspended) in the source IAM trusts for HR data is so in every source:
    the grants of all their identities are revoked (or held). Idempotent: what is already held,
    released, revoking or offered is left alone, so a second run revokes nothing twice, sends no
    second offer and records nothing.
    """
    from connectors.services import grants_hold, grants_release

    now = now or timezone.now()
    scope = None
    if source_id is not None or identity_ids is not None:
        qs = Identity.objects.all()
        if source_id is not None:
            qs = qs.filter(source_id=source_id)
        if identity_ids is not None:
            qs = qs.filter(pk__in=identity_ids)
        scope = list(qs.values_list("pk", flat=True))
    standing = identities_standing(scope)
    days = settings.LANYARD_OFFBOARD_SUSPENDED_DAYS
    cutoff = now - timedelta(days=days)
    by_status: dict[str, list[int]] = {s: [] for s in Identity.Status.values}
    for pk, st in standing.items():
        by_status.setdefault(st.status, []).append(pk)
    summary: Counter[str] = Counter()
    summary["released"] = grants_release(
        grants_qs=Grant.objects.filter(values_in("identity_id", by_status[Identity.Status.ACTIVE])),
        actor=actor,
        reason="identity active again",
        now=now,
    )
    summary["held"] = grants_hold(
        grants_qs=Grant.objects.filter(values_in("identity_id", by_status[Identity.Status.SUSPENDED])),
        actor=actor,
        reason=f"identity suspended: revoked after {days} day(s) of suspension unless it is active again",
        now=now,
    )
    held_since = dict(
        Grant.objects.filter(
            values_in("identity_id", by_status[Identity.Status.SUSPENDED]), held_at__isnull=False
        )
        .order_by()
        .values("identity_id")
        .annotate(first=Min("held_at"))
        .values_list("identity_id", "first")
    )

    def ripe(pk: int) -> bool:
        # Suspended long enough; an identity without a status time counts from its grants' hold.
        since = standing[pk].since or held_since.get(pk)
        return days == 0 or (since is not None and since <= cutoff)

    leaving = by_status[Identity.Status.DEPROVISIONED] + [
        pk for pk in by_status[Identity.Status.SUSPENDED] if ripe(pk)
    ]
    for identity in _with_something_left(sorted(leaving)):
        st = standing[identity.pk]
        why = "left" if st.status == Identity.Status.DEPROVISIONED else f"suspended for {days}+ days"
        if st.person_wide:
            why += " (as their source for HR data reports)"
        done = identity_offboard(identity=identity, actor=actor, why=why, person_left=st.person_wide)
        summary["offboarded"] += int(any(done.values()))
        for key, value in done.items():
            summary[key] += value
    return {k: v for k, v in summary.items() if v}


def on_sync_succeeded(sender: Any, *, source_id: int, **kwargs: Any) -> None:
    """Queue a reconcile of the synced source's identities."""
    from connectors.queueing import enqueue

    from .tasks import offboarding_reconcile as task

    enqueue(task, source_id=source_id, what=f"offboarding reconcile of source {source_id}")


def on_identity_status_changed(sender: Any, *, identity_ids: list[int], status: str, **kwargs: Any) -> None:
    """Queue a reconcile of identities whose status changed (deprovisioned, suspended, active again)."""
    from connectors.queueing import enqueue

    from .tasks import offboarding_reconcile as task

    enqueue(
        task, identity_ids=list(identity_ids), what=f"offboarding reconcile of {len(identity_ids)} identities"
    )


def check_offboarding_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """LANYARD_OFFBOARD_SUSPENDED_DAYS must be a whole number of days, 0 or more."""
    days = getattr(settings, "LANYARD_OFFBOARD_SUSPENDED_DAYS", 7)
    if not isinstance(days, int) or days < 0:
        return [
            Error(
                f"LANYARD_OFFBOARD_SUSPENDED_DAYS must be 0 or more, not {days!r}.",
                hint="Days a suspended identity's grants stay held before they are revoked; 0 is at once.",
                id="lanyard.E110",
            )
        ]
    return []
