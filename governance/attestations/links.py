"""Review links and what a reviewer sees: signed URLs, opening a link, the grants grouped by report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
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
    return review_check(campaign_id=campaign_id, reviewer_id=reviewer_id)


SESSION_KEY = "lanyard_attestation_reviews"


def review_session_start(session: Any, *, campaign: AttestationCampaign, reviewer: Identity) -> datetime:
    """Remember in the session that it may review ``reviewer``'s part of ``campaign``; return until when.

    The page then lives at a URL without the token, so no access log, browser history or Referer
    keeps the bearer credential. The session lasts LANYARD_ATTESTATION_SESSION_MINUTES at most and
    never past the campaign deadline, whatever the token said.
    """
    now = timezone.now()
    until = min(now + timedelta(minutes=settings.LANYARD_ATTESTATION_SESSION_MINUTES), campaign.deadline)
    reviews = dict(session.get(SESSION_KEY) or {})
    reviews = {k: v for k, v in reviews.items() if v > now.timestamp()}
    reviews[f"{campaign.pk}:{reviewer.pk}"] = until.timestamp()
    session[SESSION_KEY] = reviews
    return until


def review_session_open(
    session: Any, *, campaign_id: int, reviewer_id: int
) -> tuple[AttestationCampaign, Identity]:
    """Return the campaign and reviewer the session may review, or raise tokens.LinkRefused."""
    until = (session.get(SESSION_KEY) or {}).get(f"{campaign_id}:{reviewer_id}")
    if until is None:
        # No link was opened in this browser: as good as no token at all.
        raise tokens.LinkRefused("tampered")
    if timezone.now().timestamp() >= until:
        raise tokens.LinkRefused("session_expired", campaign_id=campaign_id, reviewer_id=reviewer_id)
    return review_check(campaign_id=campaign_id, reviewer_id=reviewer_id)


def review_check(*, campaign_id: int, reviewer_id: int) -> tuple[AttestationCampaign, Identity]:
    """Return the campaign and reviewer if the review is open to them now, or raise tokens.LinkRefused."""
    campaign = AttestationCampaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CStatus.RUNNING:
        raise tokens.LinkRefused("closed", campaign_id=campaign_id, reviewer_id=reviewer_id)
    # The deadline is checked here, on every use: a token's own expiry never reaches past it.
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
