"""Offboarding: a deprovisioned identity loses its grants; its connectors go to its manager."""

from __future__ import annotations

import pytest
from django.core import mail
from guardian.shortcuts import get_perms

from audit.models import AuditEvent
from connectors.models import Connector, Grant, Identity
from connectors.selectors import register_summary
from connectors.services import identity_set_status
from governance import offboarding, transfers
from governance.models import OwnershipTransfer
from governance.services import OWNER_PERMISSIONS, connector_set_owner
from governance.tasks import offboard_identity
from tests.factories import ConnectorFactory, GrantFactory, IdentityFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def leaver(db, iam):
    """Olga owns two connectors and holds two grants; her manager Max has a Lanyard account."""
    max_user = UserFactory(username="maxm", email="max.boss@example.com")
    max_identity = IdentityFactory(email=max_user.email, name="Max Boss", user=max_user)
    olga_user = UserFactory(username="olga", email="olga@example.com")
    olga = IdentityFactory(email=olga_user.email, name="Olga Owner", user=olga_user, manager=max_identity)
    owned = [ConnectorFactory(name="Notes AI"), ConnectorFactory(name="Code AI")]
    for connector in owned:
        connector_set_owner(connector=connector, owner=olga_user, actor=iam)
    grants = [GrantFactory(identity=olga, source=None), GrantFactory(identity=olga, source=None)]
    other = GrantFactory(source=None)
    return {
        "identity": olga,
        "user": olga_user,
        "heir": max_user,
        "connectors": owned,
        "grants": grants,
        "other": other,
    }


def deprovision(identity: Identity, capture) -> None:
    """Change the status the way a sync does: the signal goes out after commit."""
    with capture(execute=True):
        identity_set_status(
            identity=identity, status=Identity.Status.DEPROVISIONED, reason="left the company"
        )


def test_a_deprovisioned_identity_loses_every_grant(leaver, django_capture_on_commit_callbacks):
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    statuses = set(Grant.objects.filter(identity=leaver["identity"]).values_list("status", flat=True))
    assert statuses == {Grant.Status.REVOKED}
    assert Grant.objects.get(pk=leaver["other"].pk).status == Grant.Status.ACTIVE
    reasons = set(Grant.objects.filter(identity=leaver["identity"]).values_list("revoke_reason", flat=True))
    assert reasons == {"Offboarding: olga@example.com left"}


def test_the_connectors_they_owned_go_to_their_manager_pending_acceptance(
    leaver, django_capture_on_commit_callbacks
):
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    offers = OwnershipTransfer.objects.order_by("connector__name")
    assert [(t.connector.name, t.to_user, t.from_user, t.reason, t.status) for t in offers] == [
        ("Code AI", leaver["heir"], leaver["user"], "offboarding", "pending"),
        ("Notes AI", leaver["heir"], leaver["user"], "offboarding", "pending"),
    ]
    assert sorted(m.to[0] for m in mail.outbox) == [leaver["heir"].email] * 2
    assert "needs a new owner" in mail.outbox[0].subject


def test_until_accepted_the_connector_shows_as_owner_missing(leaver, django_capture_on_commit_callbacks):
    before = register_summary().without_owner
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    assert register_summary().without_owner == before + 2
    for connector in leaver["connectors"]:
        connector.refresh_from_db()
        assert connector.business_owner is None
        assert get_perms(leaver["user"], connector) == []


def test_accepting_the_offboarding_transfer_gives_the_manager_the_connector(
    leaver, django_capture_on_commit_callbacks
):
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    transfer = OwnershipTransfer.objects.get(connector=leaver["connectors"][0])
    transfers.transfer_accept(transfer=transfer, actor=leaver["heir"])
    connector = Connector.objects.get(pk=leaver["connectors"][0].pk)
    assert connector.business_owner == leaver["heir"]
    assert sorted(get_perms(leaver["heir"], connector)) == sorted(OWNER_PERMISSIONS)


def test_declining_an_offboarding_transfer_tells_iam(leaver, iam, django_capture_on_commit_callbacks):
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    mail.outbox.clear()
    transfer = OwnershipTransfer.objects.get(connector=leaver["connectors"][0])
    with django_capture_on_commit_callbacks(execute=True):
        transfers.transfer_decline(transfer=transfer, actor=leaver["heir"], reason="Not my team's tool")
    assert [m.to for m in mail.outbox] == [[iam.email]]
    assert Connector.objects.get(pk=transfer.connector_id).business_owner is None


