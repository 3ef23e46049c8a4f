"""Attestation campaigns: launch, review links, decisions, reminders, escalation and the deadline.

Who reviews what
    A campaign covers the active grants held by people (not tenant-wide consents) on connectors
    that are not revoked or rejected, narrowed by its scope (connectors, risks, departments of the
    holder). Each grant goes to the holder's manager; when that manager is not active (suspended,
    deprovisioned) it goes to the first active manager further up. A holder with no active
    manager above them is reviewed by the connector's business owner (their active identity).
    A grant with neither is not routed: it is listed on the campaign (``unrouted_grant_ids``) and
    shown to IAM on the progress page. Nobody ever reviews their own grant.

Reminders and escalation
    ``reminder_days`` are days before the deadline ("7, 3, 1"). Each one reached after the launch
    is a nudge for every manager who has not finished. Once a manager has had
    ``escalate_after_reminders`` reminders, the next nudge escalates instead: their manager (the
    first active one up the chain) gets their own link and can decide in their place. The
    ``governance.attestation_tick`` beat task sends at most one nudge per manager per run.

The deadline
    The first tick at or after the deadline applies the campaign's policy to every attestation
    still pending (``revoke``: revoke the grant through ``grant_revoke``; ``flag``: mark it for
    IAM) and closes the campaign, in one transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from audit import services as audit
from audit.exports import spreadsheet_safe
from audit.models import AuditEvent
from audit.services import record
from connectors.models import Connector, Device, Grant, Identity

from . import tokens
from .emails import absolute_url, send_templated
from .models import Attestation, AttestationCampaign, ManagerReview

logger = logging.getLogger(__name__)

Decision = Attestation.Decision
CStatus = AttestationCampaign.Status
MAX_CHAIN = 8  # how far up the manager chain to look for an active reviewer
MAIL_RESEND_AFTER = timedelta(minutes=30)  # a review email not sent by then is queued again
DEMO_CAMPAIGN_NAME = "AI access review (demo)"


class AttestationError(Exception):
    """A campaign step refused for a reason other than the lifecycle: bad input, wrong reviewer."""


# ---------------------------------------------------------------------------------------------
# scope and routing


def campaign_grants(campaign: AttestationCampaign) -> QuerySet[Grant]:
    """Return the active grants held by people that the campaign's scope covers."""
    qs = (
        Grant.objects.filter(status=Grant.Status.ACTIVE, identity__isnull=False)
        .exclude(connector__status__in=[Connector.Status.REVOKED, Connector.Status.REJECTED])
        .exclude(identity__status=Identity.Status.DEPROVISIONED)
    )
    connector_ids = list(campaign.scope_connectors.values_list("pk", flat=True)) if campaign.pk else []
    if connector_ids:
        qs = qs.filter(connector_id__in=connector_ids)
    if campaign.scope_risks:
        qs = qs.filter(connector__risk__in=campaign.scope_risks)
    if campaign.scope_departments:
        qs = qs.filter(identity__department__in=campaign.scope_departments)
    return qs


def manager_chains(start_ids: Iterable[int]) -> dict[int, tuple[int | None, str]]:
    """Load (manager_id, status) for the given identities and everyone above them, a level per query."""
    info: dict[int, tuple[int | None, str]] = {}
    wanted = set(start_ids)
    for _ in range(MAX_CHAIN + 1):
        wanted -= info.keys()
        if not wanted:
            break
        rows = Identity.objects.filter(pk__in=wanted).values_list("pk", "manager_id", "status")
        info.update({pk: (manager_id, status) for pk, manager_id, status in rows})
        wanted = {info[pk][0] for pk in wanted if pk in info and info[pk][0]}
    return info


def first_active_above(identity_id: int, info: dict[int, tuple[int | None, str]]) -> int | None:
    seen = {identity_id}
    current = info.get(identity_id, (None, ""))[0]
    while current and current not in seen and current in info:
        if info[current][1] == Identity.Status.ACTIVE:
            return current
        seen.add(current)
        current = info[current][0]
    return None


def escalation_target(manager: Identity) -> Identity | None:
    """Return the first active identity above ``manager``, or None."""
    target = first_active_above(manager.pk, manager_chains([manager.pk]))
    return Identity.objects.get(pk=target) if target else None


def _owner_identities(user_ids: set[int]) -> dict[int, int]:
    """Map business-owner user ids to one active identity of theirs (the lowest id)."""
    found: dict[int, int] = {}
    rows = (
        Identity.objects.filter(user_id__in=user_ids, status=Identity.Status.ACTIVE)
        .order_by("pk")
        .values_list("user_id", "pk")
    )
    for user_id, pk in rows:
        found.setdefault(user_id, pk)
    return found


