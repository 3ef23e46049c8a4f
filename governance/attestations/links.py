"""Review links and what a reviewer sees: signed URLs, opening a link, the grants grouped by report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from connectors.models import Device, Identity

from .. import tokens
from ..emails import absolute_url
from ..models import Attestation, AttestationCampaign

Decision = Attestation.Decision
CStatus = AttestationCampaign.Status


@dataclass
class ReportGroup:
    """One direct report and the attestations about their grants."""

    identity: Identity
    items: list[Attestation] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    on_behalf_of: Identity | None = None  # the manager whose review this is, when escalated

    @property
    def pending(self) -> list[Attestation]:
        return [a for a in self.items if a.decision == Decision.PENDING]


def reviewable(campaign_id: int, reviewer_id: int) -> QuerySet[Attestation]:
    """Return the attestations a reviewer may decide: their own reports' and those escalated to them."""
    return Attestation.objects.filter(campaign_id=campaign_id).filter(
        Q(manager_id=reviewer_id) | Q(escalated_to_id=reviewer_id)
    )


def review_groups(
    campaign_id: int, reviewer_id: int, *, manager_id: int | None = None, pending_only: bool = False
) -> list[ReportGroup]:
    """Return a reviewer's attestations grouped by report, with grants, connectors and devices loaded."""
    qs = (
        reviewable(campaign_id, reviewer_id)
        if manager_id is None
        else Attestation.objects.filter(campaign_id=campaign_id, manager_id=manager_id)
    )
    if pending_only:
        qs = qs.filter(decision=Decision.PENDING)
    qs = qs.select_related(
        "identity", "manager", "decided_by", "grant__connector", "grant__device", "grant__source"
    ).order_by("manager__email", "identity__email", "grant__connector__name", "pk")
    groups: dict[int, ReportGroup] = {}
    for a in qs:
        group = groups.get(a.identity_id)
        if group is None:
            on_behalf = a.manager if manager_id is None and a.manager_id != reviewer_id else None
            group = groups[a.identity_id] = ReportGroup(identity=a.identity, on_behalf_of=on_behalf)
        group.items.append(a)
    devices = defaultdict(list)
    for device in Device.objects.filter(owner_id__in=groups.keys()).order_by("name"):
        devices[device.owner_id].append(device)
    for identity_id, group in groups.items():
        group.devices = devices.get(identity_id, [])
    return list(groups.values())


def review_url(campaign: AttestationCampaign, reviewer_id: int) -> str:
    """Return the absolute signed link to a reviewer's page; it expires at the campaign deadline."""
    token = tokens.make_review_token(
        campaign_id=campaign.pk, reviewer_id=reviewer_id, expires_at=campaign.deadline
    )
    path = reverse("attest:review", args=[campaign.pk, reviewer_id])
    return absolute_url(f"{path}?t={token}")


def review_open(*, token: str, campaign_id: int, reviewer_id: int) -> tuple[AttestationCampaign, Identity]:
    """Return the campaign and reviewer a link is for, or raise tokens.LinkRefused; never changes anything."""
    claim = tokens.read_review_token(token or "")
    if claim.campaign_id != campaign_id or claim.reviewer_id != reviewer_id:
        raise tokens.LinkRefused(
            "wrong_manager", campaign_id=claim.campaign_id, reviewer_id=claim.reviewer_id
        )
    campaign = AttestationCampaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CStatus.RUNNING:
        raise tokens.LinkRefused("closed", campaign_id=claim.campaign_id, reviewer_id=claim.reviewer_id)
    if timezone.now() >= campaign.deadline:
        raise tokens.LinkRefused("expired", campaign_id=campaign.pk, reviewer_id=reviewer_id)
    reviewer = Identity.objects.filter(pk=reviewer_id).first()
    if reviewer is None or not reviewable(campaign.pk, reviewer.pk).exists():
        raise tokens.LinkRefused("wrong_manager", campaign_id=campaign.pk, reviewer_id=reviewer_id)
    return campaign, reviewer


def link_refused_record(
    refused: tokens.LinkRefused, *, path: str, ip: str | None, user_agent: str
) -> AuditEvent:
    """Record a refused review link (the reason, never the token)."""
    campaign = (
        AttestationCampaign.objects.filter(pk=refused.campaign_id).first() if refused.campaign_id else None
    )
    reviewer = Identity.objects.filter(pk=refused.reviewer_id).first() if refused.reviewer_id else None
    with transaction.atomic():
        return record(
            "attestation.link_refused",
            actor=reviewer or "anonymous",
            outcome=AuditEvent.Outcome.DENIED,
            target=campaign,
            ip=ip,
            user_agent=user_agent,
            data={"reason": refused.reason, "path": path[:200]},
        )
