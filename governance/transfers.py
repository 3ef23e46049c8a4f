"""Ownership transfers: an owner hands a connector over (or offboarding does), the new owner accepts.

Object permissions (view, decide, revoke) move with acceptance, through
``governance.services.connector_set_owner``; until then nothing changes for either person.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.services import record
from connectors.models import Connector, check_transition

from .emails import absolute_url, iam_staff_emails, send_templated
from .models import OwnershipTransfer, User
from .services import connector_set_owner

TStatus = OwnershipTransfer.Status
CLOSED_CONNECTOR = (Connector.Status.REVOKED, Connector.Status.REJECTED)


class TransferError(Exception):
    """A transfer step refused for a reason other than the lifecycle: bad input, stale state."""


class TransferNotAllowed(TransferError):
    """The actor may not take this step."""


def can_manage_owners(user: User) -> bool:
    """Return whether ``user`` may hand any connector over (IAM staff)."""
    return user.has_perm("connectors.change_connector")


def _lock(transfer: OwnershipTransfer) -> OwnershipTransfer:
    return (
        OwnershipTransfer.objects.select_for_update(of=("self",))
        .select_related("connector", "from_user", "to_user")
        .get(pk=transfer.pk)
    )


def _move(transfer: OwnershipTransfer, status: str, now) -> None:
    check_transition(OwnershipTransfer.TRANSITIONS, transfer.status, status, f"Transfer #{transfer.pk}")
    transfer.status = status
    transfer.decided_at = now


def transfer_url(transfer_id: int) -> str:
    """Return the absolute link to a transfer's page."""
    return absolute_url(reverse("attest:transfer_detail", args=[transfer_id]))


def _mail(template: str, transfer_id: int, to: str | list[str]) -> None:
    transfer = OwnershipTransfer.objects.select_related("connector", "from_user", "to_user").get(
        pk=transfer_id
    )
    send_templated(
        template,
        to,
        {"transfer": transfer, "connector": transfer.connector, "link": transfer_url(transfer.pk)},
    )


def transfer_mail_offered(transfer_id: int) -> None:
    """Tell the proposed owner that a connector waits for them."""
    transfer = OwnershipTransfer.objects.select_related("to_user").get(pk=transfer_id)
    _mail("emails/transfer_offered", transfer_id, transfer.to_user.email)


def transfer_offer(*, connector: Connector, to_user: User, actor: User, note: str = "") -> OwnershipTransfer:
    """Offer a connector to a new business owner, who must accept before anything moves."""
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        if actor.pk != connector.business_owner_id and not can_manage_owners(actor):
            raise TransferNotAllowed(
                f"Only the business owner of '{connector.name}' or IAM can hand it over."
            )
        if connector.status in CLOSED_CONNECTOR:
            raise TransferError(
                f"'{connector.name}' is {connector.get_status_display().lower()}: nothing to own."
            )
        if not to_user.is_active:
            raise TransferError(f"{to_user} has no active account.")
        if to_user.pk == connector.business_owner_id:
            raise TransferError(f"{to_user} already owns '{connector.name}'.")
        pending = OwnershipTransfer.objects.filter(connector=connector, status=TStatus.PENDING).first()
        if pending is not None:
            raise TransferError(
                f"'{connector.name}' is already offered to {pending.to_user}; cancel that first."
            )
        transfer = OwnershipTransfer.objects.create(
            connector=connector,
            from_user_id=connector.business_owner_id,
            to_user=to_user,
            reason=OwnershipTransfer.Reason.HANDOVER,
            note=(note or "").strip(),
            created_at=timezone.now(),
        )
        record(
            "transfer.offered",
            actor=actor,
            connector=connector,
            target=transfer,
            data={"reason": transfer.reason, "to": to_user.email, "from_user": connector.business_owner_id},
        )
        transaction.on_commit(lambda: transfer_mail_offered(transfer.pk))
    return transfer


def transfer_accept(*, transfer: OwnershipTransfer, actor: User) -> OwnershipTransfer:
    """Accept a connector: its ownership and the owner's object permissions move to the new owner."""
    now = timezone.now()
    with transaction.atomic():
        transfer = _lock(transfer)
        if actor.pk != transfer.to_user_id:
            raise TransferNotAllowed("Only the person it is offered to can accept this transfer.")
        _move(transfer, TStatus.ACCEPTED, now)
        owner_now = Connector.objects.filter(pk=transfer.connector_id).values_list(
            "business_owner_id", flat=True
        )[0]
        if owner_now not in (None, transfer.from_user_id):
            raise TransferError(
                f"'{transfer.connector.name}' changed owner since this offer; ask IAM for a new transfer."
            )
        connector_set_owner(connector=transfer.connector, owner=actor, actor=actor)
        transfer.save(update_fields=["status", "decided_at"])
        record(
            "transfer.accepted",
            actor=actor,
            connector=transfer.connector,
            target=transfer,
            data={"reason": transfer.reason, "from_user": transfer.from_user_id, "to": actor.email},
        )
        if transfer.from_user is not None and transfer.from_user.is_active:
            to = transfer.from_user.email
            transaction.on_commit(lambda: _mail("emails/transfer_accepted", transfer.pk, to))
    return transfer


def transfer_decline(*, transfer: OwnershipTransfer, actor: User, reason: str) -> OwnershipTransfer:
    """Decline a connector; whoever offered it (IAM, after offboarding) is told why."""
    reason = (reason or "").strip()
    if not reason:
        raise TransferError("Say why you decline, so the connector can find another owner.")
    now = timezone.now()
    with transaction.atomic():
        transfer = _lock(transfer)
        if actor.pk != transfer.to_user_id:
            raise TransferNotAllowed("Only the person it is offered to can decline this transfer.")
        _move(transfer, TStatus.DECLINED, now)
        transfer.note = f"{transfer.note}\n\nDeclined: {reason}".strip()
        transfer.save(update_fields=["status", "decided_at", "note"])
        record(
            "transfer.declined",
            actor=actor,
            connector=transfer.connector,
            target=transfer,
            data={"reason": transfer.reason, "why": reason},
        )
        from_user = transfer.from_user
        if (
            transfer.reason == OwnershipTransfer.Reason.HANDOVER
            and from_user is not None
            and from_user.is_active
        ):
            to: Any = from_user.email
        else:
            to = iam_staff_emails()
        transaction.on_commit(lambda: _mail("emails/transfer_declined", transfer.pk, to))
    return transfer


def transfer_cancel(*, transfer: OwnershipTransfer, actor: User) -> OwnershipTransfer:
    """Withdraw a pending offer (the owner who made it, or IAM)."""
    now = timezone.now()
    with transaction.atomic():
        transfer = _lock(transfer)
        if actor.pk != transfer.from_user_id and not can_manage_owners(actor):
            raise TransferNotAllowed("Only the owner who offered it or IAM can cancel this transfer.")
        _move(transfer, TStatus.CANCELLED, now)
        transfer.save(update_fields=["status", "decided_at"])
        record("transfer.cancelled", actor=actor, connector=transfer.connector, target=transfer)
    return transfer
