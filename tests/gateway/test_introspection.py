"""Token introspection (RFC 7662) with the register's verdict: revocation and suspension at once."""

from __future__ import annotations

import base64

import pytest
from oauth2_provider.models import Application

from connectors import services as register
from connectors.models import Connector, Grant
from gateway.introspection import token_status

from .test_authorization_server import full_flow

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway_client(db):
    """The gateway's own confidential client, which authenticates to introspect."""
    app = Application.objects.create(
        name="Lanyard gateway",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret="gateway-secret-for-tests",
        hash_client_secret=True,
    )
    basic = base64.b64encode(f"{app.client_id}:gateway-secret-for-tests".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {basic}"}


def introspect(client, headers, token):
    return client.post("/oauth/introspect/", {"token": token}, **headers)


def test_active_token_carries_grant_connector_and_audience(client, employee, endpoint, pdp, gateway_client):
    _, answer = full_flow(client, employee)
    body = introspect(client, gateway_client, answer["access_token"]).json()
    grant = Grant.objects.get(connector=endpoint.connector)
    assert body["active"] is True
    assert body["aud"] == ["http://127.0.0.1:8901/mcp/team-wiki"]
    assert body["lanyard_grant"] == grant.pk
    assert body["lanyard_connector"] == endpoint.connector_id
    assert body["lanyard_identity"] == employee.identities.get().pk


def test_unauthenticated_introspection_is_refused(client, employee, endpoint, pdp):
    _, answer = full_flow(client, employee)
    assert client.post("/oauth/introspect/", {"token": answer["access_token"]}).status_code in (401, 403)


def test_revoked_grant_is_inactive_at_once(client, employee, endpoint, pdp, gateway_client, iam):
    _, answer = full_flow(client, employee)
    register.grant_revoke(grant=Grant.objects.get(), actor=iam, reason="test")
    assert introspect(client, gateway_client, answer["access_token"]).json() == {"active": False}


def test_suspended_connector_is_inactive_at_once(client, employee, endpoint, pdp):
    _, answer = full_flow(client, employee)
    assert token_status(answer["access_token"]).active
    Connector.objects.filter(pk=endpoint.connector_id).update(status=Connector.Status.SUSPENDED)
    status = token_status(answer["access_token"])
    assert not status.active and "Suspended" in status.reason


def test_held_grant_is_inactive(client, employee, endpoint, pdp, iam):
    _, answer = full_flow(client, employee)
    register.grants_hold(grants_qs=Grant.objects.all(), actor=iam, reason="Suspended at the IdP")
    assert "on hold" in token_status(answer["access_token"]).reason


def test_unknown_and_missing_tokens(client, gateway_client):
    assert introspect(client, gateway_client, "nope").json() == {"active": False}
    assert client.post("/oauth/introspect/", {}, **gateway_client).status_code == 400


def test_status_is_two_queries(client, employee, endpoint, pdp, django_assert_num_queries):
    _, answer = full_flow(client, employee)
    with django_assert_num_queries(2):
        assert token_status(answer["access_token"]).active


def test_expired_token_is_inactive(client, employee, endpoint, pdp):
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    _, answer = full_flow(client, employee)
    AccessToken.objects.filter(user=employee).update(expires=timezone.now() - timedelta(seconds=1))
    status = token_status(answer["access_token"])
    assert not status.active and "expired" in status.reason
