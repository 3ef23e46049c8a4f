"""Reminders, escalation to the manager's manager, and the deadline policy; the hourly tick."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit import services as audit
from audit.services import record
from connectors.models import Grant

from ..models import Attestation, AttestationCampaign, ManagerReview
from .launch import _enqueue_mail
from .routing import MAIL_RESEND_AFTER, escalation_target

Decision = Attestation.Decision
CStatus = AttestationCampaign.Status


def reminders_due(campaign: AttestationCampaign, now: datetime) -> int:
    """Return how many reminder days have been reached since the launch."""
    if campaign.launched_at is None:
        return 0
    return sum(
        1
        for days in campaign.reminder_days or []
        if campaign.launched_at < campaign.deadline - timedelta(days=days) <= now
    )


def _nudges_used(review: ManagerReview) -> int:
    return review.reminders_sent + (1 if review.escalated_at else 0)


def review_nudge(*, review: ManagerReview) -> str | None:
    """Send the reminder or escalation that is due for one manager; return what was done, or None."""
    now = timezone.now()
    with transaction.atomic():
        review = (
            ManagerReview.objects.select_for_update(of=("self",))
            .select_related("campaign", "manager")
            .get(pk=review.pk)
        )
        campaign = review.campaign
        if campaign.status != CStatus.RUNNING or review.completed_at or now >= campaign.deadline:
            return None
        if reminders_due(campaign, now) <= _nudges_used(review):
            return None
        if review.escalated_at is None and review.reminders_sent >= campaign.escalate_after_reminders:
            target = escalation_target(review.manager)
            review.escalated_to = target
            review.escalated_at = now
            review.save(update_fields=["escalated_to", "escalated_at"])
            pending = Attestation.objects.filter(
                campaign=campaign, manager=review.manager, decision=Decision.PENDING
            )
            if target is not None:
                pending.update(escalated_to=target)
            record(
                "attestation.escalated",
                actor="system",
                target=review,
                data={
                    "campaign": campaign.pk,
                    "manager": review.manager.email,
                    "escalated_to": target.email if target else None,
                    "reminders_sent": review.reminders_sent,
                    "pending": pending.count(),
                },
            )
            if target is not None:
                transaction.on_commit(lambda: _enqueue_mail([review.pk], "escalation"))
            return "escalated"
        review.reminders_sent += 1
        review.last_reminded_at = now
        review.save(update_fields=["reminders_sent", "last_reminded_at"])
        record(
            "attestation.reminder_sent",
            actor="system",
            target=review,
            data={
                "campaign": campaign.pk,
                "manager": review.manager.email,
                "reminder": review.reminders_sent,
            },
        )
        transaction.on_commit(lambda: _enqueue_mail([review.pk], "reminder"))
        return "reminded"


CLOSE_CHUNK = 500


def _expire_chunk(campaign: AttestationCampaign, rows: list[Attestation], actor: Any, now: datetime) -> None:
    """Apply the policy to a chunk of pending attestations: bulk writes, one audit event each."""
    if campaign.policy == AttestationCampaign.Policy.REVOKE:
        from connectors.services import grant_revoke_many

        decision = Decision.AUTO_REVOKED
        live = set(
            Grant.objects.filter(
                pk__in=[a.grant_id for a in rows], status__in=[Grant.Status.ACTIVE, Grant.Status.EXPIRED]
            ).values_list("pk", flat=True)
        )
        grant_revoke_many(
            grants_qs=Grant.objects.filter(pk__in=live),
            actor=actor,
            reason=f"Attestation '{campaign.name}': unanswered at the deadline"[:300],
        )
    else:
        decision, live = Decision.FLAGGED, set()
    for attestation in rows:
        attestation.check_transition(decision)
        attestation.decision = decision
        attestation.decided_at = now
    Attestation.objects.filter(pk__in=[a.pk for a in rows]).update(decision=decision, decided_at=now)
    audit.record_batch(
        {
            "action": "attestation.decided",
            "actor": actor,
            "connector": a.grant.connector,
            "grant": a.grant,
            "target": a,
            "data": {
                "campaign": campaign.pk,
                "decision": decision,
                "holder": a.identity.email,
                "manager": a.manager.email,
                "policy": campaign.policy,
                **({"grant_revoked": a.grant_id in live} if decision == Decision.AUTO_REVOKED else {}),
            },
        }
        for a in rows
    )


def campaign_close(*, campaign: AttestationCampaign, actor: Any) -> AttestationCampaign:
    """Apply the campaign's policy to every pending attestation, then close the campaign."""
    now = timezone.now()
    with transaction.atomic():
        campaign = AttestationCampaign.objects.select_for_update().get(pk=campaign.pk)
        campaign.check_transition(CStatus.CLOSED)
        pending = (
            Attestation.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, decision=Decision.PENDING)
            .select_related("grant__connector", "identity", "manager")
            .order_by("pk")
        )
        expired, last = 0, 0
        while rows := list(pending.filter(pk__gt=last)[:CLOSE_CHUNK]):
            _expire_chunk(campaign, rows, actor, now)
            expired += len(rows)
            last = rows[-1].pk
        early = now < campaign.deadline
        campaign.status = CStatus.CLOSED
        campaign.closed_at = now
        campaign.save(update_fields=["status", "closed_at"])
        outcome = (
            Decision.AUTO_REVOKED
            if campaign.policy == AttestationCampaign.Policy.REVOKE
            else Decision.FLAGGED
        )
        record(
            "attestation.campaign_closed",
            actor=actor,
            target=campaign,
            data={"policy": campaign.policy, "early": early, **({outcome: expired} if expired else {})},
        )
    return campaign


def attestation_tick() -> dict[str, int]:
    """Close campaigns past their deadline, nudge managers who are due, resend mail that never went."""
    now = timezone.now()
    done: dict[str, int] = defaultdict(int)
    for campaign in AttestationCampaign.objects.filter(status=CStatus.RUNNING).order_by("pk"):
        if now >= campaign.deadline:
            campaign_close(campaign=campaign, actor="system")
            done["closed"] += 1
            continue
        due = reminders_due(campaign, now)
        reviews = ManagerReview.objects.filter(campaign=campaign, completed_at=None)
        for review in reviews.only("pk", "reminders_sent", "escalated_at"):
            if _nudges_used(review) < due:
                outcome = review_nudge(review=review)
                if outcome:
                    done[outcome] += 1
        # A mail task lost before it ran (broker restart) is queued again once it is clearly late;
        # the task's claim makes a duplicate harmless.
        late = now - MAIL_RESEND_AFTER
        if campaign.launched_at and campaign.launched_at < late:
            _enqueue_mail(reviews.filter(notified_at=None).values_list("pk", flat=True), "launch")
        _enqueue_mail(
            reviews.filter(reminders_mailed__lt=F("reminders_sent"), last_reminded_at__lt=late).values_list(
                "pk", flat=True
            ),
            "reminder",
        )
        _enqueue_mail(
            reviews.filter(
                escalated_to__isnull=False, escalation_mailed_at=None, escalated_at__lt=late
            ).values_list("pk", flat=True),
            "escalation",
        )
    return dict(done)
