"""Revocation over real HTTP: 204 and 404 both end revoked, 5xx retries and the sweep, confirmations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import enqueue_checkpoint
from connectors.models import Connector, Grant, IllegalTransition
from connectors.services import TenantWideConfirmationRequired, connector_revoke, grant_revoke
from connectors.sync import sync_source
from connectors.tasks import revoke_grant_at_idp, sweep_revoking
from tests.connectors.conftest import make_source, provider
from tests.factories import GrantFactory

pytestmark = pytest.mark.django_db


def events(action: str, **filters) -> int:
    return AuditEvent.objects.filter(action=action, **filters).count()


def synced(sim, kind: str):
    source = make_source(sim, kind)
    assert sync_source(source).outcome == "succeeded"
    return source


def a_grant(source) -> Grant:
    return (
        Grant.objects.filter(
            source=source, status=Grant.Status.ACTIVE, consent_type=Grant.ConsentType.PRINCIPAL
        )
        .order_by("pk")
        .first()
    )


def test_a_revoked_grant_waits_for_commit_then_is_revoked_at_the_idp(
    sim, source, iam, django_capture_on_commit_callbacks
):
    assert sync_source(source).outcome == "succeeded"
    grant = a_grant(source)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        grant_revoke(grant=grant, actor=iam, reason="left the pilot")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKING
    assert (grant.revoke_reason, grant.revoked_by) == ("left the pilot", iam)
    assert events("grant.revoke_requested", grant=grant, actor_user=iam) == 1
    assert sim.grant_exists(provider(source), grant.external_id) is True  # nothing called yet
    (revoke,) = [c for c in callbacks if c is not enqueue_checkpoint]  # and the audit checkpoint

    revoke()

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoked_at is not None
    assert sim.grant_exists(provider(source), grant.external_id) is False
    assert events("grant.revoked", grant=grant) == 1
    # The next sync agrees: the grant stays revoked; only credentials that hung off it (an Okta
    # consent's refresh tokens) may have gone with it.
    run = sync_source(source)
    assert run.changed == 0
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    vanished = Grant.objects.filter(source=source, revoke_reason="vanished at IdP")
    assert vanished.count() == run.vanished
    assert not vanished.exclude(app=grant.app, identity=grant.identity).exists()


def test_a_grant_already_gone_at_the_idp_is_marked_revoked(sim, iam, db, django_capture_on_commit_callbacks):
    source = synced(sim, "okta")
    grant = a_grant(source)
    sim.mutate("remove_grant", provider="okta", id=grant.external_id)

    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="offboarding")

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    event = AuditEvent.objects.get(action="grant.revoked", grant=grant)
    assert event.data["idp_outcome"] == "already_gone"


def test_a_5xx_keeps_the_grant_revoking_and_the_sweep_finishes_it(
    sim, iam, db, django_capture_on_commit_callbacks, settings
):
    source = synced(sim, "github")
    grant = a_grant(source)
    for method in ("POST", "DELETE"):
        sim.faults(provider="github", kind="server_error", method=method, path="/orgs/", count=None)

    # Eager Celery hands the retry back to the caller instead of scheduling it.
    with pytest.raises(Retry), django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="risky")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKING
    assert "HTTP 500" in grant.revoke_error
    assert grant.revoke_attempts == 1
    # Celery delivers the last retry: it fails too and leaves the grant to the sweep.
    result = revoke_grant_at_idp.apply(args=[grant.pk], retries=settings.LANYARD_REVOKE_MAX_RETRIES)
    assert result.get() == "retries exhausted: left to the sweep"
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKING
    assert events("grant.revoke_retrying", grant=grant) == grant.revoke_attempts == 2
    assert grant.revoke_next_attempt_at > timezone.now()
    assert sweep_revoking() == 0  # not due yet

    sim.clear_faults()
    Grant.objects.filter(pk=grant.pk).update(revoke_next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert sweep_revoking() == 1

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert sim.grant_exists("github", grant.external_id) is False
    assert sweep_revoking() == 0


def test_a_permanent_refusal_keeps_the_grant_revoking_with_the_error(
    sim, iam, db, django_capture_on_commit_callbacks
):
    source = synced(sim, "okta")
    grant = a_grant(source)
    sim.faults(provider="okta", kind="forbidden", method="DELETE", count=None)

    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="risky")

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKING
    assert "HTTP 403" in grant.revoke_error
    assert grant.revoke_attempts == 1
    assert events("grant.revoke_failed", grant=grant) == 1
    assert grant.revoke_next_attempt_at > timezone.now() + timedelta(minutes=30)


def test_a_tenant_wide_consent_is_revoked_only_with_explicit_confirmation(
    sim, iam, db, django_capture_on_commit_callbacks
):
    source = synced(sim, "microsoft_entra")
    grant = Grant.objects.filter(
        source=source, consent_type=Grant.ConsentType.ALL_PRINCIPALS, idp_data__type="oauth2PermissionGrant"
    ).first()

    with pytest.raises(TenantWideConfirmationRequired, match="tenant-wide"):
        grant_revoke(grant=grant, actor=iam, reason="too broad")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    assert events("grant.revoke_requested", grant=grant) == 0

    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="too broad", confirm_tenant_wide=True)

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoke_tenant_wide_confirmed
    assert sim.grant_exists("entra", grant.external_id) is False


def test_a_portal_credential_is_revoked_at_once(iam, django_capture_on_commit_callbacks):
    grant = GrantFactory(source=None, kind=Grant.Kind.PORTAL_CREDENTIAL)

    with django_capture_on_commit_callbacks() as callbacks:
        grant_revoke(grant=grant, actor=iam, reason="key leaked")

    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoked_at is not None
    assert callbacks == [enqueue_checkpoint]  # no IdP call, only the audit checkpoint
    assert events("grant.revoked", grant=grant) == 1


def test_revoking_a_grant_twice_is_refused(iam, django_capture_on_commit_callbacks):
    grant = GrantFactory()
    with django_capture_on_commit_callbacks(execute=False):
        grant_revoke(grant=grant, actor=iam, reason="first")

    with pytest.raises(IllegalTransition):
        grant_revoke(grant=grant, actor=iam, reason="second")
    assert events("grant.revoke_requested", grant=grant) == 1


def test_the_revoke_task_called_twice_is_harmless(sim, iam, db, django_capture_on_commit_callbacks):
    source = synced(sim, "google_workspace")
    grant = a_grant(source)
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="done")

    assert revoke_grant_at_idp.delay(grant.pk).get() == "skipped: not revoking"
    assert events("grant.revoked", grant=grant) == 1


def test_revoking_a_connector_revokes_every_grant(sim, iam, db, django_capture_on_commit_callbacks):
    source = synced(sim, "google_workspace")
    connector = (
        Connector.objects.filter(grants__source=source, grants__status=Grant.Status.ACTIVE)
        .order_by("-grants__pk")
        .first()
    )
    held = list(connector.grants.values_list("external_id", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        connector_revoke(connector=connector, actor=iam, reason="not approved")

    connector.refresh_from_db()
    assert connector.status == Connector.Status.REVOKED
    assert not connector.grants.exclude(status=Grant.Status.REVOKED).exists()
    assert not any(sim.grant_exists("google", external_id) for external_id in held)
    assert events("connector.revoked", connector=connector) == 1
    assert events("grant.revoke_requested", connector=connector) == len(held)


def test_revoking_a_connector_with_tenant_wide_grants_needs_confirmation(
    sim, iam, db, django_capture_on_commit_callbacks
):
    synced(sim, "microsoft_entra")
    connector = Connector.objects.filter(grants__consent_type=Grant.ConsentType.ALL_PRINCIPALS).first()

    with pytest.raises(TenantWideConfirmationRequired):
        connector_revoke(connector=connector, actor=iam, reason="too broad")
    connector.refresh_from_db()
    assert connector.status == Connector.Status.DISCOVERED

    with django_capture_on_commit_callbacks(execute=True):
        connector_revoke(connector=connector, actor=iam, reason="too broad", confirm_tenant_wide=True)
    assert not connector.grants.exclude(status=Grant.Status.REVOKED).exists()
