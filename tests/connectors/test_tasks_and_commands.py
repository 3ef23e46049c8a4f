"""Sync tasks and beat, the identity-status service and the management commands."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Grant, Identity, IdentitySource, SyncRun
from connectors.services import identity_set_status
from connectors.signals import identity_status_changed
from connectors.tasks import sync_due_sources, sync_source
from tests.connectors.conftest import make_source
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


def test_due_sources_are_synced_and_a_second_beat_finds_nothing_due(sim):
    due = make_source(sim, "okta", sync_interval=timedelta(minutes=30))
    recent = make_source(
        sim, "github", sync_interval=timedelta(minutes=30), last_sync_started_at=timezone.now()
    )
    make_source(sim, "google_workspace", enabled=False)

    assert sync_due_sources.delay().get() == 1
    assert sync_due_sources.delay().get() == 0

    assert SyncRun.objects.get().source == due
    assert not recent.sync_runs.exists()


def test_the_sync_task_called_twice_syncs_once_unless_forced(sim):
    source = make_source(sim, "okta")

    assert sync_source.delay(source.pk).get() == "succeeded"
    assert sync_source.delay(source.pk).get() == "skipped: not due"
    assert sync_source.delay(source.pk, force=True).get() == "succeeded"
    assert SyncRun.objects.filter(source=source).count() == 2


def test_setting_an_identity_status_signals_offboarding_after_commit(django_capture_on_commit_callbacks):
    identity = IdentityFactory()
    received = []

    def receiver(sender, identity_ids, status, source_id, **kwargs):
        received.append((identity_ids, status, source_id))

    identity_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            identity_set_status(identity=identity, status=Identity.Status.SUSPENDED, actor="hr feed")
            identity_set_status(identity=identity, status=Identity.Status.SUSPENDED, actor="hr feed")
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        identity_status_changed.disconnect(receiver)

    assert received == [([identity.pk], "suspended", identity.source_id)]
    identity.refresh_from_db()
    assert identity.status_changed_at is not None
    assert AuditEvent.objects.filter(action="identity.suspended").count() == 1


def test_setup_simulator_sources_creates_four_sources_with_encrypted_credentials(sim):
    out = StringIO()
    call_command("setup_simulator_sources", url=sim.url, interval=15, stdout=out)
    call_command("setup_simulator_sources", url=sim.url, interval=20, stdout=out)

    sources = IdentitySource.objects.all()
    assert sorted(sources.values_list("kind", flat=True)) == sorted(IdentitySource.Kind.values)
    expected = sim.credentials()
    for source in sources:
        assert source.base_url.startswith(sim.url)
        assert source.sync_interval == timedelta(minutes=20)
        assert source.credentials == expected[source.kind]["credentials"]
    okta = sources.get(kind="okta")
    assert expected["okta"]["credentials"]["api_token"] not in okta.credentials_encrypted
    assert "updated" in out.getvalue()


def test_setup_simulator_sources_says_when_no_simulator_answers():
    with pytest.raises(CommandError, match="Cannot read credentials"):
        call_command("setup_simulator_sources", url="http://127.0.0.1:9", timeout=1)


def test_the_sync_command_prints_the_counts_and_fails_loudly(sim):
    source = make_source(sim, "okta")
    out = StringIO()
    call_command("sync_source", source.name, stdout=out)
    grants = sim.state()["providers"]["okta"]["grants"]
    assert "succeeded" in out.getvalue() and f"seen={grants}" in out.getvalue()

    sim.faults(provider="okta", kind="unauthorized", count=None)
    with pytest.raises(CommandError, match="HTTP 401"):
        call_command("sync_source", source.name, stdout=out)
    with pytest.raises(CommandError, match="No identity source named"):
        call_command("sync_source", "nope", stdout=out)


def test_the_revoke_command_needs_confirmation_for_a_tenant_wide_consent(
    sim, django_capture_on_commit_callbacks
):
    source = make_source(sim, "microsoft_entra")
    call_command("sync_source", source.name, stdout=StringIO())
    grant = Grant.objects.filter(
        consent_type=Grant.ConsentType.ALL_PRINCIPALS, idp_data__type="oauth2PermissionGrant"
    ).first()

    with pytest.raises(CommandError, match="tenant-wide"):
        call_command("revoke_grant", grant.pk, stdout=StringIO())

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("revoke_grant", grant.pk, "--confirm-tenant-wide", "--reason", "too broad", stdout=out)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoke_reason == "too broad"
