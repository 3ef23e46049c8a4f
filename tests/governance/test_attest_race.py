"""Races on PostgreSQL: a manager and their escalation target deciding at once; two ticks at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from governance import attestations
from governance.models import Attestation, AttestationCampaign, ManagerReview
from tests.concurrency import race
from tests.factories import GrantFactory, IdentityFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def escalated():
    boss = IdentityFactory(email="boss@example.com")
    mia = IdentityFactory(email="mia@example.com", manager=boss)
    ann = IdentityFactory(email="ann@example.com", manager=mia)
    GrantFactory(identity=ann, source=None)
    campaign = AttestationCampaign.objects.create(
        name="Race",
        deadline=timezone.now() + timedelta(days=5),
        reminder_days=[3],
        escalate_after_reminders=0,
    )
    attestations.campaign_launch(campaign=campaign, actor="system")
    review = ManagerReview.objects.get(campaign=campaign)
    ManagerReview.objects.filter(pk=review.pk).update(escalated_to=boss, escalated_at=timezone.now())
    Attestation.objects.filter(campaign=campaign).update(escalated_to=boss)
    return campaign, mia, boss


def test_manager_and_escalation_target_deciding_at_once_record_one_decision(escalated):
    assert connection.vendor == "postgresql"
    campaign, mia, boss = escalated
    attestation = Attestation.objects.get(campaign=campaign)
    results, errors = race(
        [
            lambda: attestations.attestation_decide_many(
                campaign=campaign, reviewer=mia, decisions={attestation.pk: ("keep", "")}
            ),
            lambda: attestations.attestation_decide_many(
                campaign=campaign, reviewer=boss, decisions={attestation.pk: ("revoke", "")}
            ),
        ]
    )
    assert errors == []
    assert sorted(results) == [(0, 1), (1, 0)]
    assert AuditEvent.objects.filter(action="attestation.decided").count() == 1
    attestation.refresh_from_db()
    assert attestation.decided_by in (mia, boss)


def test_two_ticks_at_the_deadline_close_the_campaign_once(escalated):
    campaign, _, _ = escalated
    AttestationCampaign.objects.filter(pk=campaign.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    results, errors = race([attestations.attestation_tick, attestations.attestation_tick])
    # The loser waits for the winner's lock, then finds the campaign closed and is refused.
    assert len(results) + len(errors) == 2
    assert AuditEvent.objects.filter(action="attestation.campaign_closed").count() == 1
    assert AuditEvent.objects.filter(action="attestation.decided").count() == 1
    assert AttestationCampaign.objects.get(pk=campaign.pk).status == AttestationCampaign.Status.CLOSED
