"""The simulated tenant itself: deterministic seeding, size, control API and credentials."""

from __future__ import annotations

import time

import httpx
import pytest

import simulator
from simulator import creds
from simulator.keys import private_key_pem
from simulator.tenant import PROVIDERS, Tenant

from .conftest import SIZE


def test_the_same_seed_builds_the_same_tenant():
    a, b = Tenant(seed=5, identities=200, grants=1500), Tenant(seed=5, identities=200, grants=1500)
    assert a.email == b.email and list(a.manager) == list(b.manager)
    for p in PROVIDERS:
        assert sorted(a.external_id(p, i) for i in range(len(a.store(p)))) == sorted(
            b.external_id(p, i) for i in range(len(b.store(p)))
        )
    assert Tenant(seed=6, identities=200, grants=0).email != a.email


def test_a_large_tenant_is_generated_quickly_and_exactly():
    started = time.perf_counter()
    t = Tenant(seed=2, identities=3000, grants=30000)
    for p in PROVIDERS:
        assert t.adapter_grant_count(p) == 30000
    assert time.perf_counter() - started < 10


def test_the_org_chart_is_a_tree_with_people_in_every_state():
    t = Tenant(seed=1, identities=500, grants=0)
    assert t.manager[0] == -1
    for i in range(1, t.n):  # every chain reaches the CEO
        seen, m = set(), i
        while m != 0:
            assert m not in seen
            seen.add(m)
            m = t.manager[m]
    assert {0, 1, 2} <= set(t.status)
    assert len(set(t.dept)) > 8


def test_credentials_are_deterministic_per_seed():
    seed = SIZE["seed"]
    a, b = simulator.credentials("http://x", seed=seed), simulator.credentials("http://x", seed=seed)
    assert a == b
    assert set(a) == {"google_workspace", "microsoft_entra", "okta", "github"}
    assert a["google_workspace"]["credentials"]["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert private_key_pem.__wrapped__("google", seed) == a["google_workspace"]["credentials"]["private_key"]
    assert creds.okta_token(seed + 1) != a["okta"]["credentials"]["api_token"]
    assert creds.entra_client(seed + 1) != creds.entra_client(seed)


def test_the_control_api_reports_state_and_serves_credentials(sim):
    state = sim.state()
    assert state["identities"] == SIZE["identities"]
    assert all(
        state["providers"][p]["grants"] == SIZE["grants"] for p in ("google", "okta", "github", "entra")
    )
    assert sim.credentials() == simulator.credentials(sim.url, seed=SIZE["seed"])


def test_faults_are_listed_used_up_and_cleared(sim):
    sim.faults(provider="okta", kind="server_error", count=2)
    sim.faults({"provider": "github", "kind": "slow", "delay": 0.01, "count": None})
    assert [f["kind"] for f in sim.state()["faults"]] == ["server_error", "slow"]
    headers = {"Authorization": "SSWS " + sim.credentials()["okta"]["credentials"]["api_token"]}
    codes = [httpx.get(f"{sim.url}/okta/api/v1/apps", headers=headers).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    sim.clear_faults()
    assert sim.state()["faults"] == []


def test_bad_control_requests_are_refused(sim):
    with pytest.raises(httpx.HTTPStatusError):
        sim.faults(kind="earthquake")
    with pytest.raises(httpx.HTTPStatusError):
        sim.mutate("teleport")
    r = httpx.get(f"{sim.url}/nowhere/x")
    assert r.status_code == 404


def test_provider_errors_use_each_providers_shape(sim):
    assert httpx.get(f"{sim.url}/google/admin/directory/v1/users").json()["error"]["code"] == 401
    assert httpx.get(f"{sim.url}/entra/v1.0/users").json()["error"]["code"] == "InvalidAuthenticationToken"
    assert httpx.get(f"{sim.url}/okta/api/v1/users").json()["errorCode"] == "E0000011"
    assert httpx.get(f"{sim.url}/github/orgs/acmecorp/members").json()["message"] == "Bad credentials"


def test_rate_limits_use_each_providers_signals(sim):
    for provider in ("google", "entra", "okta", "github"):
        sim.faults(provider=provider, kind="rate_limit", count=1, retry_after=3)
    g = httpx.get(f"{sim.url}/google/x")
    assert g.status_code == 403 and g.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    e = httpx.get(f"{sim.url}/entra/x")
    assert e.status_code == 429 and e.headers["Retry-After"] == "3"
    o = httpx.get(f"{sim.url}/okta/x")
    assert o.status_code == 429 and int(o.headers["X-Rate-Limit-Reset"]) >= time.time() + 1
    assert o.headers["X-Rate-Limit-Remaining"] == "0"
    gh = httpx.get(f"{sim.url}/github/x")
    assert gh.status_code == 403 and gh.headers["x-ratelimit-remaining"] == "0"


def test_a_mutation_is_visible_through_the_grant_probe(fresh_sim):
    email = fresh_sim.state()["delegated_admin"]
    added = fresh_sim.mutate("add_grant", provider="okta", email=email, app="Okta MCP Server", token=True)
    assert fresh_sim.grant_exists("okta", added["id"]) and fresh_sim.grant_exists("okta", added["token_id"])
    assert fresh_sim.mutate("remove_grant", provider="okta", id=added["token_id"])["removed"]
    assert not fresh_sim.grant_exists("okta", added["token_id"])
    assert fresh_sim.grant_exists("okta", added["id"])
    assert fresh_sim.state()["providers"]["okta"]["grants"] == SIZE["grants"] + 1


def test_spawn_runs_the_simulator_in_a_child_process():
    handle = simulator.spawn(identities=20, grants=50, seed=3)
    try:
        assert handle.state()["identities"] == 20
    finally:
        handle.stop()
