"""Headless agents: client credentials for a registered endpoint, decided for the agent's owner, a grant."""

from __future__ import annotations

import base64

import pytest
from oauth2_provider.models import AccessToken, get_application_model

from audit.models import AuditEvent
from connectors import services as register
from connectors.models import Connector, Grant
from gateway.introspection import token_status
from gateway.models import Endpoint
from tests.factories import ConnectorFactory

pytestmark = pytest.mark.django_db

RESOURCE = "http://127.0.0.1:8901/mcp/team-wiki"
SECRET = "agent-client-secret-for-tests-5d1f"


@pytest.fixture
def wiki(owner):
    connector = ConnectorFactory(
        name="Team Wiki MCP", kind="mcp_server", business_owner=owner, status=Connector.Status.ACTIVE
    )
    return Endpoint.objects.create(
        connector=connector, slug="team-wiki", upstream_url="http://127.0.0.1:9/mcp"
    )


def agent(user, name="nightly-report bot"):
    app = get_application_model()(
        name=name,
        client_type="confidential",
        authorization_grant_type="client-credentials",
        user=user,
        client_secret=SECRET,
    )
    app.save()
    return app


def token_request(client, app, resource=RESOURCE, secret=SECRET):
    basic = base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()
    return client.post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "mcp", "resource": resource},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )


def test_an_agent_gets_a_bound_token_that_is_its_owners_grant(client, employee, wiki, pdp):
    app = agent(employee)
    answer = token_request(client, app)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert "refresh_token" not in body and body["expires_in"] == 600
    token = AccessToken.objects.get(application=app)
    assert (token.user_id, token.resource) == (employee.pk, [RESOURCE])
    grant = Grant.objects.get(external_id__startswith="gateway:")
    assert grant.connector_id == wiki.connector_id and grant.idp_data["agent"] is True
    assert grant.idp_data["client_name"] == "nightly-report bot"
    assert AuditEvent.objects.filter(action="grant.issued", grant=grant).exists()
    (asked,) = [r for r in pdp.requests if r["action"]["name"] == "connect"]
    assert asked["context"] == {"via": "gateway_agent", "agent": "nightly-report bot"}
    status = token_status(body["access_token"])
    assert status.active and status.claims["aud"] == [RESOURCE]

    register.grant_revoke(grant=grant, actor="system", reason="bot retired")
    assert not token_status(body["access_token"]).active  # revoking the grant ends the agent's token


def test_an_agent_without_an_owner_gets_nothing(client, wiki, pdp):
    answer = token_request(client, agent(None, name="orphan bot"))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert not AccessToken.objects.exists()


def test_the_owner_must_be_permitted_by_the_pdp(client, employee, wiki, pdp):
    pdp.deny[(str(employee.pk), "connect")] = "Agents need an approved grant for Team Wiki MCP."
    pdp.deny[(employee.email, "connect")] = "Agents need an approved grant for Team Wiki MCP."
    answer = token_request(client, agent(employee))
    assert answer.status_code in (400, 401, 403)
    assert answer.json()["error"] == "access_denied"
    assert "approved grant" in answer.json()["error_description"]
    assert not AccessToken.objects.exists()


@pytest.mark.parametrize(
    "resource", ["", "http://127.0.0.1:8901/mcp/nobody-here", "http://127.0.0.1:8901/mcp/team-wiki/extra"]
)
def test_the_resource_must_be_one_registered_endpoint(client, employee, wiki, pdp, resource):
    answer = token_request(client, agent(employee), resource=resource)
    assert answer.status_code == 400
    assert answer.json()["error"] in ("invalid_target", "invalid_request")
    assert not AccessToken.objects.exists()


def test_a_suspended_connector_and_a_wrong_secret_are_refused(client, employee, wiki, pdp):
    app = agent(employee)
    assert token_request(client, app, secret="not-the-secret").status_code == 401
    Connector.objects.filter(pk=wiki.connector_id).update(status=Connector.Status.SUSPENDED)
    answer = token_request(client, app)
    assert answer.json()["error"] == "access_denied"
    assert "Team Wiki MCP is Suspended" in answer.json()["error_description"]
