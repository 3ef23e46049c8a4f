"""Provisioning through the IdP's API (Entra over HTTP on the simulator), then revocation of the result."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from connectors.models import Grant
from connectors.services import grant_revoke
from governance.models import ConnectorRequest
from governance.services import request_create, request_decide_iam, request_decide_owner, request_provision
from governance.tasks import provision_request
from tests.governance.simworld import PROVIDER, entra_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(sim, employee, owner, iam):
    world = entra_world(sim, employee=employee, owner=owner)
    req = request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.EXISTING,
        connector=world.connector,
        justification="Transcripts of my customer calls.",
        scopes=["Calendars.Read", "OnlineMeetings.Read"],
    )
    request_decide_owner(request=req, actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam, approve=True)
    return world, req


def test_provisioning_creates_the_delegated_grant_at_entra_and_records_it(
    sim, approved, iam2, employee, django_capture_on_commit_callbacks
):
    world, req = approved
    with django_capture_on_commit_callbacks(execute=True):
        request_provision(request=req, actor=iam2)
    req.refresh_from_db()
    world.connector.refresh_from_db()
    assert req.status == ConnectorRequest.Status.PROVISIONED
    grant = Grant.objects.get(connector=world.connector)
    assert grant.identity == world.identity
    assert grant.app == world.app
    assert grant.scopes == ["Calendars.Read", "OnlineMeetings.Read"]
    assert sim.grant_exists(PROVIDER, grant.external_id) is True
    event = AuditEvent.objects.get(action="request.provisioned")
    assert event.grant_id == grant.pk and event.data["manual"] is False
    assert req.decisions.get(step="provision").decided_by == iam2


def test_a_duplicate_provisioning_task_changes_nothing(
    sim, approved, iam2, django_capture_on_commit_callbacks
):
    world, req = approved
    with django_capture_on_commit_callbacks(execute=True):
        request_provision(request=req, actor=iam2)
    events = AuditEvent.objects.count()
    assert provision_request.delay(req.pk, iam2.pk).get() == "skipped"
    assert provision_request.delay(req.pk, iam2.pk).get() == "skipped"
    assert AuditEvent.objects.count() == events
    assert Grant.objects.filter(connector=world.connector).count() == 1


def test_the_provisioned_grant_can_be_revoked_at_the_idp(
    sim, approved, iam2, owner, django_capture_on_commit_callbacks
):
    world, req = approved
    with django_capture_on_commit_callbacks(execute=True):
        request_provision(request=req, actor=iam2)
    grant = Grant.objects.get(connector=world.connector)
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=owner, reason="Left the sales team.")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert sim.grant_exists(PROVIDER, grant.external_id) is False


def test_a_refusal_at_the_idp_is_recorded_and_provisioning_can_be_retried(
    sim, approved, iam2, django_capture_on_commit_callbacks
):
    world, req = approved
    sim.faults(kind="forbidden", provider="entra", method="POST", count=1)
    with django_capture_on_commit_callbacks(execute=True):
        request_provision(request=req, actor=iam2)
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.APPROVED
    assert "403" in req.provision_data["last_error"]
    assert AuditEvent.objects.filter(action="request.provision_failed").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        request_provision(request=req, actor=iam2)
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.PROVISIONED
