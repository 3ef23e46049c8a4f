"""Attestation revocations and offboarding reach the identity provider (the simulator, over HTTP)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import simulator
from connectors.models import Grant, Identity, IdentitySource
from connectors.sync import sync_source
from governance import attestations, tokens
from governance.models import Attestation, AttestationCampaign, OwnershipTransfer
from governance.services import connector_set_owner
from tests.factories import ConnectorFactory, UserFactory
from tests.simtools import make_source, quick_idp

pytestmark = pytest.mark.django_db

TENANT = {"seed": 11, "identities": 30, "grants": 90, "events": 0}
KIND, PROVIDER = "google_workspace", "google"


@pytest.fixture(scope="module")
def sim_server():
    handle = simulator.start(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server, settings):
    sim_server.reset(**TENANT)
    quick_idp(settings)
    return sim_server


@pytest.fixture
def synced(sim, db) -> IdentitySource:
    source = make_source(sim, KIND)
    run = sync_source(source)
    assert run.outcome == "succeeded", run.error
    return source


def launch(iam, capture, **fields) -> AttestationCampaign:
    campaign = AttestationCampaign.objects.create(
        name="Simulated review", deadline=timezone.now() + timedelta(days=7), reminder_days=[3], **fields
    )
    with capture(execute=True):
        return attestations.campaign_launch(campaign=campaign, actor=iam)


def test_a_managers_revoke_reaches_the_identity_provider(
    client, synced, sim, iam, django_capture_on_commit_callbacks
):
    campaign = launch(iam, django_capture_on_commit_callbacks)
    attestation = (
        Attestation.objects.filter(campaign=campaign, grant__source=synced, grant__identity__isnull=False)
        .select_related("grant")
        .order_by("pk")
        .first()
    )
    assert attestation is not None, "the simulated tenant should give the campaign something to review"
    grant = attestation.grant
    assert sim.grant_exists(PROVIDER, grant.external_id) is True
    token = tokens.make_review_token(
        campaign_id=campaign.pk, reviewer_id=attestation.manager_id, expires_at=campaign.deadline
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/attest/review/{campaign.pk}/{attestation.manager_id}/",
            {"token": token, f"decision-{attestation.pk}": "revoke"},
        )
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED, grant.revoke_error
    assert sim.grant_exists(PROVIDER, grant.external_id) is False


def test_the_revoke_policy_at_the_deadline_reaches_the_identity_provider(
    synced, sim, iam, monkeypatch, django_capture_on_commit_callbacks
):
    # One connector's grants keep the number of IdP calls (one per grant) small.
    connector_id = (
        Grant.objects.filter(source=synced, status=Grant.Status.ACTIVE, identity__manager__isnull=False)
        .values_list("connector_id", flat=True)
        .order_by("connector_id")
        .first()
    )
    campaign = AttestationCampaign.objects.create(
        name="Simulated review",
        deadline=timezone.now() + timedelta(days=7),
        policy=AttestationCampaign.Policy.REVOKE,
    )
    campaign.scope_connectors.set([connector_id])
    with django_capture_on_commit_callbacks(execute=True):
        attestations.campaign_launch(campaign=campaign, actor=iam)
    grants = list(Grant.objects.filter(attestations__campaign=campaign, source=synced).order_by("pk"))
    assert grants and all(sim.grant_exists(PROVIDER, g.external_id) for g in grants)
    later = campaign.deadline + timedelta(minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with django_capture_on_commit_callbacks(execute=True):
        attestations.attestation_tick()
    for grant in grants:
        grant.refresh_from_db()
        assert grant.status == Grant.Status.REVOKED, grant.revoke_error
        assert sim.grant_exists(PROVIDER, grant.external_id) is False


def test_a_sync_that_finds_someone_deprovisioned_offboards_them(
    synced, sim, iam, django_capture_on_commit_callbacks
):
    person = (
        Identity.objects.filter(
            source=synced,
            status=Identity.Status.ACTIVE,
            grants__status=Grant.Status.ACTIVE,
            manager__isnull=False,
        )
        .order_by("email")
        .first()
    )
    grants = list(Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE))
    leaver = UserFactory(email=person.email)
    heir = UserFactory(email=person.manager.email)
    Identity.objects.filter(pk=person.pk).update(user=leaver)
    Identity.objects.filter(pk=person.manager_id).update(user=heir)
    connector = ConnectorFactory(name="Owned by the leaver")
    connector_set_owner(connector=connector, owner=leaver, actor=iam)

    sim.mutate("set_status", email=person.email, status="deprovisioned")
    with django_capture_on_commit_callbacks(execute=True):
        run = sync_source(synced)
    assert run.outcome == "succeeded", run.error

    person.refresh_from_db()
    assert person.status == Identity.Status.DEPROVISIONED
    for grant in grants:
        grant.refresh_from_db()
        assert grant.status == Grant.Status.REVOKED, (grant.revoke_reason, grant.revoke_error)
        assert grant.revoke_reason == f"Offboarding: {person.email} left"
        assert sim.grant_exists(PROVIDER, grant.external_id) is False
    transfer = OwnershipTransfer.objects.get(connector=connector)
    assert (transfer.to_user, transfer.reason, transfer.status) == (heir, "offboarding", "pending")
    connector.refresh_from_db()
    assert connector.business_owner is None
