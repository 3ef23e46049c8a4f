"""The OAuth authorization server for gateway tokens, end to end through Django's test client.

Discovery (RFC 8414), dynamic registration (RFC 7591) under IAM's settings, authorization code with
PKCE (S256), consent decided by the PDP, the RFC 8707 binding to one connector endpoint, short-lived
access tokens, rotated refresh tokens, the register Grant, and revocation through the grant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from oauth2_provider.models import AccessToken, RefreshToken

from audit.models import AuditEvent
from connectors import services as register
from connectors.models import Connector, Grant
from gateway.models import Endpoint
from tests.factories import ConnectorFactory

pytestmark = pytest.mark.django_db

REDIRECT = "http://127.0.0.1:33418/callback"
RESOURCE = "http://127.0.0.1:8901/mcp/team-wiki"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_client(client, redirect=REDIRECT):
    return client.post(
        "/oauth/register/",
        data=json.dumps(
            {
                "client_name": "SDK test client",
                "redirect_uris": [redirect],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        ),
        content_type="application/json",
    )


def authorize_params(client_id, challenge, resource=RESOURCE):
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "mcp",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }


def full_flow(client, user, resource=RESOURCE):
    """Register, consent, exchange the code; return (client_id, token answer)."""
    client_id = register_client(client).json()["client_id"]
    verifier, challenge = pkce()
    client.force_login(user)
    params = authorize_params(client_id, challenge, resource)
    page = client.get("/oauth/authorize/", params)
    assert page.status_code == 200, page.content
    form = params | {"allow": "Authorize"}
    answer = client.post("/oauth/authorize/", form)
    assert answer.status_code == 302, answer.content
    query = parse_qs(urlsplit(answer["Location"]).query)
    assert query["state"] == ["st-1"]
    assert query["iss"] == [settings.LANYARD_BASE_URL]  # RFC 9207
    client.logout()
    token = client.post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": resource,
        },
    )
    assert token.status_code == 200, token.content
    return client_id, token.json()


def test_metadata_advertises_pkce_registration_and_code_flow(client, settings):
    doc = client.get("/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == settings.LANYARD_BASE_URL
    assert doc["authorization_endpoint"].endswith("/oauth/authorize/")
    assert doc["token_endpoint"].endswith("/oauth/token/")
    assert doc["registration_endpoint"].endswith("/oauth/register/")
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert "none" in doc["token_endpoint_auth_methods_supported"]


def test_full_flow_issues_a_bound_short_lived_token_recorded_as_a_grant(client, employee, endpoint, pdp):
    client_id, answer = full_flow(client, employee)
    assert answer["expires_in"] == 600
    assert answer["refresh_token"]
    token = AccessToken.objects.get(application__client_id=client_id, user=employee)
    assert token.resource == [RESOURCE]
    assert answer["access_token"] not in (token.token, token.token_checksum)  # stored hashed (RFC 9700 §4)
    grant = Grant.objects.get(connector=endpoint.connector)
    assert grant.kind == Grant.Kind.PORTAL_CREDENTIAL
    assert grant.source_id is None
    assert grant.identity == employee.identities.get()
    assert grant.idp_data["issuer"] == "Lanyard gateway"
    assert grant.status == Grant.Status.ACTIVE
    assert answer["access_token"] not in json.dumps(grant.idp_data)
    assert AuditEvent.objects.filter(action="grant.issued", grant=grant).count() == 1
    # The consent page asked the PDP about this person on this connector.
    asked = [r for r in pdp.requests if r["action"]["name"] == "connect"]
    assert asked and asked[0]["resource"]["id"] == str(endpoint.connector.pk)
    identity = employee.identities.get()
    assert asked[0]["subject"] == {
        "type": "identity",
        "id": identity.email,
        "properties": {"lanyard_identity": str(identity.pk)},
    }


def test_refresh_rotates_and_the_old_refresh_token_is_refused(client, employee, endpoint, pdp):
    client_id, answer = full_flow(client, employee)
    refreshed = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": answer["refresh_token"], "client_id": client_id},
    )
    assert refreshed.status_code == 200, refreshed.content
    assert refreshed.json()["refresh_token"] != answer["refresh_token"]
    again = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": answer["refresh_token"], "client_id": client_id},
    )
    assert again.status_code == 400
    assert Grant.objects.filter(connector=endpoint.connector).count() == 1


def test_consent_page_shows_connector_owner_scopes_and_risk(client, employee, endpoint, pdp, owner):
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    page = client.get("/oauth/authorize/", authorize_params(client_id, pkce()[1])).content.decode()
    assert "Team Wiki MCP" in page
    assert owner.get_full_name() in page
    assert "High" in page
    assert "through the Lanyard gateway" in page


def test_consent_refused_with_the_pdp_reason(client, employee, endpoint, pdp):
    pdp.deny[(employee.identities.get().email, "connect")] = "No approved grant: request it in Lanyard."
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    params = authorize_params(client_id, pkce()[1])
    page = client.get("/oauth/authorize/", params)
    assert page.status_code == 403
    assert "No approved grant: request it in Lanyard." in page.content.decode()
    posted = client.post("/oauth/authorize/", params | {"allow": "Authorize"})
    assert posted.status_code == 403
    assert not Grant.objects.exists()


def test_consent_refused_when_the_pdp_is_down(client, employee, endpoint, settings):
    settings.LANYARD_PDP_URL = "http://127.0.0.1:9"
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    page = client.get("/oauth/authorize/", authorize_params(client_id, pkce()[1]))
    assert page.status_code == 403
    assert "could not be reached" in page.content.decode()


@pytest.mark.parametrize(
    "resource",
    [
        "http://127.0.0.1:8901/mcp/unknown",
        "http://127.0.0.1:8901/mcp/team-wiki/x",
        "https://evil.example/mcp/team-wiki",
    ],
)
def test_resource_must_name_one_registered_endpoint(client, employee, endpoint, pdp, resource):
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    page = client.get("/oauth/authorize/", authorize_params(client_id, pkce()[1], resource))
    assert page.status_code == 400
    assert "not a connector endpoint" in page.content.decode()


def test_missing_resource_is_refused(client, employee, endpoint, pdp):
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    params = authorize_params(client_id, pkce()[1])
    del params["resource"]
    assert client.get("/oauth/authorize/", params).status_code == 400


def test_tampered_resource_on_post_is_decided_again(client, employee, endpoint, pdp):
    other = ConnectorFactory(name="Payroll MCP", kind="mcp_server", status=Connector.Status.SUSPENDED)
    Endpoint.objects.create(connector=other, slug="payroll", upstream_url="http://127.0.0.1:9/mcp")
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    params = authorize_params(client_id, pkce()[1])
    assert client.get("/oauth/authorize/", params).status_code == 200
    posted = client.post(
        "/oauth/authorize/", params | {"allow": "Authorize", "resource": "http://127.0.0.1:8901/mcp/payroll"}
    )
    assert posted.status_code == 403
    assert "Suspended" in posted.content.decode()


def test_suspended_connector_refused_at_consent(client, employee, endpoint, pdp):
    Connector.objects.filter(pk=endpoint.connector_id).update(status=Connector.Status.SUSPENDED)
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    assert client.get("/oauth/authorize/", authorize_params(client_id, pkce()[1])).status_code == 403


def test_plain_pkce_and_no_pkce_are_refused(client, employee, endpoint, pdp):
    client_id = register_client(client).json()["client_id"]
    client.force_login(employee)
    params = authorize_params(client_id, "x" * 43) | {"code_challenge_method": "plain"}
    answer = client.post("/oauth/authorize/", params | {"allow": "Authorize"})
    assert answer.status_code in (302, 400)
    if answer.status_code == 302:
        assert "error=" in answer["Location"]
    params = authorize_params(client_id, "")
    del params["code_challenge"], params["code_challenge_method"]
    answer = client.get("/oauth/authorize/", params)
    assert answer.status_code in (302, 400)
    if answer.status_code == 302:
        assert "error=" in answer["Location"]


def test_revoking_the_grant_revokes_its_oauth_tokens(client, employee, endpoint, pdp, iam):
    client_id, answer = full_flow(client, employee)
    grant = Grant.objects.get(connector=endpoint.connector)
    register.grant_revoke(grant=grant, actor=iam, reason="Left the wiki project")
    assert not AccessToken.objects.filter(application__client_id=client_id, user=employee).exists()
    assert not RefreshToken.objects.filter(application__client_id=client_id, revoked__isnull=True).exists()
    refused = client.post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": answer["refresh_token"], "client_id": client_id},
    )
    assert refused.status_code == 400


def test_revoke_many_and_expiry_revoke_tokens_too(client, employee, endpoint, pdp, iam):
    client_id, _ = full_flow(client, employee)
    register.grant_revoke_many(grants_qs=Grant.objects.all(), actor=iam, reason="Campaign")
    assert not AccessToken.objects.filter(application__client_id=client_id, user=employee).exists()


def test_registration_redirects_restricted_by_iam_settings(client, settings):
    assert register_client(client).status_code == 201
    assert register_client(client, "https://claude.ai/api/mcp/auth_callback").status_code == 201
    assert register_client(client, "https://evil.example/cb").status_code in (401, 403)
    settings.LANYARD_GATEWAY_DCR = "off"
    assert register_client(client).status_code in (401, 403)


def test_registration_authenticated_mode(client, settings, employee):
    settings.LANYARD_GATEWAY_DCR = "authenticated"
    assert register_client(client).status_code in (401, 403)
    client.force_login(employee)
    # Session-authenticated registration must pass CSRF; the test client does not enforce it.
    assert register_client(client).status_code == 201


def test_registration_bad_json_is_a_clear_400(client):
    answer = client.post("/oauth/register/", data="{not json", content_type="application/json")
    assert answer.status_code == 400


def test_incomplete_consent_post_is_a_clear_400(client, employee):
    client.force_login(employee)
    answer = client.post("/oauth/authorize/", {})
    assert answer.status_code == 400
    assert "incomplete" in answer.content.decode()
