"""Admin actions: each calls one service, reports with message_user, offered only with the permission."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from connectors.models import Connector
from governance.models import ConnectorRequest
from governance.services import request_create, request_decide_iam, request_decide_owner
from tests.conftest import enrol_totp
from tests.factories import ConnectorFactory, UserFactory

pytestmark = pytest.mark.django_db

REQUESTS = reverse("admin:governance_connectorrequest_changelist")
CONNECTORS = reverse("admin:connectors_connector_changelist")


def _ask(employee, connector) -> ConnectorRequest:
    return request_create(
        requester=employee, kind="existing", connector=connector, justification="x", scopes=[]
    )


def _act(client, url: str, action: str, objs, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objs], **extra}
    return client.post(url, data, follow=True)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_iam_approves_requests_waiting_for_iam_from_the_admin(client, iam, employee, owner, owned_connector):
    req = request_decide_owner(request=_ask(employee, owned_connector), actor=owner, approve=True)
    client.force_login(iam)
    response = _act(client, REQUESTS, "approve", [req])
    req.refresh_from_db()
    assert req.status == "approved"
    assert "1 approved." in _messages(response)


def test_an_approval_the_service_refuses_is_reported_and_changes_nothing(client, iam, owned_connector):
    req = _ask(iam, owned_connector)
    client.force_login(iam)
    response = _act(client, REQUESTS, "approve", [req])
    req.refresh_from_db()
    assert req.status == "pending_owner"
    assert any("someone else must decide" in m for m in _messages(response))


def test_reject_asks_for_a_reason_on_an_intermediate_page(client, iam, employee, owner, owned_connector):
    req = request_decide_owner(request=_ask(employee, owned_connector), actor=owner, approve=True)
    client.force_login(iam)
    page = client.post(REQUESTS, {"action": "reject", ACTION_CHECKBOX_NAME: [req.pk]})
    assert page.status_code == 200
    assert "Reject requests" in page.content.decode()
    req.refresh_from_db()
    assert req.status == "pending_iam"
    response = _act(client, REQUESTS, "reject", [req], apply="1", reason="Data leaves the EU.")
    req.refresh_from_db()
    assert req.status == "rejected"
    assert req.decisions.get(step="iam").reason == "Data leaves the EU."
    assert "1 rejected." in _messages(response)


def test_provision_without_an_api_is_refused_with_a_message(
    client, iam, iam2, employee, owner, owned_connector
):
    req = request_decide_owner(request=_ask(employee, owned_connector), actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam2, approve=True)
    client.force_login(iam)
    response = _act(client, REQUESTS, "provision", [req])
    assert any("record what you did" in m for m in _messages(response))


def test_iam_suspends_and_resumes_connectors_from_the_admin(client, iam):
    connectors = ConnectorFactory.create_batch(2, active=True)
    client.force_login(iam)
    response = _act(client, CONNECTORS, "suspend", connectors)
    assert "2 suspended." in _messages(response)
    assert set(Connector.objects.values_list("status", flat=True)) == {"suspended"}
    _act(client, CONNECTORS, "resume", connectors)
    assert set(Connector.objects.values_list("status", flat=True)) == {"active"}


def test_iam_revokes_a_connector_with_a_reason_from_the_admin(client, iam):
    connector = ConnectorFactory(discovered=True)
    client.force_login(iam)
    response = _act(client, CONNECTORS, "revoke", [connector], apply="1", reason="Shadow app, not allowed.")
    connector.refresh_from_db()
    assert connector.status == "revoked"
    assert "1 revoked." in _messages(response)


def _offered(client, url: str) -> set[str]:
    form = client.get(url).context["action_form"]
    return {name for name, _ in form.fields["action"].choices} if form else set()


def test_the_actions_are_offered_only_with_the_permission(client, iam):
    viewer = UserFactory(is_staff=True)
    enrol_totp(viewer)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_connectorrequest"),
        Permission.objects.get(codename="view_connector"),
    )
    client.force_login(viewer)
    assert not {"approve", "reject", "provision"} & _offered(client, REQUESTS)
    assert not {"suspend", "resume", "revoke"} & _offered(client, CONNECTORS)
    client.force_login(iam)
    assert {"approve", "reject", "provision"} <= _offered(client, REQUESTS)
    assert {"suspend", "resume", "revoke"} <= _offered(client, CONNECTORS)
