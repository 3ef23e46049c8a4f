"""Level-triggered offboarding: every successful sync reconciles status with grants and ownership."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse
from django.utils import timezone

import simulator
from audit.models import AuditEvent
from connectors.models import Grant, Identity, SyncRun
from connectors.services import identity_set_status, source_adapter
from connectors.sync import sync_source
from governance import offboarding
from governance.models import OwnershipTransfer
from governance.services import connector_set_owner
from tests.connectors.conftest import TENANT
from tests.factories import ConnectorFactory, GrantFactory, IdentityFactory, UserFactory
from tests.simtools import make_source, quick_idp

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sim_server():
    handle = simulator.start(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server, settings):
    sim_server.reset(**TENANT)
    quick_idp(settings, LANYARD_IDP_MAX_RETRIES=1, LANYARD_SYNC_PAGE_SIZE=25)
    return sim_server


def _person_with_a_grant(source) -> tuple[str, str]:
    """Return (external id, email) of an active person who holds a per-user grant at the IdP."""
    adapter = source_adapter(source)
    try:
        users = {u.external_id: u for page in adapter.iter_users() for u in page}
        for page in adapter.iter_grants():
            for g in page:
                u = users.get(g.user_external_id or "")
                if u and u.status == "active" and not u.is_service:
                    return u.external_id, u.email
    finally:
        adapter.close()
    raise AssertionError("no active person with a grant")


def _their_grants(source, external_id: str):
    return Grant.objects.filter(source=source, identity__external_id=external_id)


def test_grants_of_someone_deprovisioned_before_a_failed_first_sync_are_revoked_by_a_later_one(
    sim, django_capture_on_commit_callbacks
):
    source = make_source(sim, "google_workspace")
    external_id, email = _person_with_a_grant(source)
    sim.mutate("set_status", email=email, status="deprovisioned")
    # Users commit, then the grant listing (a required phase) fails: nothing to revoke yet.
    sim.faults(provider="google", kind="server_error", path="/tokens", count=None)
    with django_capture_on_commit_callbacks(execute=True):
        first = sync_source(source)
    assert first.outcome == SyncRun.Outcome.FAILED
    identity = Identity.objects.get(source=source, external_id=external_id)
    assert identity.status == Identity.Status.DEPROVISIONED
    assert not _their_grants(source, external_id).exists()
    sim.clear_faults()

    with django_capture_on_commit_callbacks(execute=True):
        second = sync_source(source)

    assert second.outcome == SyncRun.Outcome.SUCCEEDED, second.error
    held = _their_grants(source, external_id)
    assert held.exists()
    assert set(held.values_list("status", flat=True)) == {Grant.Status.REVOKED}
    assert all(not sim.grant_exists("google", g.external_id) for g in held)
    revoked = AuditEvent.objects.filter(action="grant.revoke_requested", grant__in=held).count()
    assert revoked == held.count()

    with django_capture_on_commit_callbacks(execute=True):
        third = sync_source(source)
    assert third.outcome == SyncRun.Outcome.SUCCEEDED
    assert AuditEvent.objects.filter(action="grant.revoke_requested", grant__in=held).count() == revoked


def test_a_suspended_person_at_the_idp_has_grants_held_then_released_when_active_again(
    sim, settings, django_capture_on_commit_callbacks
):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 7
    source = make_source(sim, "google_workspace")
    external_id, email = _person_with_a_grant(source)
    sim.mutate("set_status", email=email, status="suspended")

    with django_capture_on_commit_callbacks(execute=True):
        sync_source(source)

    grants = _their_grants(source, external_id)
    assert grants.exists()
    assert set(grants.values_list("status", flat=True)) == {Grant.Status.ACTIVE}
    assert not grants.filter(held_at__isnull=True).exists()
    assert all(sim.grant_exists("google", g.external_id) for g in grants)

    sim.mutate("set_status", email=email, status="active")
    with django_capture_on_commit_callbacks(execute=True):
        sync_source(source)

    assert not grants.filter(held_at__isnull=False).exists()
    assert AuditEvent.objects.filter(action="grant.released", grant__in=grants).count() == grants.count()


# --- the suspended policy, on register rows (portal credentials: revoked without an IdP call)


@pytest.fixture
def suspended(db, iam):
    """Sam is suspended now, holds two grants and owns a connector; his manager Max has an account."""
    boss = UserFactory(username="maxb", email="max.b@example.com")
    boss_identity = IdentityFactory(email=boss.email, user=boss)
    sam_user = UserFactory(username="sam", email="sam@example.com")
    sam = IdentityFactory(
        email=sam_user.email,
        user=sam_user,
        manager=boss_identity,
        status=Identity.Status.SUSPENDED,
        status_changed_at=timezone.now(),
    )
    connector = ConnectorFactory(name="Sam's notes AI")
    connector_set_owner(connector=connector, owner=sam_user, actor=iam)
    grants = [GrantFactory(identity=sam, source=None), GrantFactory(identity=sam, source=None)]
    return {"identity": sam, "grants": grants, "connector": connector, "boss": boss}


def _statuses(grants) -> set[str]:
    return set(Grant.objects.filter(pk__in=[g.pk for g in grants]).values_list("status", flat=True))


def _travel(monkeypatch, days: float) -> None:
    later = timezone.now() + timedelta(days=days)
    monkeypatch.setattr(timezone, "now", lambda: later)


def test_a_suspended_identitys_grants_are_held_at_once_and_revoked_after_the_policy_days(
    suspended, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 7
    with django_capture_on_commit_callbacks(execute=True):
        summary = offboarding.offboarding_reconcile()
    assert summary == {"held": 2}
    assert _statuses(suspended["grants"]) == {Grant.Status.ACTIVE}
    assert all(g.is_held for g in Grant.objects.filter(identity=suspended["identity"]))
    assert not OwnershipTransfer.objects.exists()

    _travel(monkeypatch, 6)
    assert offboarding.offboarding_reconcile() == {}
    assert _statuses(suspended["grants"]) == {Grant.Status.ACTIVE}

    _travel(monkeypatch, 8)
    with django_capture_on_commit_callbacks(execute=True):
        summary = offboarding.offboarding_reconcile()
    assert summary["grants_revoked"] == 2 and summary["transfers_offered"] == 1
    assert _statuses(suspended["grants"]) == {Grant.Status.REVOKED}
    reasons = set(
        Grant.objects.filter(identity=suspended["identity"]).values_list("revoke_reason", flat=True)
    )
    assert reasons == {"Offboarding: sam@example.com suspended for 7+ days"}
    [offer] = OwnershipTransfer.objects.all()
    assert (offer.connector, offer.to_user, offer.status) == (
        suspended["connector"],
        suspended["boss"],
        "pending",
    )


def test_reconciling_twice_revokes_nothing_twice_and_sends_one_offer(
    suspended, settings, django_capture_on_commit_callbacks
):
    from django.core import mail

    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 0
    with django_capture_on_commit_callbacks(execute=True):
        first = offboarding.offboarding_reconcile()
    events = AuditEvent.objects.count()
    outbox = len(mail.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        second = offboarding.offboarding_reconcile()

    assert first["grants_revoked"] == 2 and first["transfers_offered"] == 1
    assert second == {}
    assert AuditEvent.objects.count() == events
    assert len(mail.outbox) == outbox
    assert OwnershipTransfer.objects.count() == 1
    assert (
        AuditEvent.objects.filter(action="grant.revoked", grant__identity=suspended["identity"]).count() == 2
    )


def test_zero_days_revokes_a_suspended_identitys_grants_at_once(
    suspended, settings, django_capture_on_commit_callbacks
):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 0
    with django_capture_on_commit_callbacks(execute=True):
        identity_set_status(identity=suspended["identity"], status=Identity.Status.ACTIVE)
        identity_set_status(identity=suspended["identity"], status=Identity.Status.SUSPENDED)
    assert _statuses(suspended["grants"]) == {Grant.Status.REVOKED}


def test_a_suspended_identity_active_again_in_time_gets_its_grants_released(
    suspended, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 7
    offboarding.offboarding_reconcile()
    _travel(monkeypatch, 3)
    with django_capture_on_commit_callbacks(execute=True):
        identity_set_status(identity=suspended["identity"], status=Identity.Status.ACTIVE, reason="back")

    grants = Grant.objects.filter(identity=suspended["identity"])
    assert not any(g.is_held for g in grants)
    assert _statuses(suspended["grants"]) == {Grant.Status.ACTIVE}
    assert AuditEvent.objects.filter(action="grant.released").count() == 2
    _travel(monkeypatch, 30)
    assert offboarding.offboarding_reconcile() == {}
    assert _statuses(suspended["grants"]) == {Grant.Status.ACTIVE}


def test_a_negative_suspended_days_setting_fails_the_system_check(settings):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = -1
    assert [e.id for e in offboarding.check_offboarding_settings()] == ["lanyard.E110"]
    with pytest.raises(SystemCheckError, match="LANYARD_OFFBOARD_SUSPENDED_DAYS"):
        call_command("check")


def test_a_held_grant_shows_as_held_on_my_grants(client, employee, settings):
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 7
    identity = employee.identities.get()
    GrantFactory(identity=identity, source=None)
    Identity.objects.filter(pk=identity.pk).update(status=Identity.Status.SUSPENDED)
    offboarding.offboarding_reconcile()
    client.force_login(employee)

    page = client.get(reverse("portal:my_grants"))

    assert page.status_code == 200
    assert b'badge held">held' in page.content
