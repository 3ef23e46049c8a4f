"""Offboarding: a deprovisioned identity loses its grants and its connectors go to its manager.

A sync that finds identities newly deprovisioned sends ``connectors.signals.identity_status_changed``
after its commit; the receiver here queues ``governance.offboard_identity`` per identity. IAM can
also call ``identity_offboard`` by hand.

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
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.services import record
from connectors.models import Connector, Grant, Identity

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


def identity_offboard(*, identity: Identity, actor: Any) -> dict[str, int]:
    """Revoke the identity's active grants and hand the connectors its person owned to their manager."""
    if isinstance(actor, AbstractBaseUser) and not actor.has_perm("connectors.change_identity"):
        raise OffboardingNotAllowed("Only IAM staff can offboard an identity.")
    from connectors.services import grant_revoke_many

    now = timezone.now()
    with transaction.atomic():
        identity = Identity.objects.select_for_update(of=("self",)).select_related("user").get(pk=identity.pk)
        revoked = grant_revoke_many(
            grants_qs=Grant.objects.filter(identity=identity),
            actor=actor,
            reason=f"Offboarding: {identity.email} left",
        )

        user = departing_user(identity)
        still_here = (
            user is not None
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


def on_identity_status_changed(sender: Any, *, identity_ids: list[int], status: str, **kwargs: Any) -> None:
    """Queue offboarding for identities a sync found deprovisioned."""
    if status != Identity.Status.DEPROVISIONED:
        return
    from .tasks import offboard_identity

    for identity_id in identity_ids:
        offboard_identity.delay(identity_id)
