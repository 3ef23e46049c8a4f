"""The hourly tick with a moved clock: reminders, escalation, the deadline policy, closing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Grant
from governance import attestations
from governance.models import Attestation, AttestationCampaign, ManagerReview
from governance.tasks import attestation_tick
from tests.factories import GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db

LAUNCH = timezone.now().replace(microsecond=0)
DEADLINE = LAUNCH + timedelta(days=14)


class Clock:
    def __init__(self, monkeypatch):
        self.now = LAUNCH
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def at(self, when):
        self.now = when
        return self

    def days_before_deadline(self, days: float):
        return self.at(DEADLINE - timedelta(days=days))


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def running(db, iam, clock, django_capture_on_commit_callbacks):
    boss = IdentityFactory(email="boss@example.com", name="Bo Boss")
    mia = IdentityFactory(email="mia@example.com", name="Mia Manager", manager=boss)
    lee = IdentityFactory(email="lee@example.com", name="Lee Lead", manager=boss)
    ann = IdentityFactory(email="ann@example.com", manager=mia)
    cat = IdentityFactory(email="cat@example.com", manager=lee)
    grants = {"ann": GrantFactory(identity=ann, source=None), "cat": GrantFactory(identity=cat, source=None)}
    campaign = AttestationCampaign.objects.create(
        name="Review",
        deadline=DEADLINE,
        reminder_days=[7, 3, 1],
        escalate_after_reminders=2,
        policy=AttestationCampaign.Policy.FLAG,
    )
    with django_capture_on_commit_callbacks(execute=True):
        attestations.campaign_launch(campaign=campaign, actor=iam)
    mail.outbox.clear()
    return {"campaign": campaign, "boss": boss, "mia": mia, "lee": lee, "grants": grants}


def tick(capture):
    with capture(execute=True):
        return attestation_tick.delay().get()


def sent_to() -> list[str]:
    return sorted(m.to[0] for m in mail.outbox)


def test_nothing_is_sent_before_the_first_reminder_day(running, clock, django_capture_on_commit_callbacks):
    clock.days_before_deadline(8)
    assert tick(django_capture_on_commit_callbacks) == {}
    assert mail.outbox == []


def test_a_reminder_goes_to_each_pending_manager_once(running, clock, django_capture_on_commit_callbacks):
    clock.days_before_deadline(7)
    assert tick(django_capture_on_commit_callbacks) == {"reminded": 2}
    assert sent_to() == ["lee@example.com", "mia@example.com"]
    assert "Reminder" in mail.outbox[0].subject
    clock.at(clock.now + timedelta(hours=1))
    assert tick(django_capture_on_commit_callbacks) == {}
    assert len(mail.outbox) == 2
    assert set(ManagerReview.objects.values_list("reminders_sent", flat=True)) == {1}
    assert AuditEvent.objects.filter(action="attestation.reminder_sent").count() == 2


def test_a_manager_who_finished_gets_no_reminder(running, clock, django_capture_on_commit_callbacks):
    attestations.attestation_decide(
        attestation=Attestation.objects.get(manager=running["lee"]), reviewer=running["lee"], decision="keep"
    )
    clock.days_before_deadline(7)
    tick(django_capture_on_commit_callbacks)
    assert sent_to() == ["mia@example.com"]


def test_after_the_set_number_of_reminders_the_next_one_escalates(
    running, clock, django_capture_on_commit_callbacks
):
    for days in (7, 3):
        clock.days_before_deadline(days)
        tick(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 4
    mail.outbox.clear()
    clock.days_before_deadline(1)
    assert tick(django_capture_on_commit_callbacks) == {"escalated": 2}
    assert sent_to() == ["boss@example.com", "boss@example.com"]
    assert "Escalated to you" in mail.outbox[0].subject
    review = ManagerReview.objects.get(manager=running["mia"])
    assert review.escalated_to == running["boss"] and review.escalated_at == clock.now
    assert Attestation.objects.get(manager=running["mia"]).escalated_to == running["boss"]
    event = AuditEvent.objects.get(action="attestation.escalated", target_id=str(review.pk))
    assert event.data["escalated_to"] == "boss@example.com"
    # The boss's link shows both escalated reports.
    body = next(m.body for m in mail.outbox if "Mia Manager" in m.body)
    assert f"/attest/review/{running['campaign'].pk}/{running['boss'].pk}/" in body


def test_escalation_is_not_repeated(running, clock, django_capture_on_commit_callbacks):
    ManagerReview.objects.update(reminders_sent=2, reminders_mailed=2)
    clock.days_before_deadline(1)
    tick(django_capture_on_commit_callbacks)
    tick(django_capture_on_commit_callbacks)
    clock.days_before_deadline(0.5)
    tick(django_capture_on_commit_callbacks)
    assert AuditEvent.objects.filter(action="attestation.escalated").count() == 2
    assert len(mail.outbox) == 2


def test_a_manager_with_nobody_above_is_marked_escalated_without_email(
    running, clock, django_capture_on_commit_callbacks
):
    from connectors.models import Identity

    Identity.objects.filter(pk=running["mia"].pk).update(manager=None)
    ManagerReview.objects.filter(manager=running["mia"]).update(reminders_sent=2, reminders_mailed=2)
    clock.days_before_deadline(1)
    tick(django_capture_on_commit_callbacks)
    review = ManagerReview.objects.get(manager=running["mia"])
    assert review.escalated_at is not None and review.escalated_to is None
    assert sent_to() == ["lee@example.com"]  # Lee's third reminder; nothing about Mia


def test_a_missed_tick_catches_up_with_one_email_per_run(running, clock, django_capture_on_commit_callbacks):
    clock.days_before_deadline(2)  # the 7-day and 3-day marks both passed while the worker was down
    tick(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2
    tick(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 4
    tick(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 4


def test_at_the_deadline_the_flag_policy_flags_what_is_pending_and_closes(
    running, clock, django_capture_on_commit_callbacks
):
    attestations.attestation_decide(
        attestation=Attestation.objects.get(manager=running["lee"]), reviewer=running["lee"], decision="keep"
    )
    clock.at(DEADLINE)
    assert tick(django_capture_on_commit_callbacks) == {"closed": 1}
    campaign = AttestationCampaign.objects.get(pk=running["campaign"].pk)
    assert campaign.status == AttestationCampaign.Status.CLOSED and campaign.closed_at == DEADLINE
    assert dict(Attestation.objects.values_list("manager__email", "decision")) == {
        "lee@example.com": "keep",
        "mia@example.com": "flagged",
    }
    assert Grant.objects.get(pk=running["grants"]["ann"].pk).status == Grant.Status.ACTIVE
    closed = AuditEvent.objects.get(action="attestation.campaign_closed")
    assert closed.data["flagged"] == 1 and closed.data["early"] is False
    assert tick(django_capture_on_commit_callbacks) == {}
    assert AuditEvent.objects.filter(action="attestation.campaign_closed").count() == 1


def test_at_the_deadline_the_revoke_policy_revokes_what_is_pending(
    running, clock, django_capture_on_commit_callbacks
):
    AttestationCampaign.objects.filter(pk=running["campaign"].pk).update(
        policy=AttestationCampaign.Policy.REVOKE
    )
    clock.at(DEADLINE + timedelta(minutes=5))
    tick(django_capture_on_commit_callbacks)
    assert set(Attestation.objects.values_list("decision", flat=True)) == {"auto_revoked"}
    grant = Grant.objects.get(pk=running["grants"]["ann"].pk)
    assert grant.status == Grant.Status.REVOKED
    assert "unanswered at the deadline" in grant.revoke_reason
    assert AuditEvent.objects.filter(action="attestation.decided", data__decision="auto_revoked").count() == 2


def test_no_reminder_is_sent_after_the_deadline(running, clock, django_capture_on_commit_callbacks):
    clock.at(DEADLINE + timedelta(days=1))
    tick(django_capture_on_commit_callbacks)
    assert mail.outbox == []


def test_a_reminder_task_delivered_twice_sends_one_email(running, clock, django_capture_on_commit_callbacks):
    clock.days_before_deadline(7)
    tick(django_capture_on_commit_callbacks)
    mail.outbox.clear()
    review = ManagerReview.objects.get(manager=running["mia"])
    assert attestations.review_mail_send(review_id=review.pk, kind="reminder") is False
    assert mail.outbox == []
