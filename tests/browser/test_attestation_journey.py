"""A manager's attestation review in a real browser: the link from the email, keep one, revoke one."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from audit.models import AuditEvent
from connectors.models import Grant
from governance import attestations
from governance.models import Attestation, AttestationCampaign, ManagerReview
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory, IdentityFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def iam_staff_group(transactional_db):
    """Recreate the IAM staff group a data migration made, if an earlier transactional test flushed it."""
    from django.contrib.auth.models import Group, Permission

    staff = importlib.import_module("governance.migrations.0002_iam_staff_group")
    group, created = Group.objects.get_or_create(name=staff.IAM_STAFF)
    if created:
        for app_label, models in staff.PERMISSIONS.items():
            for model, actions in models.items():
                codenames = [a if "_" in a else f"{a}_{model}" for a in actions]
                group.permissions.add(
                    *Permission.objects.filter(
                        content_type__app_label=app_label, content_type__model=model, codename__in=codenames
                    )
                )


def test_a_manager_reviews_their_team_from_the_email_link(live_server, persona_page, screenshot, iam):
    mia = IdentityFactory(email="mia.manager@example.com", name="Mia Manager")
    ann = IdentityFactory(email="ann@example.com", name="Ann Analyst", manager=mia, department="Finance")
    notes = ConnectorFactory(name="Meeting Notes AI", risk="high")
    coder = ConnectorFactory(name="Code Assistant", risk="medium")
    laptop = DeviceFactory(name="ANN-MBP", owner=ann)
    keep = GrantFactory(
        identity=ann, connector=notes, source=None, device=laptop, scopes=["calendar.readonly"]
    )
    revoke = GrantFactory(identity=ann, connector=coder, source=None, scopes=["repo", "read:org"])
    campaign = AttestationCampaign.objects.create(
        name="Q4 AI access review", deadline=timezone.now() + timedelta(days=14), reminder_days=[7, 3, 1]
    )
    mail.outbox.clear()
    attestations.campaign_launch(campaign=campaign, actor=iam)

    # One email to Mia; its link is opened by someone with no Lanyard account.
    [message] = [m for m in mail.outbox if m.to == [mia.email]]
    link = urlsplit(re.search(r"http://\S+/attest/review/\S+", message.body).group(0))
    page = persona_page(None)
    page.goto(f"{link.path}?{link.query}")
    # The link's GET shows a button; its POST swaps the token for a session and drops it from the URL.
    page.click("#open-review button")
    assert "t=" not in page.url and link.query[2:] not in page.url
    expect(page.locator("h1")).to_have_text("Q4 AI access review")
    expect(page.locator("section.report")).to_contain_text("Ann Analyst")
    expect(page.locator("section.report")).to_contain_text("ANN-MBP")
    screenshot(page, "attestation-review")

    keep_row = Attestation.objects.get(grant=keep)
    revoke_row = Attestation.objects.get(grant=revoke)
    page.check(f"input[name='decision-{keep_row.pk}'][value=keep]")
    page.fill(f"input[name='comment-{keep_row.pk}']", "Minutes for the finance committee")
    page.check(f"input[name='decision-{revoke_row.pk}'][value=revoke]")
    page.click("button[name=submit]")

    expect(page.locator(".messages")).to_contain_text("Recorded 2 decisions")
    assert "t=" not in page.url
    expect(page.locator(f"tr[data-attestation='{keep_row.pk}']")).to_contain_text("Keep")
    expect(page.locator(f"tr[data-attestation='{revoke_row.pk}']")).to_contain_text("Revoke")
    screenshot(page, "attestation-review-done")

    keep_row.refresh_from_db()
    revoke_row.refresh_from_db()
    assert (keep_row.decision, keep_row.comment, keep_row.decided_by) == (
        "keep",
        "Minutes for the finance committee",
        mia,
    )
    assert revoke_row.decision == "revoke"
    assert Grant.objects.get(pk=revoke.pk).status == Grant.Status.REVOKED
    assert Grant.objects.get(pk=keep.pk).status == Grant.Status.ACTIVE
    assert ManagerReview.objects.get(campaign=campaign, manager=mia).completed_at is not None
    assert AuditEvent.objects.filter(action="attestation.decided").count() == 2

    # IAM follows the campaign on its progress page.
    iam_page = persona_page(iam)
    iam_page.goto(f"/attest/campaigns/{campaign.pk}/")
    expect(iam_page.locator("table").last).to_contain_text("mia.manager@example.com")
    expect(iam_page.locator("table").last).to_contain_text("Done")
    screenshot(iam_page, "attestation-progress")

    # A tampered link gets a clear refusal page.
    page.goto(f"{link.path}?{link.query[:-4]}")
    expect(page.locator(".refused")).to_contain_text("not valid")
