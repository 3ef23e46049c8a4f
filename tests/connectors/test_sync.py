"""Sync against the simulated tenant over real HTTP: counts, shadow discovery, idempotency, faults, claims."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from connectors import risk
from connectors.models import Connector, ConnectorApp, Grant, Identity, SyncRun
from connectors.signals import identity_status_changed
from connectors.sync import VANISHED_REASON, sync_source
from tests.connectors.conftest import PROVIDERS, TENANT, Writes, make_source, provider
from tests.factories import ConnectorFactory

pytestmark = pytest.mark.django_db


def events(action: str, **filters) -> int:
    return AuditEvent.objects.filter(action=action, **filters).count()


def test_a_full_sync_matches_the_simulated_tenant(sim, source):
    state = sim.state()["providers"][provider(source)]

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.seen == state["grants"]
    assert run.new == state["grants"]
    assert run.changed == run.vanished == 0
    assert run.identities_seen == state["users"]
    assert Grant.objects.filter(source=source).count() == state["grants"]
    assert Identity.objects.filter(source=source).count() == state["users"]
    assert events("sync.succeeded", source=source) == 1
    source.refresh_from_db()
    assert source.sync_claimed_at is None
    assert source.last_success_at is not None
    assert source.last_sync_started_at == run.started_at

    # Every app behind a grant became one discovered (shadow) connector, with the risk of its riskiest grant.
    apps = ConnectorApp.objects.filter(source=source)
    client_ids = set(Grant.objects.filter(source=source).values_list("app__client_id", flat=True))
    assert run.shadow == apps.count() == len(client_ids) > 0
    assert Connector.objects.filter(status=Connector.Status.DISCOVERED).count() == run.shadow
    assert events("connector.discovered", source=source) == run.shadow
    for connector in Connector.objects.prefetch_related("grants"):
        assert connector.discovered_at is not None and connector.name
        worst = max(
            risk.assess(g.scopes, tenant_wide=g.consent_type == Grant.ConsentType.ALL_PRINCIPALS).score
            for g in connector.grants.all()
        )
        assert (connector.risk_score, connector.risk) == (worst, risk.level_for(worst))


def test_grants_of_a_registered_app_attach_to_its_connector(sim, db):
    source = make_source(sim, "google_workspace")
    run = sync_source(source)
    app = ConnectorApp.objects.filter(source=source).first()
    sanctioned = ConnectorFactory(name="Sanctioned", active=True)
    held = app.grants.count()
    Grant.objects.filter(app=app).delete()
    old = app.connector
    app.connector = sanctioned
    app.save()
    old.delete()

    again = sync_source(source)

    assert again.outcome == SyncRun.Outcome.SUCCEEDED
    assert again.shadow == 0
    assert sanctioned.grants.count() == held
    assert run.shadow > 0


def test_a_resync_without_changes_writes_nothing(sim, source):
    sync_source(source)
    before = AuditEvent.objects.count()

    with Writes() as writes:
        run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert writes.register == []
    assert (run.new, run.changed, run.vanished, run.shadow) == (0, 0, 0, 0)
    assert run.seen == Grant.objects.filter(source=source).count()
    # Only the run's own event; activity already recorded is not recorded again.
    assert AuditEvent.objects.count() == before + 1


def test_manager_links_are_resolved_after_all_users_are_seen(sim, db):
    source = make_source(sim, "microsoft_entra")
    sync_source(source)

    with_manager = Identity.objects.filter(source=source, manager__isnull=False)
    assert with_manager.count() > TENANT["identities"] // 2
    assert all(i.manager.source_id == source.pk for i in with_manager.select_related("manager"))


def test_a_grant_removed_at_the_idp_is_marked_vanished(sim, source):
    sync_source(source)
    grant = Grant.objects.filter(source=source, status=Grant.Status.ACTIVE).order_by("pk")[3]
    assert sim.mutate("remove_grant", provider=provider(source), id=grant.external_id)["removed"]

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.vanished == 1
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoke_reason == VANISHED_REASON
    assert grant.revoked_at is not None and grant.revoked_by is None
    assert events("grant.vanished", grant=grant) == 1
    assert Grant.objects.filter(source=source, status=Grant.Status.ACTIVE).count() == run.seen


def _grant_listing_fault(source, kind: str) -> dict:
    """A fault switch that hits the grant listing part-way through, after some grants were listed."""
    p = provider(source)
    if p in ("google", "okta"):
        # Grants are listed per user: fail one user's listing, halfway down the directory.
        person = Identity.objects.filter(source=source).order_by("email")[TENANT["identities"] // 2]
        path = f"/users/{person.external_id}/" + ("tokens" if p == "google" else "grants")
        return {"provider": p, "kind": kind, "path": path, "count": None}
    if p == "entra":
        return {"provider": p, "kind": kind, "path": "oauth2PermissionGrants", "count": None}
    return {"provider": p, "kind": kind, "path": "personal-access-tokens", "page": 2, "count": None}


FAULTS = {
    "server_error": {"status": 503},
    "timeout": {"delay": 0.6},
    "malformed": {},
    "drop": {},
    "unauthorized": {},
    "forbidden": {},
    "rate_limit": {"retry_after": 0.01},
}


# Every fault switch once, spread over the providers, and a 5xx on every provider.
FAULT_CASES = sorted(
    set(zip(FAULTS, itertools.cycle(PROVIDERS), strict=False))
    | {("server_error", kind) for kind in PROVIDERS}
)


@pytest.mark.parametrize(("kind", "source_kind"), FAULT_CASES)
def test_a_fault_mid_listing_fails_the_run_and_vanishes_nothing(sim, db, kind, source_kind, settings):
    source = make_source(sim, source_kind)
    settings.LANYARD_IDP_TIMEOUT = 0.3
    settings.LANYARD_IDP_MAX_RETRIES = 1
    sync_source(source)
    gone = Grant.objects.filter(source=source).order_by("-pk").first()
    sim.mutate("remove_grant", provider=provider(source), id=gone.external_id)
    sim.faults({**_grant_listing_fault(source, kind), **FAULTS[kind]})

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.vanished == 0
    assert source.name in run.error and "grants" in run.error
    assert "[" in run.error  # the adapter's "[source endpoint HTTP status]"
    gone.refresh_from_db()
    assert gone.status == Grant.Status.ACTIVE
    assert not Grant.objects.filter(source=source, status=Grant.Status.REVOKED).exists()
    assert events("sync.failed", source=source) == 1
    source.refresh_from_db()
    assert source.sync_claimed_at is None


def test_rate_limits_are_waited_out(sim, source):
    sim.faults(provider=provider(source), kind="rate_limit", count=2, retry_after=0.01)

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.seen == sim.state()["providers"][provider(source)]["grants"]


def test_a_second_sync_is_refused_while_the_claim_is_held(sim, db):
    source = make_source(sim, "okta")
    held = timezone.now() - timedelta(minutes=5)
    type(source).objects.filter(pk=source.pk).update(sync_claimed_at=held)

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.REFUSED
    assert "already running" in run.error and source.name in run.error
    assert not Grant.objects.exists()
    source.refresh_from_db()
    assert source.sync_claimed_at == held


def test_a_stale_claim_is_taken_over(sim, db, settings):
    source = make_source(sim, "okta")
    stale = timezone.now() - timedelta(minutes=settings.LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES + 1)
    type(source).objects.filter(pk=source.pk).update(sync_claimed_at=stale)

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    source.refresh_from_db()
    assert source.sync_claimed_at is None


def test_an_identity_deprovisioned_at_the_idp_is_signalled_after_commit(
    sim, source, django_capture_on_commit_callbacks
):
    sync_source(source)
    person = (
        Identity.objects.filter(source=source, status=Identity.Status.ACTIVE, grants__isnull=False)
        .order_by("email")
        .first()
    )
    sim.mutate("set_status", email=person.email, status="deprovisioned")
    received = []

    def receiver(sender, identity_ids, status, source_id, **kwargs):
        received.append((list(identity_ids), status, source_id))

    identity_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = sync_source(source)
        assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
        assert received == []  # nothing before commit
        for callback in callbacks:
            callback()
    finally:
        identity_status_changed.disconnect(receiver)

    assert (([person.pk], "deprovisioned", source.pk)) in received
    person.refresh_from_db()
    assert person.status == Identity.Status.DEPROVISIONED
    assert person.status_changed_at is not None
    assert events("identity.deprovisioned", target_id=str(person.pk)) == 1


def test_activity_updates_last_use_and_lands_in_the_audit_trail_once(sim, db):
    source = make_source(sim, "okta")
    run = sync_source(source)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    recorded = AuditEvent.objects.filter(source=source, external_id__startswith=f"idp:{source.pk}:")
    count = recorded.count()

    assert count > 0
    source.refresh_from_db()
    assert source.cursors.get("activity_since")
    assert Grant.objects.filter(source=source, last_used_at__isnull=False).exists()
    sync_source(source)
    assert recorded.count() == count


def test_queries_per_page_stay_constant(sim, db, settings):
    sim.reset(**{**TENANT, "events": 10})
    grants = sim.state()["providers"]["google"]["grants"]
    audit.record("test.warm_up")  # the chain head row is created by the first event ever
    counts = {}
    for pages in (1, 3):
        # Each from the same empty register: a second source of the same tenant would find the
        # first one's connectors and people, and cost other statements.
        savepoint = transaction.savepoint_create()
        settings.LANYARD_SYNC_PAGE_SIZE = max(TENANT["identities"], math.ceil(grants / pages))
        source = make_source(sim, "google_workspace", name=f"google {pages}")
        with Writes() as first:
            sync_source(source)
        with Writes() as again:
            sync_source(source)
        counts[pages] = (first.statements, again.statements)
        transaction.savepoint_rollback(savepoint)
    # Two more pages cost two more statements each on a first sync (load, insert) and one on a resync
    # (load); PostgreSQL adds one a page (SET LOCAL synchronous_commit).
    extra = 1 if connection.vendor == "postgresql" else 0
    assert counts[3][0] - counts[1][0] == 2 * (2 + extra)
    assert counts[3][1] - counts[1][1] == 2 * (1 + extra)


def test_last_use_never_moves_back(sim, db):
    source = make_source(sim, "okta")
    sync_source(source)
    latest = Grant.objects.filter(source=source).aggregate(m=Max("last_used_at"))["m"]
    future = latest + timedelta(days=30)
    Grant.objects.filter(source=source).update(last_used_at=future)

    with Writes() as writes:
        sync_source(source)

    assert writes.register == []
    assert not Grant.objects.filter(source=source).exclude(last_used_at=future).exists()


def test_a_grant_consented_again_after_it_vanished_is_active_again(sim, db):
    source = make_source(sim, "okta")
    sync_source(source)
    grant = (
        Grant.objects.filter(source=source, kind=Grant.Kind.OAUTH_CONSENT)
        .select_related("identity", "app")
        .order_by("pk")
        .first()
    )
    sim.mutate("remove_grant", provider="okta", id=grant.external_id)
    assert sync_source(source).vanished >= 1
    sim.mutate("add_grant", provider="okta", email=grant.identity.email, app=grant.app.name)

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    assert (grant.revoked_at, grant.revoke_reason) == (None, "")
    assert events("grant.reappeared", grant=grant) == 1