def test_offboarding_twice_changes_nothing_the_second_time(leaver, django_capture_on_commit_callbacks):
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    events = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        summary = offboard_identity.delay(leaver["identity"].pk).get()
    assert summary == {
        "grants_revoked": 0,
        "connectors_unowned": 0,
        "transfers_offered": 0,
        "transfers_cancelled": 0,
    }
    assert AuditEvent.objects.count() == events
    assert OwnershipTransfer.objects.count() == 2
    assert AuditEvent.objects.filter(action="identity.offboarded").count() == 1


def test_a_suspended_identity_is_not_offboarded(leaver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        identity_set_status(identity=leaver["identity"], status=Identity.Status.SUSPENDED)
    assert Grant.objects.filter(identity=leaver["identity"], status=Grant.Status.ACTIVE).count() == 2
    assert not OwnershipTransfer.objects.exists()


def test_iam_can_offboard_by_hand(leaver, iam, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        summary = offboarding.identity_offboard(identity=leaver["identity"], actor=iam)
    assert summary["grants_revoked"] == 2 and summary["transfers_offered"] == 2
    event = AuditEvent.objects.get(action="identity.offboarded")
    assert event.actor_user == iam and event.data["heir"] == leaver["heir"].email


def test_only_iam_can_offboard_by_hand(leaver, outsider):
    with pytest.raises(offboarding.OffboardingNotAllowed):
        offboarding.identity_offboard(identity=leaver["identity"], actor=outsider)
    assert Grant.objects.filter(identity=leaver["identity"], status=Grant.Status.ACTIVE).count() == 2


def test_without_a_manager_account_the_connector_waits_for_iam(leaver, django_capture_on_commit_callbacks):
    Identity.objects.filter(pk=leaver["identity"].pk).update(manager=None)
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    assert not OwnershipTransfer.objects.exists()
    assert all(Connector.objects.get(pk=c.pk).business_owner is None for c in leaver["connectors"])


def test_a_manager_without_an_account_passes_the_connector_further_up(
    leaver, django_capture_on_commit_callbacks
):
    director = UserFactory(email="dora.director@example.com")
    dora = IdentityFactory(email=director.email, user=director)
    middle = IdentityFactory(email="no.account@example.com", manager=dora)
    Identity.objects.filter(pk=leaver["identity"].pk).update(manager=middle)
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    assert set(OwnershipTransfer.objects.values_list("to_user", flat=True)) == {director.pk}


def test_someone_still_active_in_another_source_keeps_their_connectors(
    leaver, django_capture_on_commit_callbacks
):
    IdentityFactory(email=leaver["user"].email, user=leaver["user"], external_id="gh-olga")
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    assert not Grant.objects.filter(identity=leaver["identity"], status=Grant.Status.ACTIVE).exists()
    assert Connector.objects.filter(business_owner=leaver["user"]).count() == 2
    assert not OwnershipTransfer.objects.exists()


def test_an_offer_the_leaver_made_still_stands(leaver, django_capture_on_commit_callbacks):
    colleague = UserFactory()
    pending = transfers.transfer_offer(
        connector=leaver["connectors"][0], to_user=colleague, actor=leaver["user"]
    )
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    pending.refresh_from_db()
    assert pending.status == "pending"
    transfers.transfer_accept(transfer=pending, actor=colleague)
    assert Connector.objects.get(pk=pending.connector_id).business_owner == colleague


def test_offers_waiting_for_the_leaver_are_cancelled(leaver, iam, django_capture_on_commit_callbacks):
    elsewhere = ConnectorFactory(business_owner=iam)
    incoming = transfers.transfer_offer(connector=elsewhere, to_user=leaver["user"], actor=iam)
    deprovision(leaver["identity"], django_capture_on_commit_callbacks)
    incoming.refresh_from_db()
    assert incoming.status == "cancelled"


def test_iam_offboards_from_the_offboarding_page(client, leaver, iam, django_capture_on_commit_callbacks):
    client.force_login(iam)
    url = f"/attest/identities/{leaver['identity'].pk}/offboard/"
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["active_grants"] == 2 and page.context["heir"] == leaver["heir"]
    assert b"Notes AI" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 302
    assert not Grant.objects.filter(identity=leaver["identity"], status=Grant.Status.ACTIVE).exists()
    assert OwnershipTransfer.objects.count() == 2


def test_the_outsider_and_the_leavers_manager_cannot_offboard(client, leaver, outsider):
    url = f"/attest/identities/{leaver['identity'].pk}/offboard/"
    for user in (outsider, leaver["heir"]):
        client.force_login(user)
        assert client.get(url).status_code == 403
        assert client.post(url).status_code == 403
    assert Grant.objects.filter(identity=leaver["identity"], status=Grant.Status.ACTIVE).count() == 2
