"""A duplicate delivery of the revocation task skips: the task claims its grant before the IdP call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from connectors import services
from connectors.models import Grant
from connectors.sync import sync_source
from connectors.tasks import revoke_grant_at_idp
from tests.connectors.conftest import make_source, provider

pytestmark = pytest.mark.django_db


def _revoking_grant(sim, iam, django_capture_on_commit_callbacks) -> Grant:
    source = make_source(sim, "okta")
    assert sync_source(source).outcome == "succeeded"
    grant = (
        Grant.objects.filter(
            source=source, status=Grant.Status.ACTIVE, consent_type=Grant.ConsentType.PRINCIPAL
        )
        .order_by("pk")
        .first()
    )
    with django_capture_on_commit_callbacks(execute=False):  # the task is delivered by hand below
        services.grant_revoke(grant=grant, actor=iam, reason="duplicate delivery test")
    return grant


def _counting_adapter(monkeypatch, during_call=None) -> list[str]:
    """Count IdP revocation calls; ``during_call`` runs inside the first, as a concurrent delivery would."""
    calls: list[str] = []
    real = services.source_adapter

    def adapter_for(source):
        adapter = real(source)
        revoke = adapter.revoke_grant

        def counted(ref, **kwargs):
            calls.append(ref.external_id)
            if during_call is not None and len(calls) == 1:
                during_call()
            return revoke(ref, **kwargs)

        adapter.revoke_grant = counted
        return adapter

    monkeypatch.setattr(services, "source_adapter", adapter_for)
    return calls


def test_a_second_delivery_during_the_idp_call_skips_and_the_idp_is_called_once(
    sim, iam, db, monkeypatch, django_capture_on_commit_callbacks
):
    grant = _revoking_grant(sim, iam, django_capture_on_commit_callbacks)
    second: list[str] = []
    calls = _counting_adapter(
        monkeypatch, during_call=lambda: second.append(revoke_grant_at_idp.run(grant.pk))
    )

    first = revoke_grant_at_idp.run(grant.pk)

    assert len(calls) == 1, "the duplicate delivery called the IdP again"
    assert second == ["skipped: another delivery is revoking it"]
    assert first == "revoked"
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.revoke_claimed_at is None
    # One outcome recorded, the one of the call that removed it (not "already gone").
    revoked = AuditEvent.objects.filter(action="grant.revoked", grant=grant)
    assert [e.data["idp_outcome"] for e in revoked] == ["revoked"]
    assert sim.grant_exists(provider(grant.source), grant.external_id) is False


def test_two_deliveries_in_a_row_call_the_idp_once(
    sim, iam, db, monkeypatch, django_capture_on_commit_callbacks
):
    grant = _revoking_grant(sim, iam, django_capture_on_commit_callbacks)
    calls = _counting_adapter(monkeypatch)
    assert revoke_grant_at_idp.run(grant.pk) == "revoked"
    assert revoke_grant_at_idp.run(grant.pk) == "skipped: not revoking"
    assert len(calls) == 1


def test_a_dead_workers_claim_is_taken_over_after_the_lease(
    sim, iam, db, monkeypatch, settings, django_capture_on_commit_callbacks
):
    grant = _revoking_grant(sim, iam, django_capture_on_commit_callbacks)
    stale = timezone.now() - timedelta(minutes=settings.LANYARD_REVOKE_CLAIM_MINUTES + 1)
    Grant.objects.filter(pk=grant.pk).update(revoke_claimed_at=timezone.now())
    assert revoke_grant_at_idp.run(grant.pk) == "skipped: another delivery is revoking it"
    Grant.objects.filter(pk=grant.pk).update(revoke_claimed_at=stale)  # its worker died mid-call
    assert revoke_grant_at_idp.run(grant.pk) == "revoked"
