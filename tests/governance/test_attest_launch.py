"""Launching a campaign: scope, grouping by manager, one email per manager, after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Connector, Grant, Identity, IllegalTransition, Risk
from governance import attestations
from governance.models import Attestation, AttestationCampaign, ManagerReview
from governance.tasks import attestation_mail
from tests.factories import (
    ConnectorFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def make_campaign(**kwargs) -> AttestationCampaign:
    kwargs.setdefault("name", "Q4 AI access review")
    kwargs.setdefault("deadline", timezone.now() + timedelta(days=14))
    kwargs.setdefault("reminder_days", [7, 3, 1])
    connectors = kwargs.pop("connectors", [])
    campaign = AttestationCampaign.objects.create(**kwargs)
    campaign.scope_connectors.set(connectors)
    return campaign


@pytest.fixture
def org(db):
    """Dana heads Mia and Lee; Mia manages Ann and Ben, Lee manages Cat (Sales)."""
    dana = IdentityFactory(email="dana@example.com", name="Dana Director", external_id="dana")
    mia = IdentityFactory(email="mia@example.com", name="Mia Manager", manager=dana, external_id="mia")
    lee = IdentityFactory(email="lee@example.com", name="Lee Lead", manager=dana, external_id="lee")
    ann = IdentityFactory(email="ann@example.com", name="Ann Analyst", manager=mia, external_id="ann")
    ben = IdentityFactory(email="ben@example.com", name="Ben Builder", manager=mia, external_id="ben")
    cat = IdentityFactory(
        email="cat@example.com", name="Cat Closer", manager=lee, department="Sales", external_id="cat"
    )
    notes = ConnectorFactory(name="Meeting Notes AI", risk=Risk.HIGH)
    coder = ConnectorFactory(name="Code Assistant", risk=Risk.MEDIUM)
    laptop = DeviceFactory(name="ANN-MBP", owner=ann, platform="macOS")
    grants = {
        "ann_notes": GrantFactory(
            identity=ann, connector=notes, device=laptop, scopes=["calendar.readonly", "drive.readonly"]
        ),
        "ann_coder": GrantFactory(identity=ann, connector=coder, scopes=["repo"]),
        "ben_notes": GrantFactory(identity=ben, connector=notes),
        "cat_coder": GrantFactory(identity=cat, connector=coder),
    }
    return {
        "dana": dana,
        "mia": mia,
        "lee": lee,
        "ann": ann,
        "ben": ben,
        "cat": cat,
        "notes": notes,
        "coder": coder,
        "grants": grants,
    }


def launched(campaign: AttestationCampaign, actor) -> AttestationCampaign:
    return attestations.campaign_launch(campaign=campaign, actor=actor)


def test_launch_creates_one_attestation_per_grant_grouped_by_manager(org, iam):
    campaign = launched(make_campaign(), iam)
    assert campaign.status == AttestationCampaign.Status.RUNNING
    assert campaign.launched_by == iam and campaign.launched_at is not None
    rows = {(a.grant_id, a.identity_id, a.manager_id) for a in Attestation.objects.filter(campaign=campaign)}
    g, mia, lee = org["grants"], org["mia"].pk, org["lee"].pk
    assert rows == {
        (g["ann_notes"].pk, org["ann"].pk, mia),
        (g["ann_coder"].pk, org["ann"].pk, mia),
        (g["ben_notes"].pk, org["ben"].pk, mia),
        (g["cat_coder"].pk, org["cat"].pk, lee),
    }
    assert set(ManagerReview.objects.filter(campaign=campaign).values_list("manager_id", flat=True)) == {
        mia,
        lee,
    }
    event = AuditEvent.objects.get(action="attestation.campaign_launched")
    assert event.actor_user == iam
    assert event.data["grants"] == 4 and event.data["managers"] == 2


def test_launch_scopes_by_connector(org, iam):
    campaign = launched(make_campaign(connectors=[org["notes"]]), iam)
    assert set(Attestation.objects.filter(campaign=campaign).values_list("grant_id", flat=True)) == {
        org["grants"]["ann_notes"].pk,
        org["grants"]["ben_notes"].pk,
    }


def test_launch_scopes_by_risk(org, iam):
    campaign = launched(make_campaign(scope_risks=[Risk.MEDIUM]), iam)
    assert set(Attestation.objects.filter(campaign=campaign).values_list("grant_id", flat=True)) == {
        org["grants"]["ann_coder"].pk,
        org["grants"]["cat_coder"].pk,
    }


def test_launch_scopes_by_department_of_the_holder(org, iam):
    campaign = launched(make_campaign(scope_departments=["Sales"]), iam)
    assert list(Attestation.objects.filter(campaign=campaign).values_list("grant_id", flat=True)) == [
        org["grants"]["cat_coder"].pk
    ]
    assert list(ManagerReview.objects.filter(campaign=campaign).values_list("manager_id", flat=True)) == [
        org["lee"].pk
    ]


def test_launch_leaves_out_inactive_grants_leavers_tenant_wide_consents_and_revoked_connectors(org, iam):
    ann = org["ann"]
    GrantFactory(identity=ann, revoked=True)
    GrantFactory(identity=ann, status=Grant.Status.REVOKING)
    GrantFactory(identity=IdentityFactory(manager=org["mia"], deprovisioned=True))
    GrantFactory(identity=None, consent_type=Grant.ConsentType.ALL_PRINCIPALS)
    GrantFactory(identity=ann, connector=ConnectorFactory(status=Connector.Status.REVOKED))
    campaign = launched(make_campaign(), iam)
    assert Attestation.objects.filter(campaign=campaign).count() == 4


def test_a_report_of_an_inactive_manager_goes_to_the_next_active_manager_up(org, iam):
    Identity.objects.filter(pk=org["mia"].pk).update(status=Identity.Status.SUSPENDED)
    campaign = launched(make_campaign(), iam)
    managers = set(Attestation.objects.filter(campaign=campaign).values_list("manager_id", flat=True))
    assert managers == {org["dana"].pk, org["lee"].pk}


def test_a_holder_without_a_manager_is_reviewed_by_the_connector_owner(org, iam):
    owner_user = UserFactory(email="olga.owner@example.com")
    owner_identity = IdentityFactory(email=owner_user.email, user=owner_user)
    Connector.objects.filter(pk=org["notes"].pk).update(business_owner=owner_user)
    loner = IdentityFactory(manager=None)
    grant = GrantFactory(identity=loner, connector=org["notes"])
    campaign = launched(make_campaign(), iam)
    assert Attestation.objects.get(campaign=campaign, grant=grant).manager == owner_identity


def test_a_grant_nobody_can_review_is_listed_as_unrouted(org, iam):
    loner = IdentityFactory(manager=None)
    grant = GrantFactory(identity=loner, connector=org["coder"])
    campaign = launched(make_campaign(), iam)
    assert campaign.unrouted_grant_ids == [grant.pk]
    assert not Attestation.objects.filter(grant=grant).exists()


def test_nobody_reviews_their_own_grant(org, iam):
    owner_user = UserFactory(email="self.owner@example.com")
    owner_identity = IdentityFactory(email=owner_user.email, user=owner_user, manager=None)
    connector = ConnectorFactory(business_owner=owner_user)
    grant = GrantFactory(identity=owner_identity, connector=connector)
    campaign = launched(make_campaign(), iam)
    assert grant.pk in campaign.unrouted_grant_ids


def test_a_campaign_launches_only_once(org, iam):
    campaign = launched(make_campaign(), iam)
    with pytest.raises(IllegalTransition):
        launched(campaign, iam)
    assert Attestation.objects.filter(campaign=campaign).count() == 4


def test_a_campaign_with_a_past_deadline_is_refused(org, iam):
    campaign = make_campaign(deadline=timezone.now() - timedelta(minutes=1))
    with pytest.raises(attestations.AttestationError):
        launched(campaign, iam)
    campaign.refresh_from_db()
    assert campaign.status == AttestationCampaign.Status.DRAFT


def test_each_manager_gets_exactly_one_email_after_commit(org, iam, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        launched(make_campaign(), iam)
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    assert sorted(m.to[0] for m in mail.outbox) == ["lee@example.com", "mia@example.com"]
    assert ManagerReview.objects.filter(notified_at__isnull=False).count() == 2


def test_the_manager_email_lists_reports_grants_deadline_and_link(
    org, iam, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        campaign = launched(make_campaign(), iam)
    message = next(m for m in mail.outbox if m.to == ["mia@example.com"])
    html = message.alternatives[0].content
    assert "Q4 AI access review" in message.subject
    for body in (message.body, html):
        assert "Ann Analyst" in body and "Ben Builder" in body
        assert "Cat Closer" not in body
        assert "Meeting Notes AI" in body and "Code Assistant" in body
        assert "calendar.readonly" in body
        assert "High" in body or "high" in body
        assert "ANN-MBP" in body
        assert campaign.deadline.strftime("%Y") in body
        assert f"/attest/review/{campaign.pk}/{org['mia'].pk}/?t=" in body
    assert message.alternatives[0].mimetype == "text/html"


def test_the_mail_task_sends_once_when_delivered_twice(org, iam, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        campaign = launched(make_campaign(), iam)
    review = ManagerReview.objects.get(campaign=campaign, manager=org["mia"])
    mail.outbox.clear()
    assert attestation_mail.delay(review.pk, "launch").get() is False
    assert attestation_mail.delay(review.pk, "launch").get() is False
    assert mail.outbox == []


def test_the_tick_resends_a_launch_email_that_never_went(
    org, iam, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        campaign = launched(make_campaign(), iam)
    attestations.attestation_tick()
    assert mail.outbox == []  # too early to call the first task lost
    later = campaign.launched_at + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    attestations.attestation_tick()
    attestations.attestation_tick()
    assert sorted(m.to[0] for m in mail.outbox) == ["lee@example.com", "mia@example.com"]
    assert campaign.reviews.filter(notified_at=None).count() == 0


def test_demo_campaign_launches_once(org, iam, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = attestations.demo_campaign(actor=iam)
    second = attestations.demo_campaign(actor=iam)
    assert first == second
    assert first.status == AttestationCampaign.Status.RUNNING
    assert len(mail.outbox) == 2


def test_the_schedule_launches_one_campaign_per_quarter(org, settings, monkeypatch):
    settings.LANYARD_ATTESTATION_SCHEDULE = "quarterly"
    now = timezone.now().replace(year=2026, month=11, day=2)
    monkeypatch.setattr(timezone, "now", lambda: now)
    campaign = attestations.campaign_schedule_run()
    assert campaign is not None and campaign.schedule_period == "2026-Q4"
    assert campaign.status == AttestationCampaign.Status.RUNNING
    assert attestations.campaign_schedule_run() is None
    assert AttestationCampaign.objects.count() == 1


def test_no_schedule_launches_nothing(org, settings):
    settings.LANYARD_ATTESTATION_SCHEDULE = ""
    assert attestations.campaign_schedule_run() is None
    assert not AttestationCampaign.objects.exists()


def test_iam_launches_and_closes_a_campaign_from_the_admin(
    org, iam, client, django_capture_on_commit_callbacks
):
    campaign = make_campaign()
    client.force_login(iam)
    url = "/admin/governance/attestationcampaign/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"action": "launch", "_selected_action": [campaign.pk]})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == AttestationCampaign.Status.RUNNING and campaign.launched_by == iam
    assert len(mail.outbox) == 2
    client.post(url, {"action": "close_now", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    assert campaign.status == AttestationCampaign.Status.CLOSED
    assert AuditEvent.objects.get(action="attestation.campaign_closed").data["early"] is True
    assert set(Attestation.objects.values_list("decision", flat=True)) == {"flagged"}


def test_a_launched_campaigns_rules_cannot_be_edited_in_the_admin(org, iam, client):
    campaign = launched(make_campaign(), iam)
    client.force_login(iam)
    page = client.get(f"/admin/governance/attestationcampaign/{campaign.pk}/change/")
    assert page.status_code == 200
    assert b'name="deadline' not in page.content
