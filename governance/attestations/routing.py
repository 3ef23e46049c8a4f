"""Attestation campaigns: launch, review links, decisions, reminders, escalation and the deadline.

Who reviews what
    A campaign covers the active grants held by people (not tenant-wide consents) on connectors
    that are not revoked or rejected, narrowed by its scope (connectors, risks, departments of the
    holder). Routing is by person (``connectors.people``), not by source record: each grant goes to
    the holder's person's manager, whichever source says who that is, addressed to that manager's
    primary identity (the one they sign in with), so a manager gets one email per campaign
    listing every report's grants from every source. An identity not linked to a person yet
    follows its own record's manager. When that manager is not active (suspended,
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

from django.db.models import Q, QuerySet

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
        qs = qs.filter(
            Q(identity__department__in=campaign.scope_departments)
            | Q(identity__person__department__in=campaign.scope_departments)
        )
    return qs


def manager_chains(start_ids: Iterable[int]) -> dict[int, tuple[int | None, str]]:
    """Load (manager identity id, status) for the identities and everyone above them, a level per query.

    The manager is the person's manager's primary identity where the identity belongs to a person
    with a manager, else the manager its own source record names.
    """
    info: dict[int, tuple[int | None, str]] = {}
    wanted = set(start_ids)
    for _ in range(MAX_CHAIN + 1):
        wanted -= info.keys()
        if not wanted:
            break
        rows = Identity.objects.filter(pk__in=wanted).values_list(
            "pk", "manager_id", "status", "person__manager__primary_identity_id"
        )
        info.update(
            {pk: (person_manager or manager_id, status) for pk, manager_id, status, person_manager in rows}
        )
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


def people_of(identity_ids: Iterable[int]) -> dict[int, tuple[int | None, int]]:
    """Map identity ids to (person id, the person's primary identity id); unlinked ones map to themselves."""
    found = {pk: (None, pk) for pk in identity_ids}
    rows = Identity.objects.filter(pk__in=list(found), person__isnull=False).values_list(
        "pk", "person_id", "person__primary_identity_id"
    )
    for pk, person, primary in rows:
        found[pk] = (person, primary or pk)
    return found


def escalation_target(manager: Identity) -> Identity | None:
    """Return the first active identity above ``manager``, or None."""
    target = first_active_above(manager.pk, manager_chains([manager.pk]))
    return Identity.objects.get(pk=target) if target else None


def _owner_identities(user_ids: set[int]) -> dict[int, int]:
    """Map business-owner user ids to an active identity of theirs: their primary one, else the lowest id."""
    found: dict[int, int] = {}
    rows = (
        Identity.objects.filter(user_id__in=user_ids, status=Identity.Status.ACTIVE)
        .order_by("pk")
        .values_list("user_id", "pk", "person__primary_identity_id")
    )
    for user_id, pk, primary in rows:
        if primary == pk:
            found[user_id] = pk
        else:
            found.setdefault(user_id, pk)
    return found
