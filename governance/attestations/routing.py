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

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import QuerySet

from connectors.models import Connector, Grant, Identity

from ..models import AttestationCampaign

MAX_CHAIN = 8  # how far up the manager chain to look for an active reviewer
MAIL_RESEND_AFTER = timedelta(minutes=30)  # a review email not sent by then is queued again
DEMO_CAMPAIGN_NAME = "AI access review (demo)"


class AttestationError(Exception):
    """A campaign step refused for a reason other than the lifecycle: bad input, wrong reviewer."""


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
