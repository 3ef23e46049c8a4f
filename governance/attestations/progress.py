"""Progress for IAM and the CSV evidence export."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from audit.exports import spreadsheet_safe

from ..models import Attestation, AttestationCampaign, ManagerReview

Decision = Attestation.Decision


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
    people: int = 0  # reports: one per person (attestations name the person's primary identity)
    connectors: int = 0

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
    """Return completion per manager, decision totals, people and connectors in three queries."""
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
    reach = Attestation.objects.filter(campaign=campaign).aggregate(
        people=Count("identity_id", distinct=True), connectors=Count("grant__connector_id", distinct=True)
    )
    return CampaignProgress(
        campaign=campaign,
        managers=managers,
        totals=dict(totals),
        unrouted=len(campaign.unrouted_grant_ids),
        people=reach["people"],
        connectors=reach["connectors"],
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
