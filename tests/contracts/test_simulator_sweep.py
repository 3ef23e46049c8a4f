"""Every read endpoint the simulator offers, called once, so that each served shape meets the contract.

The rest of the suite only reaches what the adapters happen to call; this walks the simulator's whole
read surface (see simulator/README.md). The check itself is the contract plugin: a non-conforming
answer fails the test that asked for it.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

import simulator
from connectors.idp import get_adapter
from tests.contracts import plugin

SEED = 4


@pytest.fixture(scope="module")
def sweep_sim():
    handle = simulator.start(identities=12, grants=40, seed=SEED)
    yield handle
    handle.stop()


@pytest.fixture
def http(sweep_sim):
    opened = []

    def make(kind: str):
        adapter = get_adapter(simulator.idp_config(sweep_sim.url, kind, seed=SEED, page_size=5))
        opened.append(adapter)
        return adapter.http

    yield make
    for adapter_http in opened:
        adapter_http.close()


def first(body, key: str | None = None):
    items = body[key] if key else body
    assert items, f"the seeded tenant should have at least one {key or 'item'}"
    return items[0]


def test_google_read_endpoints(http):
    h = http("google_workspace")
    d = "/admin/directory/v1"
    users = h.get_json(f"{d}/users", {"customer": "my_customer", "maxResults": 5, "projection": "full"})
    key = first(users, "users")["id"]
    h.get_json(f"{d}/users/{key}")
    tokens = None
    for u in users["users"]:
        tokens = h.get_json(f"{d}/users/{u['id']}/tokens")
        if tokens.get("items"):
            h.get_json(f"{d}/users/{u['id']}/tokens/{quote(tokens['items'][0]['clientId'], safe='')}")
            break
    assert tokens is not None
    h.get_json(f"{d}/customer/my_customer/devices/mobile", {"maxResults": 5, "projection": "FULL"})
    h.get_json("/admin/reports/v1/activity/users/all/applications/token", {"maxResults": 5})
    h.get_json(f"/admin/reports/v1/activity/users/{key}/applications/token")


def test_entra_read_endpoints(http):
    h = http("microsoft_entra")
    h.get_json("/v1.0/users", {"$top": 5, "$expand": "manager($select=id)"})
    sps = h.get_json("/v1.0/servicePrincipals", {"$top": 999})["value"]
    grant = first(h.get_json("/v1.0/oauth2PermissionGrants", {"$top": 5}), "value")
    h.get_json(f"/v1.0/oauth2PermissionGrants/{grant['id']}")
    for sp in sps:
        h.get_json(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignedTo")
        h.get_json(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments")
    h.get_json("/v1.0/devices", {"$top": 5, "$expand": "registeredOwners($select=id)"})
    h.get_json("/v1.0/auditLogs/signIns", {"$top": 5})


def test_okta_read_endpoints(http):
    h = http("okta")
    users = h.get_json("/api/v1/users", {"limit": 5})
    h.get_json("/api/v1/users", {"filter": 'status eq "DEPROVISIONED"'})
    h.get_json(f"/api/v1/users/{users[0]['id']}")
    listed_token = False
    for u in h.get_json("/api/v1/users", {"limit": 200}):
        uid = u["id"]
        h.get_json(f"/api/v1/users/{uid}/grants", {"expand": "scope"})
        for client in h.get_json(f"/api/v1/users/{uid}/clients"):
            cid = client["client_id"]
            h.get_json(f"/api/v1/users/{uid}/clients/{cid}/grants")
            for token in h.get_json(f"/api/v1/users/{uid}/clients/{cid}/tokens"):
                h.get_json(f"/api/v1/users/{uid}/clients/{cid}/tokens/{token['id']}")
                listed_token = True
        if listed_token:
            break
    assert listed_token
    h.get_json("/api/v1/apps", {"limit": 5})
    h.get_json("/api/v1/devices", {"limit": 5, "expand": "user"})
    h.get_json("/api/v1/devices", {"limit": 5})
    h.get_json("/api/v1/logs", {"limit": 5})


def test_github_read_endpoints(http, sweep_sim):
    h = http("github")
    org = simulator.credentials(sweep_sim.url, seed=SEED)["github"]["credentials"]["org"]
    member = first(h.get_json(f"/orgs/{org}/members", {"per_page": 5}))
    h.get_json(f"/users/{member['login']}")
    h.get_json(f"/orgs/{org}/installations")
    h.get_json(f"/orgs/{org}/personal-access-tokens", {"per_page": 5})
    h.get_json(f"/orgs/{org}/personal-access-token-requests")
    h.get_json(f"/orgs/{org}/credential-authorizations")
    h.get_json(f"/orgs/{org}/audit-log", {"per_page": 5, "include": "all"})


def test_the_sweep_reached_every_provider(http):
    # whatever earlier tests recorded has been checked and cleared by the plugin; take a fresh sample
    http("okta").get_json("/api/v1/apps")
    assert [(p, m, path) for p, m, path, _, _ in plugin.served()] == [("okta", "GET", "/api/v1/apps")]
