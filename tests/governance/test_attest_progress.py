"""IAM's campaign pages: progress per manager, overdue, decisions, CSV evidence; constant queries."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance import attestations, tokens
from governance.models import Attestation, AttestationCampaign, ManagerReview
from tests.factories import DeviceFactory, GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def build(n_managers: int, reports_each: int = 1, *, iam) -> AttestationCampaign:
    """Launch a campaign over a department of its own: n managers with their reports' grants."""
    department = f"Dept {AttestationCampaign.objects.count()}"
    boss = IdentityFactory(name="Bo Boss")
    for _ in range(n_managers):
        manager = IdentityFactory(manager=boss)
        for _ in range(reports_each):
            report = IdentityFactory(manager=manager, department=department)
            DeviceFactory(owner=report)
            GrantFactory(identity=report, source=None, device=DeviceFactory(owner=report))
    campaign = AttestationCampaign.objects.create(
        name=f"Review {n_managers}",
        deadline=timezone.now() + timedelta(days=10),
        reminder_days=[3],
        scope_departments=[department],
    )
    return attestations.campaign_launch(campaign=campaign, actor=iam)


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_progress_shows_completion_per_manager_and_decisions(client, iam):
    campaign = build(3, iam=iam)
    first = ManagerReview.objects.filter(campaign=campaign).select_related("manager").first()
    attestation = Attestation.objects.get(manager=first.manager)
    attestations.attestation_decide(attestation=attestation, reviewer=first.manager, decision="keep")
    client.force_login(iam)
    response = client.get(f"/attest/campaigns/{campaign.pk}/")
    assert response.status_code == 200
    progress = response.context["progress"]
    assert progress.total == 3 and progress.completed == 1 and progress.percent == 33
    assert progress.totals == {"keep": 1, "pending": 2}
    done = next(m for m in progress.managers if m.review.manager_id == first.manager_id)
    assert done.pending == 0 and done.kept == 1 and done.percent == 100
    assert first.manager.email in response.content.decode()


def test_overdue_managers_are_those_escalated_or_past_the_deadline(client, iam):
    campaign = build(2, iam=iam)
    review = ManagerReview.objects.filter(campaign=campaign).first()
    ManagerReview.objects.filter(pk=review.pk).update(escalated_at=timezone.now())
    progress = attestations.campaign_progress(campaign)
    assert progress.overdue == 1


def test_progress_page_queries_do_not_grow_with_managers(client, iam, django_assert_num_queries):
    one = build(1, iam=iam)
    fifty = build(50, iam=iam)
    client.force_login(iam)
    expected = queries_for(client, f"/attest/campaigns/{one.pk}/")
    with django_assert_num_queries(expected):
        response = client.get(f"/attest/campaigns/{fifty.pk}/")
    assert len(response.context["progress"].managers) == 50


def test_campaign_list_queries_do_not_grow_with_campaigns(client, iam, django_assert_num_queries):
    build(1, iam=iam)
    client.force_login(iam)
    expected = queries_for(client, "/attest/campaigns/")
    for _ in range(49):
        AttestationCampaign.objects.create(name="Draft", deadline=timezone.now() + timedelta(days=3))
    with django_assert_num_queries(expected):
        response = client.get("/attest/campaigns/")
    assert len(response.context["campaigns"]) == 50


def test_review_page_queries_do_not_grow_with_reports(client, iam, django_assert_num_queries):
    small = build(1, reports_each=1, iam=iam)
    large = build(1, reports_each=50, iam=iam)

    def url(campaign):
        review = ManagerReview.objects.get(campaign=campaign)
        token = tokens.make_review_token(
            campaign_id=campaign.pk, reviewer_id=review.manager_id, expires_at=campaign.deadline
        )
        path = f"/attest/review/{campaign.pk}/{review.manager_id}/"
        assert client.post(path, {"token": token}).status_code == 302  # the link's token for a session
        return path

    expected = queries_for(client, url(small))
    large_url = url(large)
    with django_assert_num_queries(expected):
        response = client.get(large_url)
    assert len(response.context["groups"]) == 50


def test_the_csv_export_lists_every_decision_with_who_when_and_what(client, iam):
    campaign = build(2, iam=iam)
    reviews = list(ManagerReview.objects.filter(campaign=campaign).select_related("manager").order_by("pk"))
    kept = Attestation.objects.get(manager=reviews[0].manager)
    attestations.attestation_decide(
        attestation=kept, reviewer=reviews[0].manager, decision="keep", comment="=HYPERLINK(evil)"
    )
    client.force_login(iam)
    response = client.get(f"/attest/campaigns/{campaign.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    row = next(r for r in rows if r["attestation"] == str(kept.pk))
    assert row["decision"] == "keep"
    assert row["decided_by"] == reviews[0].manager.email
    assert row["decided_at"].startswith(str(timezone.now().year))
    assert row["manager_email"] == reviews[0].manager.email
    assert row["comment"] == "'=HYPERLINK(evil)"
    pending = next(r for r in rows if r["attestation"] != str(kept.pk))
    assert pending["decision"] == "pending" and pending["decided_by"] == ""


def test_the_csv_export_streams_in_constant_queries(client, iam, django_assert_num_queries):
    one = build(1, iam=iam)
    fifty = build(50, iam=iam)
    client.force_login(iam)
    expected = queries_for(client, f"/attest/campaigns/{one.pk}/export.csv")
    with django_assert_num_queries(expected):
        response = client.get(f"/attest/campaigns/{fifty.pk}/export.csv")
        body = b"".join(response.streaming_content).decode()
    assert len(body.strip().splitlines()) == 51


@pytest.mark.parametrize(
    "path", ["/attest/campaigns/", "/attest/campaigns/{pk}/", "/attest/campaigns/{pk}/export.csv"]
)
def test_the_outsider_is_refused_campaign_pages(client, iam, outsider, path):
    campaign = build(1, iam=iam)
    client.force_login(outsider)
    assert client.get(path.format(pk=campaign.pk)).status_code == 403


def test_a_manager_with_a_link_cannot_open_campaign_progress(client, iam):
    campaign = build(1, iam=iam)
    review = ManagerReview.objects.get(campaign=campaign)
    token = tokens.make_review_token(
        campaign_id=campaign.pk, reviewer_id=review.manager_id, expires_at=campaign.deadline
    )
    response = client.get(f"/attest/campaigns/{campaign.pk}/?t={token}")
    assert response.status_code == 302
    assert re.search(r"/accounts/login", response["Location"])
