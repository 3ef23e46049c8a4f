"""Signed review links: GET shows and changes nothing; decisions are POSTs; bad links are refused."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Grant
from governance import attestations, tokens
from governance.models import Attestation, AttestationCampaign, ManagerReview
from tests.factories import GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(db, iam, django_capture_on_commit_callbacks):
    boss = IdentityFactory(email="boss@example.com", name="Bo Boss", external_id="boss")
    mia = IdentityFactory(email="mia@example.com", name="Mia Manager", manager=boss, external_id="mia")
    lee = IdentityFactory(email="lee@example.com", name="Lee Lead", manager=boss, external_id="lee")
    ann = IdentityFactory(email="ann@example.com", name="Ann Analyst", manager=mia, external_id="ann")
    ben = IdentityFactory(email="ben@example.com", name="Ben Builder", manager=mia, external_id="ben")
    cat = IdentityFactory(email="cat@example.com", name="Cat Closer", manager=lee, external_id="cat")
    # Grants without a source are revoked locally at once: no IdP is involved in these tests.
    grants = [
        GrantFactory(identity=ann, source=None),
        GrantFactory(identity=ann, source=None),
        GrantFactory(identity=ben, source=None),
        GrantFactory(identity=cat, source=None),
    ]
    campaign = AttestationCampaign.objects.create(
        name="Review", deadline=timezone.now() + timedelta(days=10), reminder_days=[7, 3]
    )
    with django_capture_on_commit_callbacks(execute=True):
        attestations.campaign_launch(campaign=campaign, actor=iam)
    return {
        "campaign": campaign,
        "boss": boss,
        "mia": mia,
        "lee": lee,
        "ann": ann,
        "ben": ben,
        "grants": grants,
    }


def link_for(email: str) -> str:
    message = next(m for m in mail.outbox if m.to == [email])
    url = re.search(r"http://\S+/attest/review/\S+", message.body).group(0)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def token_of(link: str) -> str:
    return link.split("?t=", 1)[1]


def open_review(client, link: str):
    """Open an emailed link as a browser does: GET (a button), POST the token, follow to the clean URL."""
    assert client.get(link).status_code == 200
    response = client.post(link.split("?")[0], {"token": token_of(link)})
    assert response.status_code == 302 and "t=" not in response["Location"]
    return client.get(response["Location"])


def refused(reason: str) -> AuditEvent:
    return AuditEvent.objects.filter(action="attestation.link_refused", data__reason=reason).get()


def snapshot():
    return (
        list(Attestation.objects.order_by("pk").values_list("decision", "decided_at", "comment")),
        list(Grant.objects.order_by("pk").values_list("status", flat=True)),
        list(ManagerReview.objects.order_by("pk").values_list("completed_at", flat=True)),
        AuditEvent.objects.count(),
    )


def test_the_emailed_link_opens_the_managers_review(client, setup):
    response = open_review(client, link_for("mia@example.com"))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ann Analyst" in content and "Ben Builder" in content
    assert "Cat Closer" not in content
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_opening_the_link_changes_nothing(client, setup):
    before = snapshot()
    for _ in range(3):
        assert client.get(link_for("mia@example.com")).status_code == 200
    assert snapshot() == before


def test_keep_and_revoke_are_recorded_with_an_audit_event_each(client, setup):
    link = link_for("mia@example.com")
    ann_grants = setup["grants"][:2]
    keep, revoke = (Attestation.objects.get(grant=g) for g in ann_grants)
    response = client.post(
        link.split("?")[0],
        {
            "token": token_of(link),
            f"decision-{keep.pk}": "keep",
            f"comment-{keep.pk}": "Uses it for the weekly report",
            f"decision-{revoke.pk}": "revoke",
        },
    )
    assert response.status_code == 302
    keep.refresh_from_db()
    revoke.refresh_from_db()
    assert (keep.decision, keep.comment, keep.decided_by) == (
        "keep",
        "Uses it for the weekly report",
        setup["mia"],
    )
    assert revoke.decision == "revoke" and revoke.decided_at is not None
    assert Grant.objects.get(pk=ann_grants[1].pk).status == Grant.Status.REVOKED
    assert Grant.objects.get(pk=ann_grants[0].pk).status == Grant.Status.ACTIVE
    events = AuditEvent.objects.filter(action="attestation.decided").order_by("sequence")
    assert sorted((e.data["decision"], e.grant_id, e.actor_identity_id) for e in events) == [
        ("keep", ann_grants[0].pk, setup["mia"].pk),
        ("revoke", ann_grants[1].pk, setup["mia"].pk),
    ]
    assert AuditEvent.objects.filter(action="grant.revoked", grant=ann_grants[1]).exists()


def test_keep_all_keeps_every_pending_grant_of_one_report(client, setup):
    link = link_for("mia@example.com")
    client.post(link.split("?")[0], {"token": token_of(link), "keep_all": setup["ann"].pk})
    decisions = dict(
        Attestation.objects.values_list("identity__email", "decision").order_by("identity__email")
    )
    assert Attestation.objects.filter(identity=setup["ann"], decision="keep").count() == 2
    assert decisions["ben@example.com"] == "pending"


def test_finishing_every_report_completes_the_managers_review(client, setup):
    link = link_for("mia@example.com")
    client.post(link.split("?")[0], {"token": token_of(link), "keep_all": setup["ann"].pk})
    review = ManagerReview.objects.get(manager=setup["mia"])
    assert review.completed_at is None
    client.post(link.split("?")[0], {"token": token_of(link), "keep_all": setup["ben"].pk})
    review.refresh_from_db()
    assert review.completed_at is not None


def test_a_decision_cannot_be_changed_once_recorded(client, setup):
    link = link_for("mia@example.com")
    attestation = Attestation.objects.filter(identity=setup["ben"]).get()
    client.post(link.split("?")[0], {"token": token_of(link), f"decision-{attestation.pk}": "keep"})
    response = client.post(
        link.split("?")[0], {"token": token_of(link), f"decision-{attestation.pk}": "revoke"}
    )
    assert response.status_code == 302
    attestation.refresh_from_db()
    assert attestation.decision == "keep"
    assert AuditEvent.objects.filter(action="attestation.decided").count() == 1


def test_decisions_need_the_csrf_token_of_the_page(setup):
    csrf_client = Client(enforce_csrf_checks=True)
    link = link_for("mia@example.com")
    attestation = Attestation.objects.filter(identity=setup["ben"]).get()
    response = csrf_client.post(
        link.split("?")[0], {"token": token_of(link), f"decision-{attestation.pk}": "keep"}
    )
    assert response.status_code == 403
    attestation.refresh_from_db()
    assert attestation.decision == "pending"
    page = csrf_client.get(link)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = csrf_client.post(
        link.split("?")[0],
        {"csrfmiddlewaretoken": csrf, "token": token_of(link), f"decision-{attestation.pk}": "keep"},
    )
    assert response.status_code == 302
    attestation.refresh_from_db()
    assert attestation.decision == "keep"


def test_a_tampered_link_is_refused_and_recorded(client, setup):
    link = link_for("mia@example.com")
    before = Attestation.objects.filter(decision="pending").count()
    response = client.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
    assert response.status_code == 403
    assert b"not valid" in response.content
    event = refused("tampered")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert Attestation.objects.filter(decision="pending").count() == before


def test_a_missing_token_is_refused(client, setup):
    mia = setup["mia"]
    response = client.get(f"/attest/review/{setup['campaign'].pk}/{mia.pk}/")
    assert response.status_code == 403
    refused("tampered")


def test_a_token_never_appears_in_the_audit_trail(client, setup):
    link = link_for("mia@example.com")
    client.get(link + "x")
    event = refused("tampered")
    assert token_of(link) not in str(event.data)


def test_another_managers_link_is_refused(client, setup):
    lee_link = link_for("lee@example.com")
    mia = setup["mia"]
    response = client.get(f"/attest/review/{setup['campaign'].pk}/{mia.pk}/?t={token_of(lee_link)}")
    assert response.status_code == 403
    assert refused("wrong_manager").actor_identity == setup["lee"]


def test_a_manager_cannot_decide_another_managers_report(client, setup):
    lee_link = link_for("lee@example.com")
    ben_attestation = Attestation.objects.get(identity=setup["ben"])
    response = client.post(
        lee_link.split("?")[0], {"token": token_of(lee_link), f"decision-{ben_attestation.pk}": "revoke"}
    )
    assert response.status_code == 403
    ben_attestation.refresh_from_db()
    assert ben_attestation.decision == "pending"
    refused("wrong_manager")


def test_a_link_for_someone_with_nothing_to_review_is_refused(client, setup):
    campaign = setup["campaign"]
    stranger = IdentityFactory()
    token = tokens.make_review_token(
        campaign_id=campaign.pk, reviewer_id=stranger.pk, expires_at=campaign.deadline
    )
    response = client.get(f"/attest/review/{campaign.pk}/{stranger.pk}/?t={token}")
    assert response.status_code == 403
    refused("wrong_manager")


def test_an_expired_link_is_refused(client, setup, monkeypatch):
    link = link_for("mia@example.com")
    later = setup["campaign"].deadline + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    response = client.get(link)
    assert response.status_code == 410
    assert b"expired" in response.content
    refused("expired")


def test_a_link_stops_working_once_the_campaign_closes(client, setup, iam):
    link = link_for("mia@example.com")
    attestations.campaign_close(campaign=setup["campaign"], actor=iam)
    assert client.get(link).status_code == 410
    attestation = Attestation.objects.filter(identity=setup["ben"]).get()
    response = client.post(
        link.split("?")[0], {"token": token_of(link), f"decision-{attestation.pk}": "keep"}
    )
    assert response.status_code == 410
    attestation.refresh_from_db()
    assert attestation.decision == "flagged"
    assert AuditEvent.objects.filter(action="attestation.link_refused", data__reason="closed").count() == 2


def test_an_unknown_decision_value_changes_nothing(client, setup):
    link = link_for("mia@example.com")
    attestation = Attestation.objects.filter(identity=setup["ben"]).get()
    response = client.post(
        link.split("?")[0], {"token": token_of(link), f"decision-{attestation.pk}": "delete"}
    )
    assert response.status_code == 302
    attestation.refresh_from_db()
    assert attestation.decision == "pending"


def test_the_escalation_target_can_decide_instead(
    client, setup, monkeypatch, django_capture_on_commit_callbacks
):
    campaign = setup["campaign"]
    ManagerReview.objects.filter(manager=setup["mia"]).update(reminders_sent=1)
    AttestationCampaign.objects.filter(pk=campaign.pk).update(escalate_after_reminders=1)
    later = campaign.deadline - timedelta(days=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    review = ManagerReview.objects.get(manager=setup["mia"])
    with django_capture_on_commit_callbacks(execute=True):
        assert attestations.review_nudge(review=review) == "escalated"
    boss_link = link_for("boss@example.com")
    page = open_review(client, boss_link)
    assert page.status_code == 200
    assert "Escalated to you" in page.content.decode()
    ben_attestation = Attestation.objects.get(identity=setup["ben"])
    client.post(
        boss_link.split("?")[0], {"token": token_of(boss_link), f"decision-{ben_attestation.pk}": "revoke"}
    )
    ben_attestation.refresh_from_db()
    assert (ben_attestation.decision, ben_attestation.decided_by) == ("revoke", setup["boss"])
    assert AuditEvent.objects.get(action="attestation.decided").data["escalated"] is True


def test_the_manager_keeps_their_own_link_after_escalation(client, setup, monkeypatch):
    campaign = setup["campaign"]
    ManagerReview.objects.filter(manager=setup["mia"]).update(reminders_sent=1)
    AttestationCampaign.objects.filter(pk=campaign.pk).update(escalate_after_reminders=1)
    monkeypatch.setattr(timezone, "now", lambda: campaign.deadline - timedelta(days=2))
    attestations.review_nudge(review=ManagerReview.objects.get(manager=setup["mia"]))
    link = link_for("mia@example.com")
    ben_attestation = Attestation.objects.get(identity=setup["ben"])
    client.post(link.split("?")[0], {"token": token_of(link), f"decision-{ben_attestation.pk}": "keep"})
    ben_attestation.refresh_from_db()
    assert (ben_attestation.decision, ben_attestation.decided_by) == ("keep", setup["mia"])
