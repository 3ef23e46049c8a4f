"""Attestations by person: one email per manager per campaign, every report's grants from every IdP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors import people
from governance import attestations
from governance.models import Attestation, AttestationCampaign, ManagerReview
from tests.factories import (
    ConnectorFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def company(db):
    """Mia manages Ann and Ben in Google; Okta and GitHub know both without managers."""
    google = IdentitySourceFactory(name="Google", kind="google_workspace")
    okta = IdentitySourceFactory(name="Okta", kind="okta")
    github = IdentitySourceFactory(name="GitHub", kind="github")
    mia_user = UserFactory(email="mia@acme.com")
    mia = {
        "google": IdentityFactory(source=google, email="mia@acme.com", name="Mia Manager", user=mia_user),
        "okta": IdentityFactory(source=okta, email="Mia@acme.com", name="Mia Manager"),
        "github": IdentityFactory(source=github, email="mia@acme.com", name="mia-gh"),
    }
    reports = {}
    for name in ("ann", "ben"):
        reports[name] = {
            "google": IdentityFactory(source=google, email=f"{name}@acme.com", manager=mia["google"]),
            # Okta says another manager exists nowhere: no manager; GitHub has no managers at all.
            "okta": IdentityFactory(source=okta, email=f"{name}@acme.com"),
            "github": IdentityFactory(source=github, email=f"{name}@acme.com"),
        }
    claude = ConnectorFactory(name="Claude")
    grants = [
        GrantFactory(identity=identity, connector=claude, source=identity.source)
        for records in reports.values()
        for identity in records.values()
    ]
    people.link_people()
    return {"mia": mia, "reports": reports, "grants": grants, "claude": claude}


def launch(actor) -> AttestationCampaign:
    campaign = AttestationCampaign.objects.create(
        name="Q1 review", deadline=timezone.now() + timedelta(days=14), reminder_days=[7]
    )
    return attestations.campaign_launch(campaign=campaign, actor=actor)


def test_one_email_per_manager_lists_every_grant_of_each_report_across_idps(
    company, iam, mailoutbox, django_capture_on_commit_callbacks
):
    with_grants = len(company["grants"])

    with django_capture_on_commit_callbacks(execute=True):
        campaign = launch(iam)

    assert campaign.unrouted_grant_ids == []
    reviews = ManagerReview.objects.filter(campaign=campaign)
    assert [r.manager_id for r in reviews] == [company["mia"]["google"].pk]  # the one Mia signs in with
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["mia@acme.com"]
    body = mailoutbox[0].body
    assert all(f"via {source}" in body for source in ("Google", "Okta", "GitHub"))
    rows = Attestation.objects.filter(campaign=campaign)
    assert rows.count() == with_grants
    # Two reports (people), not six source records.
    reports = {a.identity_id for a in rows}
    assert reports == {company["reports"][n]["google"].pk for n in ("ann", "ben")}


def test_no_grant_is_left_unreviewed_when_the_person_has_a_manager_in_any_source(company, iam):
    # The GitHub and Okta records have no manager; before people, their grants had nobody to review them.
    campaign = launch(iam)
    github_grants = [g.pk for g in company["grants"] if g.source.kind == "github"]
    assert Attestation.objects.filter(campaign=campaign, grant_id__in=github_grants).count() == 2


def test_nobody_reviews_a_grant_of_their_own_person(company, iam):
    # Mia owns Claude and holds it through Okta; she has no manager: the owner fallback must skip her.
    company["claude"].business_owner = company["mia"]["google"].user
    company["claude"].save()
    own = GrantFactory(identity=company["mia"]["okta"], connector=company["claude"])
    campaign = launch(iam)
    assert own.pk in campaign.unrouted_grant_ids
    assert not Attestation.objects.filter(campaign=campaign, grant=own).exists()


def test_the_campaign_page_counts_people_and_connectors(company, iam, client):
    campaign = launch(iam)
    client.force_login(iam)
    page = client.get(reverse("attest:campaign_detail", args=[campaign.pk])).content.decode()
    assert '<span id="campaign-people">2</span>' in page
    assert '<span id="campaign-connectors">1</span>' in page
    assert page.count("mia@acme.com") == 1  # listed once, not once per IdP
