"""Every listing pages to the end over real HTTP and maps the provider's shapes to the dataclasses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.idp.base import IdpActivity, IdpApp, IdpDevice, IdpGrant, IdpUser

from .conftest import PROVIDERS, flatten


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_lists_every_user_across_pages(fresh_sim, make_adapter, provider):
    users = flatten(make_adapter(provider).iter_users())
    expected = fresh_sim.state()["providers"][provider]["users"]
    assert len(users) == expected
    assert len({u.external_id for u in users}) == expected
    assert all(isinstance(u, IdpUser) and "@" in u.email for u in users)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_lists_every_grant_across_pages(fresh_sim, make_adapter, provider):
    pages = list(make_adapter(provider).iter_grants())
    grants = flatten(pages)
    expected = fresh_sim.state()["providers"][provider]["grants"]
    assert len(pages) > 1
    assert len(grants) == expected
    assert len({g.external_id for g in grants}) == expected, "external ids must be unique per source"
    assert all(isinstance(g, IdpGrant) and g.client_id and g.scopes for g in grants)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_grant_ids_are_stable_between_runs(fresh_sim, make_adapter, provider):
    first = sorted(g.external_id for g in flatten(make_adapter(provider).iter_grants()))
    second = sorted(g.external_id for g in flatten(make_adapter(provider).iter_grants()))
    assert first == second


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_people_appear_in_every_provider(fresh_sim, make_adapter, provider):
    google = {u.email for u in flatten(make_adapter("google").iter_users())}
    emails = {u.email for u in flatten(make_adapter(provider).iter_users())}
    assert emails <= google
    assert len(emails) >= len(google) * 0.9


@pytest.mark.parametrize("provider", ["google", "entra", "okta"])
def test_managers_and_statuses_are_mapped(fresh_sim, make_adapter, provider):
    users = flatten(make_adapter(provider).iter_users())
    ids = {u.external_id for u in users}
    with_manager = [u for u in users if u.manager_external_id]
    assert len(with_manager) == len(users) - 1, "everyone but the CEO has a manager"
    assert all(u.manager_external_id in ids for u in with_manager)
    assert {u.status for u in users} >= {"active"}
    assert all(u.department for u in users)
    statuses = fresh_sim.state()["statuses"]
    for status in ("suspended", "deprovisioned"):
        if statuses[status] and provider != "entra":
            assert sum(u.status == status for u in users) == statuses[status]


def test_user_statuses_follow_the_tenant(fresh_sim, make_adapter):
    victim = flatten(make_adapter("google").iter_users())[5]
    fresh_sim.mutate("set_status", email=victim.email, status="deprovisioned")
    for provider in ("google", "entra", "okta"):
        users = {u.email: u for u in flatten(make_adapter(provider).iter_users())}
        assert users[victim.email].status == "deprovisioned", provider
    github = {u.email for u in flatten(make_adapter("github").iter_users())}
    assert victim.email not in github, "GitHub removes deprovisioned people from the org"


def test_entra_maps_grants_to_app_ids_and_tenant_wide_consents(fresh_sim, make_adapter):
    adapter = make_adapter("entra")
    apps = {a.client_id: a for a in flatten(adapter.iter_apps())}
    grants = flatten(adapter.iter_grants())
    assert all(g.client_id in apps for g in grants), "clientId (SP object id) is mapped to the appId"
    tenant_wide = [g for g in grants if g.consent_type == "all_principals"]
    state = fresh_sim.state()["providers"]["entra"]
    assert len(tenant_wide) == state["all_principals_grants"] + state["app_role_assignments"]
    assert all(g.user_external_id is None for g in tenant_wide)
    roles = [g for g in grants if g.extra["type"] == "appRoleAssignment"]
    assert roles and all(g.scopes[0] in {"Files.Read.All", "Sites.Read.All", "User.Read.All"} for g in roles)
    assert "Microsoft Graph" not in {a.name for a in apps.values()}


def test_okta_lists_consents_and_refresh_tokens(fresh_sim, make_adapter):
    grants = flatten(make_adapter("okta").iter_grants())
    consents = [g for g in grants if g.kind == "oauth_consent"]
    tokens = [g for g in grants if g.kind == "refresh_token"]
    assert consents and tokens
    assert all(
        "offline_access" in c.scopes
        for c in consents
        if any(t.client_id == c.client_id and t.user_external_id == c.user_external_id for t in tokens)
    )
    assert all(t.expires_at and t.extra["token_id"] == t.external_id for t in tokens)


def test_github_lists_fine_grained_and_classic_pats(fresh_sim, make_adapter):
    grants = flatten(make_adapter("github").iter_grants())
    members = {u.external_id for u in flatten(make_adapter("github").iter_users())}
    fine = [g for g in grants if g.extra["type"] == "fine_grained"]
    classic = [g for g in grants if g.extra["type"] == "classic"]
    assert fine and classic
    assert all(g.kind == "personal_access_token" and g.client_id.startswith("github-pat:") for g in grants)
    assert all(g.user_external_id in members for g in grants)
    assert all(len(g.token_hint) == 8 for g in classic)
    assert any("contents:write" in g.scopes for g in fine)


def test_github_exposes_pending_pat_requests(fresh_sim, make_adapter):
    requests = flatten(make_adapter("github").iter_pat_requests())
    assert len(requests) == fresh_sim.state()["providers"]["github"]["pending_pat_requests"]
    assert all(r.user_external_id and r.extra["request_id"] for r in requests)


@pytest.mark.parametrize("provider", ["entra", "okta", "github"])
def test_it_lists_apps(make_adapter, provider):
    apps = flatten(make_adapter(provider).iter_apps())
    assert apps and all(isinstance(a, IdpApp) and a.client_id and a.name for a in apps)


def test_google_has_no_app_listing(make_adapter):
    assert flatten(make_adapter("google").iter_apps()) == []


@pytest.mark.parametrize("provider", ["google", "entra", "okta"])
def test_it_lists_devices_with_owners(fresh_sim, make_adapter, provider):
    devices = flatten(make_adapter(provider).iter_devices())
    users = {u.external_id for u in flatten(make_adapter(provider).iter_users())}
    assert len(devices) == fresh_sim.state()["providers"][provider]["devices"]
    assert all(isinstance(d, IdpDevice) and d.owner_external_id in users for d in devices)
    assert {d.platform for d in devices} <= {"macOS", "Windows", "iOS", "Linux", "Android"}
    if provider != "google":
        assert any(d.managed for d in devices) and any(not d.managed for d in devices)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_it_reads_activity_and_honours_since(fresh_sim, make_adapter, provider):
    adapter = make_adapter(provider)
    events = flatten(adapter.iter_activity())
    assert events and all(isinstance(e, IdpActivity) and e.occurred_at.tzinfo for e in events)
    assert len({e.external_id for e in events}) == len(events)
    since = datetime.now(UTC) + timedelta(days=1)
    assert flatten(adapter.iter_activity(since)) == []


@pytest.mark.parametrize("provider", ["entra", "okta"])
def test_activity_carries_devices_where_the_provider_has_them(make_adapter, provider):
    events = flatten(make_adapter(provider).iter_activity())
    with_device = [e for e in events if e.device is not None]
    assert with_device
    assert all(e.device.platform for e in with_device)
    assert all(e.client_id and e.user_external_id for e in events)


def test_a_grant_removed_at_the_provider_disappears_from_the_listing(fresh_sim, make_adapter):
    adapter = make_adapter("google")
    grants = flatten(adapter.iter_grants())
    assert fresh_sim.mutate("remove_grant", provider="google", id=grants[0].external_id)["removed"]
    again = {g.external_id for g in flatten(adapter.iter_grants())}
    assert grants[0].external_id not in again
    assert len(again) == len(grants) - 1


@pytest.mark.parametrize("provider", ["google", "okta", "github"])
def test_activity_names_the_grant_it_belongs_to(fresh_sim, make_adapter, provider):
    adapter = make_adapter(provider)
    grants = {g.external_id for g in flatten(adapter.iter_grants())}
    named = [
        e.data["grant_external_id"] for e in flatten(adapter.iter_activity()) if "grant_external_id" in e.data
    ]
    assert named
    assert sum(n in grants for n in named) >= len(named) * 0.5
