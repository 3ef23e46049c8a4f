"""The request lifecycle: each transition allowed and refused, one audit event each, effects on commit."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from connectors.models import Connector, IdentitySource, IllegalTransition
from governance.models import ConnectorRequest, Decision
from governance.services import (
    AlreadyDecided,
    NotAllowed,
    WorkflowError,
    connector_resume,
    connector_sanction,
    connector_set_owner,
    connector_suspend,
    request_create,
    request_decide_iam,
    request_decide_owner,
    request_provision,
    request_withdraw,
)
from tests.factories import ConnectorFactory, IdentitySourceFactory, UserFactory

pytestmark = pytest.mark.django_db

S = ConnectorRequest.Status
CS = Connector.Status


def _events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


def _access_request(employee, connector, **kw) -> ConnectorRequest:
    return request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.EXISTING,
        connector=connector,
        justification="Summarise my meetings.",
        scopes=["Calendars.Read"],
        **kw,
    )


def _new_request(employee, **kw) -> ConnectorRequest:
    return request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.NEW,
        name="Transcribe AI",
        vendor="Transcribe Inc.",
        justification="Meeting transcripts for the sales team.",
        scopes=["OnlineMeetingTranscript.Read.All"],
        **kw,
    )


# --- create


def test_a_new_connector_request_creates_a_requested_connector(employee):
    req = _new_request(employee)
    assert req.status == S.PENDING_OWNER
    assert req.connector.status == CS.REQUESTED
    assert req.connector.name == "Transcribe AI"
    assert req.connector.business_owner is None
    assert _events("request.created") == 1


def test_an_access_request_leaves_the_active_connector_active(employee, owned_connector):
    req = _access_request(employee, owned_connector)
    owned_connector.refresh_from_db()
    assert req.status == S.PENDING_OWNER
    assert owned_connector.status == CS.ACTIVE


def test_access_cannot_be_requested_to_a_connector_that_is_not_active(employee):
    connector = ConnectorFactory(suspended=True)
    with pytest.raises(IllegalTransition, match="only be requested to an active connector"):
        _access_request(employee, connector)
    assert not ConnectorRequest.objects.exists()
    assert _events("request.created") == 0


def test_a_second_open_access_request_for_the_same_connector_is_refused(employee, owned_connector):
    _access_request(employee, owned_connector)
    with pytest.raises(WorkflowError, match="already have an open request"):
        _access_request(employee, owned_connector)


def test_sanctioning_a_discovered_connector_moves_it_to_requested(employee):
    connector = ConnectorFactory(discovered=True)
    req = request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.SANCTION,
        connector=connector,
        justification="The whole team already uses it.",
        scopes=[],
    )
    connector.refresh_from_db()
    assert req.kind == ConnectorRequest.Kind.SANCTION
    assert connector.status == CS.REQUESTED


def test_an_active_connector_cannot_be_sanctioned_again(employee, owned_connector):
    with pytest.raises(IllegalTransition, match="cannot go from 'active' to 'requested'"):
        request_create(
            requester=employee,
            kind=ConnectorRequest.Kind.SANCTION,
            connector=owned_connector,
            justification="x",
            scopes=[],
        )


def test_a_request_needs_a_justification(employee, owned_connector):
    with pytest.raises(WorkflowError, match="why"):
        request_create(
            requester=employee,
            kind=ConnectorRequest.Kind.EXISTING,
            connector=owned_connector,
            justification="  ",
            scopes=[],
        )


def test_a_new_connector_takes_its_risk_from_the_requested_scopes(employee):
    req = request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.NEW,
        name="Admin Bot",
        justification="Automate the directory.",
        scopes=["Directory.ReadWrite.All"],
    )
    assert req.connector.risk in ("high", "critical")


# --- owner step


def test_the_owner_approves_and_the_request_goes_to_iam(employee, owner, owned_connector):
    req = _access_request(employee, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=True)
    req.refresh_from_db()
    assert req.status == S.PENDING_IAM
    decision = req.decisions.get()
    assert (decision.step, decision.outcome, decision.decided_by) == ("owner", "approve", owner)
    assert _events("request.owner_approved") == 1


def test_the_owner_approval_moves_a_new_connector_to_pending_iam(employee, owner, iam):
    req = _new_request(employee)
    connector_set_owner(connector=req.connector, owner=owner, actor=iam)
    request_decide_owner(request=req, actor=owner, approve=True)
    req.connector.refresh_from_db()
    assert req.connector.status == CS.PENDING_IAM


def test_the_owner_rejection_needs_a_reason(employee, owner, owned_connector):
    req = _access_request(employee, owned_connector)
    with pytest.raises(WorkflowError, match="needs a reason"):
        request_decide_owner(request=req, actor=owner, approve=False, reason=" ")
    req.refresh_from_db()
    assert req.status == S.PENDING_OWNER
    assert not Decision.objects.exists()


def test_the_owner_rejects_with_a_reason_and_a_new_connector_is_rejected(employee, owner, iam):
    req = _new_request(employee)
    connector_set_owner(connector=req.connector, owner=owner, actor=iam)
    request_decide_owner(request=req, actor=owner, approve=False, reason="We already have one.")
    req.refresh_from_db()
    req.connector.refresh_from_db()
    assert req.status == S.REJECTED
    assert req.connector.status == CS.REJECTED
    assert req.decisions.get().reason == "We already have one."
    assert _events("request.owner_rejected") == 1


def test_someone_who_does_not_own_the_connector_cannot_decide_the_owner_step(
    employee, owned_connector, manager
):
    req = _access_request(employee, owned_connector)
    with pytest.raises(NotAllowed, match="Only the business owner"):
        request_decide_owner(request=req, actor=manager, approve=True)


def test_iam_cannot_stand_in_for_the_owner(employee, owned_connector, iam):
    req = _access_request(employee, owned_connector)
    with pytest.raises(NotAllowed, match="Only the business owner"):
        request_decide_owner(request=req, actor=iam, approve=True)


def test_without_an_owner_the_owner_step_waits_for_iam_to_assign_one(employee, iam):
    req = _new_request(employee)
    with pytest.raises(NotAllowed, match="no business owner yet"):
        request_decide_owner(request=req, actor=iam, approve=True)


def test_the_requester_never_approves_their_own_request(owner, owned_connector):
    req = _access_request(owner, owned_connector)
    with pytest.raises(NotAllowed, match="someone else must decide"):
        request_decide_owner(request=req, actor=owner, approve=True)
    assert not Decision.objects.exists()


def test_the_person_a_request_is_made_for_cannot_decide_it(iam, owner, owned_connector):
    req = _access_request(iam, owned_connector, on_behalf_of=owner)
    with pytest.raises(NotAllowed, match="someone else must decide"):
        request_decide_owner(request=req, actor=owner, approve=True)


def test_the_owner_step_cannot_be_decided_twice(employee, owner, owned_connector):
    req = _access_request(employee, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=True)
    with pytest.raises(AlreadyDecided, match="approved by"):
        request_decide_owner(request=req, actor=owner, approve=False, reason="changed my mind")


# --- IAM step


@pytest.fixture
def at_iam(employee, owner, owned_connector) -> ConnectorRequest:
    req = _access_request(employee, owned_connector)
    return request_decide_owner(request=req, actor=owner, approve=True)


def test_iam_approves_after_the_owner(at_iam, iam):
    request_decide_iam(request=at_iam, actor=iam, approve=True)
    at_iam.refresh_from_db()
    assert at_iam.status == S.APPROVED
    assert list(at_iam.decisions.values_list("step", "outcome")) == [("owner", "approve"), ("iam", "approve")]
    assert _events("request.iam_approved") == 1


def test_iam_rejects_with_a_reason(at_iam, iam):
    request_decide_iam(request=at_iam, actor=iam, approve=False, reason="Data leaves the EU.")
    at_iam.refresh_from_db()
    assert at_iam.status == S.REJECTED
    assert _events("request.iam_rejected") == 1


def test_iam_rejection_needs_a_reason(at_iam, iam):
    with pytest.raises(WorkflowError, match="needs a reason"):
        request_decide_iam(request=at_iam, actor=iam, approve=False)


def test_only_iam_staff_decide_the_iam_step(at_iam, manager):
    with pytest.raises(NotAllowed, match="Only IAM staff"):
        request_decide_iam(request=at_iam, actor=manager, approve=True)


def test_the_iam_step_waits_for_the_owner_step(employee, owned_connector, iam):
    req = _access_request(employee, owned_connector)
    with pytest.raises(IllegalTransition, match="Waiting for the business owner"):
        request_decide_iam(request=req, actor=iam, approve=True)


def test_the_owner_and_iam_approvals_are_made_by_different_people(employee, iam, iam2):
    connector = ConnectorFactory()
    connector_set_owner(connector=connector, owner=iam, actor=iam2)
    req = _access_request(employee, connector)
    request_decide_owner(request=req, actor=iam, approve=True)
    with pytest.raises(NotAllowed, match="another IAM staff member must decide"):
        request_decide_iam(request=req, actor=iam, approve=True)
    request_decide_iam(request=req, actor=iam2, approve=True)
    req.refresh_from_db()
    assert req.status == S.APPROVED


def test_an_iam_requester_cannot_approve_their_own_request_at_the_iam_step(iam, owner, owned_connector):
    req = _access_request(iam, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=True)
    with pytest.raises(NotAllowed, match="someone else must decide"):
        request_decide_iam(request=req, actor=iam, approve=True)


def test_a_new_connector_goes_through_to_approved(employee, owner, iam):
    req = _new_request(employee)
    connector_set_owner(connector=req.connector, owner=owner, actor=iam)
    request_decide_owner(request=req, actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam, approve=True)
    req.connector.refresh_from_db()
    assert req.connector.status == CS.APPROVED


# --- provisioning


@pytest.fixture
def approved(at_iam, iam) -> ConnectorRequest:
    return request_decide_iam(request=at_iam, actor=iam, approve=True)


def test_provisioning_without_an_api_needs_evidence(approved, iam2):
    with pytest.raises(WorkflowError, match="record what you did"):
        request_provision(request=approved, actor=iam2)
    approved.refresh_from_db()
    assert approved.status == S.APPROVED


def test_a_manual_provisioning_with_evidence_activates_the_connector(employee, owner, iam, iam2):
    source = IdentitySourceFactory(name="Google", kind=IdentitySource.Kind.GOOGLE_WORKSPACE)
    req = _new_request(employee, source=source)
    connector_set_owner(connector=req.connector, owner=owner, actor=iam)
    request_decide_owner(request=req, actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam, approve=True)
    request_provision(request=req, actor=iam2, evidence="Trusted in Admin console, OU Sales, 09:40.")
    req.refresh_from_db()
    req.connector.refresh_from_db()
    assert req.status == S.PROVISIONED
    assert req.provision_evidence.startswith("Trusted in Admin console")
    assert req.connector.status == CS.ACTIVE
    provision = req.decisions.get(step=Decision.Step.PROVISION)
    assert provision.decided_by == iam2
    event = AuditEvent.objects.get(action="request.provisioned")
    assert event.data["manual"] is True


def test_only_iam_staff_provision(approved, owner):
    with pytest.raises(NotAllowed, match="Only IAM staff provision"):
        request_provision(request=approved, actor=owner, evidence="done")


def test_a_request_still_waiting_for_iam_cannot_be_provisioned(at_iam, iam):
    with pytest.raises(IllegalTransition):
        request_provision(request=at_iam, actor=iam, evidence="done")


def test_an_api_provisioning_is_queued_only_after_commit(approved, iam2, django_capture_on_commit_callbacks):
    source = IdentitySourceFactory(
        name="Okta", kind=IdentitySource.Kind.OKTA, base_url="http://127.0.0.1:9/okta"
    )
    ConnectorRequest.objects.filter(pk=approved.pk).update(source=source)
    approved.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request_provision(request=approved, actor=iam2)
    approved.refresh_from_db()
    assert approved.status == S.APPROVED
    assert approved.provision_data["queued_by"] == iam2.pk
    assert _events("request.provision_queued") == 1
    assert len(callbacks) == 1
    with pytest.raises(IllegalTransition, match="already being provisioned"):
        request_provision(request=approved, actor=iam2)


# --- withdraw


def test_the_requester_withdraws_an_open_request(employee, owned_connector):
    req = _access_request(employee, owned_connector)
    request_withdraw(request=req, actor=employee)
    req.refresh_from_db()
    assert req.status == S.WITHDRAWN
    assert _events("request.withdrawn") == 1


def test_only_the_requester_withdraws(employee, owner, owned_connector):
    req = _access_request(employee, owned_connector)
    with pytest.raises(NotAllowed, match="Only the requester"):
        request_withdraw(request=req, actor=owner)


def test_a_decided_request_cannot_be_withdrawn(employee, owner, owned_connector):
    req = _access_request(employee, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=False, reason="no")
    with pytest.raises(AlreadyDecided):
        request_withdraw(request=req, actor=employee)


def test_withdrawing_a_sanction_request_returns_the_connector_to_triage(employee):
    connector = ConnectorFactory(discovered=True)
    req = request_create(
        requester=employee, kind="sanction", connector=connector, justification="x", scopes=[]
    )
    request_withdraw(request=req, actor=employee)
    connector.refresh_from_db()
    assert connector.status == CS.DISCOVERED


def test_withdrawing_a_new_connector_request_leaves_it_rejected(employee):
    req = _new_request(employee)
    request_withdraw(request=req, actor=employee)
    req.connector.refresh_from_db()
    assert req.connector.status == CS.REJECTED


# --- sanction, suspend, resume


def test_iam_sanctions_a_shadow_connector_with_an_owner_on_someones_behalf(iam, owner, employee):
    connector = ConnectorFactory(discovered=True)
    req = connector_sanction(
        connector=connector, actor=iam, owner=owner, justification="Used by Sales.", on_behalf_of=employee
    )
    connector.refresh_from_db()
    assert connector.status == CS.REQUESTED
    assert connector.business_owner == owner
    assert (req.requester, req.on_behalf_of) == (iam, employee)
    assert owner.has_perm("connectors.decide_connector", connector)


def test_iam_suspends_and_resumes_an_active_connector(iam, owned_connector):
    connector_suspend(connector=owned_connector, actor=iam, reason="Vendor breach")
    owned_connector.refresh_from_db()
    assert owned_connector.status == CS.SUSPENDED
    connector_resume(connector=owned_connector, actor=iam)
    owned_connector.refresh_from_db()
    assert owned_connector.status == CS.ACTIVE
    assert _events("connector.suspended") == 1
    assert _events("connector.resumed") == 1


def test_a_connector_that_is_not_active_cannot_be_suspended(iam):
    connector = ConnectorFactory(discovered=True)
    with pytest.raises(IllegalTransition, match="cannot go from 'discovered' to 'suspended'"):
        connector_suspend(connector=connector, actor=iam)
    assert _events("connector.suspended") == 0


def test_an_active_connector_cannot_be_resumed(iam, owned_connector):
    with pytest.raises(IllegalTransition, match="cannot go from 'active' to 'active'"):
        connector_resume(connector=owned_connector, actor=iam)


def test_the_owner_cannot_suspend(owner, owned_connector):
    with pytest.raises(NotAllowed):
        connector_suspend(connector=owned_connector, actor=owner)


def test_a_refused_step_writes_no_audit_event(employee, owned_connector):
    req = _access_request(employee, owned_connector)
    before = AuditEvent.objects.count()
    stranger = UserFactory()
    with pytest.raises(NotAllowed):
        request_decide_owner(request=req, actor=stranger, approve=True)
    assert AuditEvent.objects.count() == before


def test_a_superuser_is_not_the_business_owner(employee, owned_connector):
    admin = UserFactory(is_superuser=True, is_staff=True)
    req = _access_request(employee, owned_connector)
    with pytest.raises(NotAllowed, match="Only the business owner"):
        request_decide_owner(request=req, actor=admin, approve=True)
