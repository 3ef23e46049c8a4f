"""Launching a campaign: route each grant to a reviewer and queue one email per reviewer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.services import record

from ..models import Attestation, AttestationCampaign, ManagerReview
from .routing import (
    AttestationError,
    _owner_identities,
    campaign_grants,
    first_active_above,
    manager_chains,
    people_of,
)

CStatus = AttestationCampaign.Status


def _check_campaign_input(campaign: AttestationCampaign, now: datetime) -> None:
    if campaign.deadline <= now:
        raise AttestationError(f"Campaign '{campaign.name}': the deadline has already passed.")
    days = campaign.reminder_days or []
    if not isinstance(days, list) or not all(isinstance(d, int) and d > 0 for d in days):
        raise AttestationError(f"Campaign '{campaign.name}': reminder days must be positive whole numbers.")


def campaign_launch(*, campaign: AttestationCampaign, actor: Any) -> AttestationCampaign:
    """Create an attestation per grant in scope and a review per manager, then email each manager once."""
    now = timezone.now()
    with transaction.atomic():
        campaign = AttestationCampaign.objects.select_for_update().get(pk=campaign.pk)
        campaign.check_transition(CStatus.RUNNING)
        _check_campaign_input(campaign, now)
        rows = list(
            campaign_grants(campaign).values_list("pk", "identity_id", "connector__business_owner_id")
        )
        holders = {holder for _, holder, _ in rows}
        chains = manager_chains(holders)
        reviewer_of = {holder: first_active_above(holder, chains) for holder in chains}
        owners = _owner_identities(
            {owner for _, holder, owner in rows if owner and not reviewer_of.get(holder)}
        )
        # One report per person: a person's grants from every source are listed under their primary
        # identity, and nobody reviews a grant of their own person.
        people = people_of((holders | set(reviewer_of.values()) | set(owners.values())) - {None})
        attestations, unrouted = [], []
        for grant_id, holder, owner_user in rows:
            reviewer = reviewer_of.get(holder) or owners.get(owner_user)
            holder_person, report = people[holder]
            if (
                reviewer is None
                or reviewer == holder
                or (holder_person is not None and people[reviewer][0] == holder_person)
            ):
                unrouted.append(grant_id)
                continue
            attestations.append(
                Attestation(campaign=campaign, grant_id=grant_id, identity_id=report, manager_id=reviewer)
            )
        Attestation.objects.bulk_create(attestations, batch_size=1000)
        managers = sorted({a.manager_id for a in attestations})
        ManagerReview.objects.bulk_create(
            [ManagerReview(campaign=campaign, manager_id=m) for m in managers], batch_size=1000
        )
        campaign.status = CStatus.RUNNING
        campaign.launched_by = actor if isinstance(actor, AbstractBaseUser) else None
        campaign.launched_at = now
        campaign.unrouted_grant_ids = unrouted
        campaign.save(update_fields=["status", "launched_by", "launched_at", "unrouted_grant_ids"])
        record(
            "attestation.campaign_launched",
            actor=actor,
            target=campaign,
            data={
                "grants": len(attestations),
                "managers": len(managers),
                "unrouted": len(unrouted),
                "policy": campaign.policy,
                "deadline": campaign.deadline.isoformat(),
            },
        )
        review_ids = list(ManagerReview.objects.filter(campaign=campaign).values_list("pk", flat=True))
        transaction.on_commit(lambda: _enqueue_mail(review_ids, "launch"))
    return campaign


def _enqueue_mail(review_ids: Iterable[int], kind: str) -> None:
    from ..tasks import attestation_mail

    for review_id in review_ids:
        attestation_mail.delay(review_id, kind)
