"""Review emails: claim a review's mail once, render it and send it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from ..emails import send_templated
from ..models import AttestationCampaign, ManagerReview
from .links import review_groups, review_url
from .routing import AttestationError

CStatus = AttestationCampaign.Status


MAIL_TEMPLATES = {
    "launch": "emails/attestation_request",
    "reminder": "emails/attestation_reminder",
    "escalation": "emails/attestation_escalation",
}


def _claim_mail(review: ManagerReview, kind: str, now: datetime) -> tuple[bool, dict[str, Any]]:
    """Mark the mail as sent unless it already was; return (claimed, the values to put back on failure)."""
    qs = ManagerReview.objects.filter(pk=review.pk, campaign__status=CStatus.RUNNING)
    if kind == "launch":
        n = qs.filter(notified_at=None).update(notified_at=now)
        return bool(n), {"notified_at": None}
    if kind == "reminder":
        n = qs.filter(completed_at=None, reminders_mailed__lt=F("reminders_sent")).update(
            reminders_mailed=F("reminders_sent")
        )
        return bool(n), {"reminders_mailed": review.reminders_mailed}
    if kind == "escalation":
        n = qs.filter(completed_at=None, escalated_to__isnull=False, escalation_mailed_at=None).update(
            escalation_mailed_at=now
        )
        return bool(n), {"escalation_mailed_at": None}
    raise AttestationError(f"Unknown attestation mail {kind!r}.")


def review_mail_send(*, review_id: int, kind: str) -> bool:
    """Send a manager's launch, reminder or escalation email once; False when none was due."""
    review = (
        ManagerReview.objects.select_related("campaign", "manager", "escalated_to")
        .filter(pk=review_id)
        .first()
    )
    if review is None:
        return False
    now = timezone.now()
    claimed, restore = _claim_mail(review, kind, now)
    if not claimed:
        return False
    try:
        campaign = review.campaign
        recipient = review.escalated_to if kind == "escalation" else review.manager
        groups = review_groups(
            campaign.pk, recipient.pk, manager_id=review.manager_id, pending_only=kind != "launch"
        )
        context = {
            "campaign": campaign,
            "manager": review.manager,
            "recipient": recipient,
            "groups": groups,
            "grant_count": sum(len(g.items) for g in groups),
            "pending_count": sum(len(g.pending) for g in groups),
            "review": review,
            "link": review_url(campaign, recipient.pk),
        }
        send_templated(MAIL_TEMPLATES[kind], recipient.email, context)
    except Exception:
        ManagerReview.objects.filter(pk=review.pk).update(**restore)
        raise
    return True
