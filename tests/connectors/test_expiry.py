"""The expiry policy: past expiry → expired; unused, or on a connector not active → revoked with why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import enqueue_checkpoint
from connectors.models import Grant
from connectors.services import grants_apply_expiry_policy
from connectors.tasks import expire_stale_grants
from tests.factories import ConnectorFactory, GrantFactory

pytestmark = pytest.mark.django_db


def portal_grant(**fields) -> Grant:
    """A grant with no identity source: revocation is local, no IdP involved."""
    return GrantFactory(source=None, kind=Grant.Kind.PORTAL_CREDENTIAL, **fields)


def status(grant: Grant) -> str:
    grant.refresh_from_db()
    return grant.status


def test_grants_past_their_expiry_become_expired():
    past = portal_grant(expires_at=timezone.now() - timedelta(minutes=1))
    future = portal_grant(expires_at=timezone.now() + timedelta(days=1))

    summary = grants_apply_expiry_policy()

    assert summary.expired == 1
    assert status(past) == Grant.Status.EXPIRED
    assert status(future) == Grant.Status.ACTIVE
    assert AuditEvent.objects.filter(action="grant.expired", grant=past).count() == 1


def test_grants_unused_beyond_policy_are_revoked_with_the_reason(settings):
    settings.LANYARD_STALE_GRANT_DAYS = 30
    now = timezone.now()
    stale = portal_grant(last_used_at=now - timedelta(days=31))
    never_used = portal_grant(last_used_at=None, first_seen=now - timedelta(days=31))
    recent = portal_grant(last_used_at=now - timedelta(days=29))
    new = portal_grant(last_used_at=None, first_seen=now - timedelta(days=1))

    summary = grants_apply_expiry_policy()

    assert summary.stale.revoked == 2
    for grant in (stale, never_used):
        assert status(grant) == Grant.Status.REVOKED
        assert grant.revoke_reason == "unused for more than 30 days"
        assert AuditEvent.objects.filter(action="grant.revoked", grant=grant).count() == 1
    assert status(recent) == status(new) == Grant.Status.ACTIVE


def test_grants_at_an_idp_go_revoking_and_are_handed_to_the_revocation_task(
    settings, django_capture_on_commit_callbacks
):
    settings.LANYARD_STALE_GRANT_DAYS = 30
    grant = GrantFactory(last_used_at=timezone.now() - timedelta(days=40))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        summary = grants_apply_expiry_policy()

    assert summary.stale.revoking == 1
    assert status(grant) == Grant.Status.REVOKING
    assert len([c for c in callbacks if c is not enqueue_checkpoint]) == 1  # and the audit checkpoint


def test_grants_on_a_revoked_or_rejected_connector_are_revoked_at_once():
    revoked = portal_grant(connector=ConnectorFactory(revoked=True))
    rejected = portal_grant(connector=ConnectorFactory(rejected=True))

    summary = grants_apply_expiry_policy()

    assert summary.unsanctioned.revoked == 2
    assert status(revoked) == status(rejected) == Grant.Status.REVOKED
    assert revoked.revoke_reason == "connector is revoked, not active"


def test_grants_on_a_connector_in_triage_are_kept_for_the_grace_period(settings):
    settings.LANYARD_UNSANCTIONED_GRACE_DAYS = 14
    now = timezone.now()
    fresh = portal_grant(
        connector=ConnectorFactory(discovered=True, status_changed_at=now - timedelta(days=2))
    )
    old = portal_grant(
        connector=ConnectorFactory(discovered=True, status_changed_at=now - timedelta(days=15))
    )
    suspended = portal_grant(
        connector=ConnectorFactory(suspended=True, status_changed_at=now - timedelta(days=15))
    )
    active = portal_grant(
        connector=ConnectorFactory(active=True, status_changed_at=now - timedelta(days=400))
    )

    grants_apply_expiry_policy()

    assert status(fresh) == Grant.Status.ACTIVE
    assert status(active) == Grant.Status.ACTIVE
    assert status(old) == Grant.Status.REVOKED
    assert old.revoke_reason == "connector is discovered (shadow), not active"
    assert status(suspended) == Grant.Status.REVOKED


def test_tenant_wide_consents_are_left_for_a_person_to_confirm(settings, django_capture_on_commit_callbacks):
    settings.LANYARD_STALE_GRANT_DAYS = 30
    grant = GrantFactory(
        consent_type=Grant.ConsentType.ALL_PRINCIPALS,
        identity=None,
        last_used_at=timezone.now() - timedelta(days=40),
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        summary = grants_apply_expiry_policy()

    assert summary.stale.skipped_tenant_wide == 1
    assert status(grant) == Grant.Status.ACTIVE
    assert callbacks == []


def test_the_expiry_task_called_twice_is_harmless(settings):
    settings.LANYARD_STALE_GRANT_DAYS = 30
    portal_grant(last_used_at=timezone.now() - timedelta(days=31))
    portal_grant(expires_at=timezone.now() - timedelta(days=1))

    first = expire_stale_grants.delay().get()
    second = expire_stale_grants.delay().get()

    assert (first["expired"], first["stale"]) == (1, 1)
    assert second == {"expired": 0, "stale": 0, "unsanctioned": 0, "skipped_tenant_wide": 0}
    assert AuditEvent.objects.filter(action__in=["grant.expired", "grant.revoked"]).count() == 2