# ---------------------------------------------------------------------------------------------
# launch


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
        chains = manager_chains({holder for _, holder, _ in rows})
        reviewer_of = {holder: first_active_above(holder, chains) for holder in chains}
        owners = _owner_identities(
            {owner for _, holder, owner in rows if owner and not reviewer_of.get(holder)}
        )
        attestations, unrouted = [], []
        for grant_id, holder, owner_user in rows:
            reviewer = reviewer_of.get(holder) or owners.get(owner_user)
            if reviewer is None or reviewer == holder:
                unrouted.append(grant_id)
                continue
            attestations.append(
                Attestation(campaign=campaign, grant_id=grant_id, identity_id=holder, manager_id=reviewer)
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
    from .tasks import attestation_mail

    for review_id in review_ids:
        attestation_mail.delay(review_id, kind)


# ---------------------------------------------------------------------------------------------
# what a reviewer sees (selectors)


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


# ---------------------------------------------------------------------------------------------
# decisions


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


# ---------------------------------------------------------------------------------------------
# reminders, escalation, deadline


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


# ---------------------------------------------------------------------------------------------
# email


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


# ---------------------------------------------------------------------------------------------
# progress for IAM (selectors)


@dataclass(frozen=True)
class ManagerProgress:
    review: ManagerReview
    total: int
    pending: int
    kept: int
    revoked: int
    flagged: int
    overdue: bool

    @property
    def decided(self) -> int:
        return self.total - self.pending

    @property
    def percent(self) -> int:
        return round(100 * self.decided / self.total) if self.total else 100


@dataclass(frozen=True)
class CampaignProgress:
    campaign: AttestationCampaign
    managers: list[ManagerProgress]
    totals: dict[str, int]
    unrouted: int

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def percent(self) -> int:
        decided = self.total - self.totals.get(Decision.PENDING, 0)
        return round(100 * decided / self.total) if self.total else 100

    @property
    def overdue(self) -> int:
        return sum(1 for m in self.managers if m.overdue)

    @property
    def completed(self) -> int:
        return sum(1 for m in self.managers if m.pending == 0)


def campaign_progress(campaign: AttestationCampaign) -> CampaignProgress:
    """Return completion per manager and decision totals in two queries, whatever the size."""
    now = timezone.now()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = (
        Attestation.objects.filter(campaign=campaign)
        .order_by()
        .values_list("manager_id", "decision")
        .annotate(n=Count("pk"))
    )
    totals: dict[str, int] = defaultdict(int)
    for manager_id, decision, n in rows:
        counts[manager_id][decision] += n
        totals[decision] += n
    reviews = (
        ManagerReview.objects.filter(campaign=campaign)
        .select_related("manager", "escalated_to")
        .order_by("manager__email")
    )
    managers = []
    for review in reviews:
        c = counts[review.manager_id]
        pending = c[Decision.PENDING]
        managers.append(
            ManagerProgress(
                review=review,
                total=sum(c.values()),
                pending=pending,
                kept=c[Decision.KEEP],
                revoked=c[Decision.REVOKE] + c[Decision.AUTO_REVOKED],
                flagged=c[Decision.FLAGGED],
                # Overdue: still open after escalation, or anything left unanswered at the deadline.
                overdue=(pending > 0 and (review.escalated_at is not None or now >= campaign.deadline))
                or c[Decision.FLAGGED] + c[Decision.AUTO_REVOKED] > 0,
            )
        )
    return CampaignProgress(
        campaign=campaign, managers=managers, totals=dict(totals), unrouted=len(campaign.unrouted_grant_ids)
    )


def campaign_list() -> QuerySet[AttestationCampaign]:
    """Return campaigns with their attestation counts, newest first."""
    return AttestationCampaign.objects.annotate(
        total=Count("attestations"),
        pending=Count("attestations", filter=Q(attestations__decision=Decision.PENDING)),
    ).order_by("-created_at")


EXPORT_HEADER = [
    "campaign",
    "attestation",
    "holder_email",
    "holder_name",
    "department",
    "connector",
    "connector_risk",
    "grant",
    "grant_kind",
    "scopes",
    "grant_status",
    "manager_email",
    "escalated_to",
    "decision",
    "decided_by",
    "decided_at",
    "comment",
]


def _cell(value: Any) -> str:
    return spreadsheet_safe("" if value is None else str(value))


def campaign_export_rows(campaign: AttestationCampaign) -> Iterator[list[str]]:
    """Yield the header, then one row per attestation (who, when, what), streamed from the database."""
    yield EXPORT_HEADER
    qs = (
        Attestation.objects.filter(campaign=campaign)
        .select_related("identity", "manager", "escalated_to", "decided_by", "grant__connector")
        .order_by("pk")
    )
    for a in qs.iterator(chunk_size=2000):
        yield [
            _cell(v)
            for v in (
                campaign.name,
                a.pk,
                a.identity.email,
                a.identity.name,
                a.identity.department,
                a.grant.connector.name,
                a.grant.connector.risk,
                a.grant.external_id,
                a.grant.kind,
                " ".join(a.grant.scopes or []),
                a.grant.status,
                a.manager.email,
                a.escalated_to.email if a.escalated_to else "",
                a.decision,
                a.decided_by.email if a.decided_by else ("system" if a.decided_at else ""),
                a.decided_at.isoformat() if a.decided_at else "",
                a.comment,
            )
        ]


# ---------------------------------------------------------------------------------------------
# schedule and demo


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


def check_attestation_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """System check: the attestation schedule settings make sense."""
    from django.core.checks import Error

    errors = []
    if settings.LANYARD_ATTESTATION_SCHEDULE not in ("", "monthly", "quarterly"):
        errors.append(
            Error(
                "LANYARD_ATTESTATION_SCHEDULE must be empty, 'monthly' or 'quarterly'.",
                id="lanyard.E101",
            )
        )
    if settings.LANYARD_ATTESTATION_POLICY not in AttestationCampaign.Policy.values:
        errors.append(Error("LANYARD_ATTESTATION_POLICY must be 'revoke' or 'flag'.", id="lanyard.E102"))
    days = settings.LANYARD_ATTESTATION_REMINDER_DAYS
    if any(d <= 0 or d >= settings.LANYARD_ATTESTATION_DEADLINE_DAYS for d in days):
        errors.append(
            Error(
                "LANYARD_ATTESTATION_REMINDER_DAYS must be whole days between 1 and the deadline days.",
                id="lanyard.E103",
            )
        )
    return errors
