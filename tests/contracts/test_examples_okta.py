"""Okta's own examples, fed to the Okta adapter's parsers: the records they give, and only documented reads.

Source: tests/contracts/okta.json (okta/okta-management-openapi-spec, see SOURCES.md).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import httpx

from connectors.idp import okta
from connectors.idp.base import IdpConfig
from tests.contracts import contract
from tests.contracts.reads import tracked, undocumented_reads


def example(operation_id: str, name: str | None = None):
    op = contract.find("okta", operation_id)
    ex = next(e for e in op.examples if name is None or e["name"] == name)
    return copy.deepcopy(ex["value"])


def test_users_come_from_the_official_listing():
    users, reads = tracked(example("listUsers", "ListUsers") + example("listUsers", "UsersSearch"))
    parsed = [okta.parse_user(u) for u in users]
    assert [(u.external_id, u.email, u.name, u.status) for u in parsed] == [
        ("00u118oQYT4TBTemp0g4", "alice.smith@example.com", "Alice Smith", "active"),
        ("00u1xke1apZnmHgpB1d7", "ben.richler@example.com", "Ben Richler", "active"),
        ("00u269cmneNMFHCH51d7", "janice.benson@gmail.com", "Janice Benson", "active"),
    ]
    assert parsed[1].department == "Engineering"
    assert undocumented_reads("okta", "listUsers", reads) == []


def test_consent_scopes_are_the_embedded_scope_names():
    # listUserGrants has no example; ListAppGrantsEx is an array of the same OAuth2ScopeConsentGrant
    grants, reads = tracked(example("listUserGrants"))
    (consent,) = okta.parse_consent_grants("00u6eltha0nrSc47i0h7", grants)
    assert consent.client_id == "{clientId}"
    assert consent.scopes == ["okta.users.read", "okta.apps.manage"]
    assert consent.app_name == "Application name"
    assert consent.external_id == "00u6eltha0nrSc47i0h7:{clientId}"
    assert consent.extra["grant_ids"] == ["oag91n9ruw3dsaXzP0h6", "oaghm3sh9ukdkvDmO0h6"]
    assert consent.created_at == datetime(2023, 2, 3, 21, 57, 49, tzinfo=UTC)
    # the scope name is _embedded.scope.id: OAuth2ScopeConsentGrant has no _embedded.scope.name
    assert undocumented_reads("okta", "listUserGrants", reads) == []


def test_the_scope_name_does_not_depend_on_scopeId():
    # Orgs have answered opaque scp… ids in scopeId (and so did older Okta docs); the embedded scope
    # carries the name whatever scopeId holds.
    (grant,) = example("listUserGrants")[:1]
    grant["scopeId"] = "scpCmCCV1DTxlVzJE0g3"
    (consent,) = okta.parse_consent_grants("00u1", [grant])
    assert consent.scopes == ["okta.users.read"]


def test_refresh_tokens_come_from_the_official_token_listing():
    # listRefreshTokensForUserAndClient has no example; ListRefreshTokensClientsResponse is an array
    # of the same OAuth2RefreshToken
    tokens, reads = tracked(example("listRefreshTokensForUserAndClient"))
    (token,) = [okta.parse_refresh_token("00u1", "0oa1", "My Web App", t) for t in tokens]
    assert token.kind == "refresh_token" and token.external_id == "{refreshTokenId}"
    assert token.scopes == ["offline_access", "openid"]
    assert token.created_at == datetime(2023, 9, 21, 19, 59, 56, tzinfo=UTC)
    assert token.expires_at == datetime(2023, 9, 28, 20, 0, 38, tzinfo=UTC)
    assert token.last_used_at == datetime(2023, 9, 21, 20, 0, 38, tzinfo=UTC)
    assert undocumented_reads("okta", "listRefreshTokensForUserAndClient", reads) == []


def test_an_offline_access_consent_lists_its_refresh_tokens():
    """The adapter end to end on official shapes: an offline_access consent leads to its tokens."""
    grant = example("listUserGrants")[0]
    grant["_embedded"]["scope"]["id"] = "offline_access"
    grant["scopeId"] = "scpCmCCV1DTxlVzJE0g3"  # opaque, as orgs have answered
    tokens = example("listRefreshTokensForUserAndClient")
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/api/v1/users/00u1/grants":
            return httpx.Response(200, json=[grant])
        if request.url.path == "/api/v1/users/00u1/clients/{clientId}/tokens":
            return httpx.Response(200, json=tokens)
        return httpx.Response(404, json={"errorCode": "E0000007"})

    config = IdpConfig(
        kind="okta", name="okta", base_url="https://acme.okta.com", credentials={"api_token": "t"}
    )
    adapter = okta.OktaAdapter(config, transport=httpx.MockTransport(answer))
    try:
        consent, token = adapter._user_grants("00u1")
    finally:
        adapter.close()
    assert consent.kind == "oauth_consent" and consent.scopes == ["offline_access"]
    assert token.kind == "refresh_token" and token.client_id == "{clientId}"
    assert token.app_name == "Application name" and token.extra["token_id"] == "{refreshTokenId}"
    assert len(seen) == 2


def test_apps_come_from_the_official_listing():
    for name in ("ResponseExample1", "ResponseExample2"):
        apps, reads = tracked(example("listApplications", name))
        parsed = [okta.parse_app(a) for a in apps]
        assert all(a.client_id == a.external_id and a.name for a in parsed)  # SAML apps: no OAuth client
        assert undocumented_reads("okta", "listApplications", reads) == []
    assert [a.name for a in map(okta.parse_app, example("listApplications", "ResponseExample2"))][
        0
    ] == "hrportal2"


def test_an_oidc_apps_client_id_is_its_oauth_client():
    app = example("listApplications", "ResponseExample1")[0]
    app["credentials"]["oauthClient"] = {"client_id": "0oa1oidc"}  # OAuthApplicationCredentials
    app["signOnMode"] = "OPENID_CONNECT"
    assert okta.parse_app(app).client_id == "0oa1oidc"


def test_devices_come_from_the_official_listing():
    devices, reads = tracked(example("listDevices", "APIDevicesResponseExample"))
    first, second = (okta.parse_device(d) for d in devices)
    assert (first.external_id, first.name, first.platform, first.owner_external_id) == (
        "guo4a5u7YAHhjXrMK0g4",
        "Example device name 1",
        "Windows",
        None,
    )
    assert (second.platform, second.managed, second.compliant, second.owner_external_id) == (
        "Android",
        True,
        True,
        "00u17vh0q8ov8IU881d7",
    )
    assert second.last_seen == datetime(2023, 6, 21, 23, 24, 2, tzinfo=UTC)
    assert undocumented_reads("okta", "listDevices", reads) == []


def test_log_events_come_from_the_official_system_log():
    events, reads = tracked(example("listLogEvents", "ListLogs"))
    parsed = [okta.parse_log_event(e) for e in events]
    first = parsed[0]
    assert first.external_id == "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a"
    assert first.occurred_at == datetime(2024, 8, 13, 15, 58, 20, 353000, tzinfo=UTC)
    assert (first.user_external_id, first.user_email, first.ip) == (
        "00uttidj01jqL21aM1d6",
        "john.doe@example.com",
        "10.0.0.1",
    )
    assert first.client_id == "0oatxlef9sQvvqInq5d6"  # no client.id: the AppInstance target
    assert first.user_agent.startswith("Mozilla/5.0 (Macintosh")
    assert first.device is not None and first.device.platform == "macOS"  # os_platform "OSX"
    assert first.device.external_id == "guofdhyjex1feOgbN1d9" and not first.device.managed
    assert undocumented_reads("okta", "listLogEvents", reads) == []


def test_the_examples_are_what_the_contract_file_says():
    """Guard against a regenerated contract silently dropping the examples these tests rely on."""
    names = {o.operation_id: [e["name"] for e in o.examples] for o in contract.operations("okta")}
    assert "ListAppGrantsEx" in names["listUserGrants"]
    assert "ListRefreshTokensClientsResponse" in names["listRefreshTokensForUserAndClient"]
    assert json.dumps(example("listLogEvents", "ListLogs")).count('"device"') >= 1
