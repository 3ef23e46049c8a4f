"""The contract check refuses what the descriptions do not allow, and fails the test that served it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import simulator
from simulator import api_okta
from tests.contracts import contract, plugin

ROOT = Path(__file__).resolve().parents[2]


def official_grants() -> list[dict]:
    op = contract.find("okta", "listUserGrants")
    return copy.deepcopy(op.examples[0]["value"])


def test_the_official_example_conforms():
    assert contract.check("okta", "GET", "/api/v1/users/00u1/grants", 200, official_grants()) == []


def test_an_invented_field_is_refused():
    grants = official_grants()
    grants[0]["_embedded"]["scope"]["name"] = "okta.users.read"
    problems = contract.check("okta", "GET", "/api/v1/users/00u1/grants", 200, grants)
    assert problems and "'name' was unexpected" in problems[0]
    assert "listUserGrants" in problems[0] and "0/_embedded/scope" in problems[0]


def test_a_wrong_type_is_refused():
    grants = official_grants()
    grants[1]["created"] = 1700000000
    problems = contract.check("okta", "GET", "/api/v1/users/00u1/grants", 200, grants)
    assert problems and "1/created" in problems[0] and "not of type" in problems[0]


def test_a_paging_link_graph_does_not_have_is_refused():
    page = {"value": [], "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$skiptoken=x"}
    assert contract.check("entra", "GET", "/v1.0/users", 200, page) == []
    page["nextLink"] = page.pop("@odata.nextLink")
    problems = contract.check("entra", "GET", "/v1.0/users", 200, page)
    assert problems and "'nextLink' was unexpected" in problems[0]


def test_a_field_only_graph_beta_has_is_refused():
    sp = {"id": "1", "appId": "2", "displayName": "Otter.ai", "publisherName": "Otter.ai"}
    problems = contract.check("entra", "GET", "/v1.0/servicePrincipals", 200, {"value": [sp]})
    assert problems and "publisherName" in problems[0]


def test_an_operation_outside_the_contract_is_refused():
    problems = contract.check("github", "GET", "/orgs/acme/teams", 200, [])
    assert problems == ["github GET /orgs/acme/teams: no operation in tests/contracts/github.json"]


def test_a_status_other_than_the_documented_success_is_refused():
    problems = contract.check("okta", "DELETE", "/api/v1/users/00u1/clients/0oa1/grants", 200, None)
    assert problems and "answers success with 204" in problems[0]


def test_templates_prefer_the_longest_path():
    assert contract.operation("okta", "GET", "/api/v1/users/00u1").operation_id == "getUser"
    assert contract.operation("okta", "GET", "/api/v1/users/00u1/grants").operation_id == "listUserGrants"
    assert contract.operation("entra", "POST", "/tenant-id/oauth2/v2.0/token") is None
    assert contract.check("entra", "POST", "/tenant-id/oauth2/v2.0/token", 200, {"access_token": "x"}) == []


@pytest.fixture
def own_sim():
    handle = simulator.start(identities=5, grants=10, seed=2)
    yield handle
    handle.stop()


def test_an_invented_field_served_by_the_simulator_is_recorded(own_sim, monkeypatch):
    real = api_okta._user
    monkeypatch.setattr(api_okta, "_user", lambda sim, i: {**real(sim, i), "invented": True})
    token = simulator.credentials(own_sim.url, seed=2)["okta"]["credentials"]["api_token"]
    r = httpx.get(f"{own_sim.url}/okta/api/v1/users?limit=2", headers={"Authorization": f"SSWS {token}"})
    assert r.status_code == 200
    problems = plugin.contract_problems()  # taken here, so they do not fail this test
    assert problems and all("'invented' was unexpected" in p for p in problems)
    assert "listUsers" in problems[0]


def test_a_test_whose_simulator_serves_an_invented_field_fails(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import httpx
            import simulator
            from simulator import api_okta

            def test_it_lists_users(monkeypatch):
                real = api_okta._user
                monkeypatch.setattr(api_okta, "_user", lambda sim, i: {**real(sim, i), "invented": 1})
                handle = simulator.start(identities=3, grants=5, seed=2)
                try:
                    token = simulator.credentials(handle.url, seed=2)["okta"]["credentials"]["api_token"]
                    auth = {"Authorization": "SSWS " + token}
                    r = httpx.get(handle.url + "/okta/api/v1/users", headers=auth)
                    assert r.status_code == 200  # the answer itself is fine for this test...
                finally:
                    handle.stop()

            def test_it_serves_nothing():
                pass
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.contracts.plugin",
            "-p",
            "no:django",
            "-p",
            "no:cacheprovider",
        ]
        + ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # ...but the contract check fails it, and only it
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "ContractViolation" in run.stdout and "'invented' was unexpected" in run.stdout


def test_a_spawned_simulator_records_what_it_serves():
    handle = simulator.spawn(identities=3, grants=5, seed=2)
    try:
        token = simulator.credentials(handle.url, seed=2)["okta"]["credentials"]["api_token"]
        r = httpx.get(f"{handle.url}/okta/api/v1/users", headers={"Authorization": f"SSWS {token}"})
        assert r.status_code == 200
    finally:
        handle.stop()
    served = plugin.served()
    assert [(p, m, path, status) for p, m, path, status, _ in served] == [
        ("okta", "GET", "/api/v1/users", 200)
    ]
    assert served[0][4] == r.json()
