"""Keep or revoke: a reviewer's decisions, and completing a review when nothing is left."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import record
from connectors.models import Grant, Identity

from .. import tokens
from ..models import Attestation, AttestationCampaign, ManagerReview
from .routing import AttestationError

Decision = Attestation.Decision
CStatus = AttestationCampaign.Status


def _revoke_grant(grant: Grant, *, actor: Any, reason: str) -> bool:
    """Revoke through the revocation flow when the grant is still live; False when already gone."""
    from connectors.services import grant_revoke

    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    if grant.status not in (Grant.Status.ACTIVE, Grant.Status.EXPIRED):
        return False
    grant_revoke(grant=grant, actor=actor, reason=reason[:300])
    return True


def _reviewer_actor(reviewer: Identity) -> Any:
    # Audit and revocation name the person's Lanyard account when they have one, else the identity.
    return reviewer.user if reviewer.user_id and reviewer.user.is_active else reviewer


def _complete_if_done(campaign_id: int, manager_ids: Iterable[int], now: datetime) -> None:
    done = set(manager_ids) - set(
        Attestation.objects.filter(
            campaign_id=campaign_id, manager_id__in=manager_ids, decision=Decision.PENDING
        ).values_list("manager_id", flat=True)
    )
    if done:
        ManagerReview.objects.filter(campaign_id=campaign_id, manager_id__in=done, completed_at=None).update(
            completed_at=now
        )


def _decide_locked(
    attestation: Attestation, *, reviewer: Identity, decision: str, comment: str, now: datetime
) -> Attestation:
    attestation.check_transition(decision)
    campaign = attestation.campaign
    revoked = None
    if decision == Decision.REVOKE:
        revoked = _revoke_grant(
            attestation.grant,
            actor=_reviewer_actor(reviewer),
            reason=f"Attestation '{campaign.name}': revoked by {reviewer.email}",
        )
    attestation.decision = decision
    attestation.comment = comment
    attestation.decided_by = reviewer
    attestation.decided_at = now
    attestation.save(update_fields=["decision", "comment", "decided_by", "decided_at"])
    record(
        "attestation.decided",
        actor=_reviewer_actor(reviewer),
        connector=attestation.grant.connector,
        grant=attestation.grant,
        target=attestation,
        data={
            "campaign": campaign.pk,
            "decision": decision,
            "holder": attestation.identity.email,
            "manager": attestation.manager.email,
            "decided_by": reviewer.email,
            "escalated": reviewer.pk != attestation.manager_id,
            "comment": comment,
            **({"grant_revoked": revoked} if revoked is not None else {}),
        },
    )
    return attestation


def attestation_decide_many(
    *, campaign: AttestationCampaign, reviewer: Identity, decisions: dict[int, tuple[str, str]]
) -> tuple[int, int]:
    """Record keep/revoke decisions {attestation id: (decision, comment)}; return (recorded, skipped)."""
    for decision, _ in decisions.values():
        if decision not in (Decision.KEEP, Decision.REVOKE):
            raise AttestationError(f"Unknown decision {decision!r}: choose keep or revoke.")
    now = timezone.now()
    with transaction.atomic():
        campaign = AttestationCampaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != CStatus.RUNNING or now >= campaign.deadline:
            raise tokens.LinkRefused("closed", campaign_id=campaign.pk, reviewer_id=reviewer.pk)
        rows = list(
            Attestation.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, pk__in=decisions.keys())
            .select_related("grant__connector", "identity", "manager")
            .order_by("pk")
        )
        allowed = {a.pk for a in rows if reviewer.pk in (a.manager_id, a.escalated_to_id)}
        if len(rows) != len(decisions) or allowed != set(decisions):
            raise tokens.LinkRefused("wrong_manager", campaign_id=campaign.pk, reviewer_id=reviewer.pk)
        recorded = skipped = 0
        for attestation in rows:
            attestation.campaign = campaign
            if attestation.decision != Decision.PENDING:
                skipped += 1
                continue
            decision, comment = decisions[attestation.pk]
            _decide_locked(
                attestation, reviewer=reviewer, decision=decision, comment=comment.strip(), now=now
            )
            recorded += 1
        _complete_if_done(campaign.pk, {a.manager_id for a in rows}, now)
    return recorded, skipped


def attestation_decide(
    *, attestation: Attestation, reviewer: Identity, decision: str, comment: str = ""
) -> Attestation:
    """Record one reviewer's keep/revoke decision; a revoke revokes the grant at its IdP."""
    with transaction.atomic():
        recorded, _ = attestation_decide_many(
            campaign=attestation.campaign, reviewer=reviewer, decisions={attestation.pk: (decision, comment)}
        )
        attestation = Attestation.objects.get(pk=attestation.pk)
        if not recorded:
            attestation.check_transition(decision)
    return attestation
