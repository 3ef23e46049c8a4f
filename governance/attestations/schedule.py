"""Scheduled campaigns (monthly, quarterly) and the demo campaign."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import AttestationCampaign
from .launch import campaign_launch
from .routing import DEMO_CAMPAIGN_NAME

CStatus = AttestationCampaign.Status


def schedule_period(now: datetime, schedule: str) -> str:
    """Return the period key for ``now`` ("2026-Q4", "2026-11"), or "" when there is no schedule."""
    if schedule == "quarterly":
        return f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    if schedule == "monthly":
        return f"{now.year}-{now.month:02d}"
    return ""


def campaign_schedule_run() -> AttestationCampaign | None:
    """Create and launch this period's campaign (``LANYARD_ATTESTATION_SCHEDULE``) unless it exists."""
    now = timezone.now()
    period = schedule_period(now, settings.LANYARD_ATTESTATION_SCHEDULE)
    if not period or AttestationCampaign.objects.filter(schedule_period=period).exists():
        return None
    try:
        with transaction.atomic():
            campaign = AttestationCampaign.objects.create(
                name=f"AI access review {period}",
                schedule_period=period,
                policy=settings.LANYARD_ATTESTATION_POLICY,
                deadline=now + timedelta(days=settings.LANYARD_ATTESTATION_DEADLINE_DAYS),
                reminder_days=list(settings.LANYARD_ATTESTATION_REMINDER_DAYS),
                escalate_after_reminders=settings.LANYARD_ATTESTATION_ESCALATE_AFTER,
            )
    except IntegrityError:
        return None  # another beat got there first
    return campaign_launch(campaign=campaign, actor="schedule")


def demo_campaign(*, actor: Any) -> AttestationCampaign:
    """Launch a running demo campaign over every grant (or return the one already running)."""
    existing = AttestationCampaign.objects.filter(name=DEMO_CAMPAIGN_NAME, status=CStatus.RUNNING).first()
    if existing is not None:
        return existing
    campaign = AttestationCampaign.objects.create(
        name=DEMO_CAMPAIGN_NAME,
        policy=AttestationCampaign.Policy.FLAG,
        deadline=timezone.now() + timedelta(days=14),
        reminder_days=[7, 3, 1],
        escalate_after_reminders=2,
    )
    return campaign_launch(campaign=campaign, actor=actor)
