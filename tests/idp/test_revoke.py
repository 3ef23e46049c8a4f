"""Revocation and provisioning against the simulated tenant: outcomes land at the provider."""

from __future__ import annotations

import pytest

from connectors.idp.base import (
    ConfirmationRequired,
    GrantRef,
    NotFound,
    PermanentIdpError,
    ProvisionRequest,
    RevokeOutcome,
    TransientIdpError,
)

from .conftest import PROVIDERS, flatten


def ref_of(grant) -> GrantRef:
    return GrantRef(
        external_id=grant.external_id,
        client_id=grant.client_id,
        kind=grant.kind,
        user_external_id=grant.user_external_id,
        consent_type=grant.consent_type,
        extra=grant.extra,
    )


def a_grant(adapter, **match):
    match.setdefault("consent_type", "principal")
    for grant in flatten(adapter.iter_grants()):
        if all(
            getattr(grant, k) == v if k != "type" else grant.extra.get("type") == v for k, v in match.items()
        ):
            return grant
    raise AssertionError(f"no grant matching {match}")


KINDS = [
    ("google", {}),
    ("entra", {"consent_type": "principal"}),
    ("okta", {"kind": "oauth_consent"}),
    ("okta", {"kind": "refresh_token"}),
    ("github", {"type": "fine_grained"}),
    ("github", {"type": "classic"}),
]


@pytest.mark.parametrize(("provider", "match"), KINDS)
def test_revoke_lands_then_a_second_revoke_finds_it_gone(fresh_sim, make_adapter, provider, match):
    adapter = make_adapter(provider)
    grant = a_grant(adapter, **match)
    assert fresh_sim.grant_exists(provider, grant.external_id)
    assert adapter.revoke_grant(ref_of(grant)) == RevokeOutcome.REVOKED
    assert fresh_sim.grant_exists(provider, grant.external_id) is False
    assert adapter.revoke_grant(ref_of(grant)) == RevokeOutcome.ALREADY_GONE
    assert grant.external_id not in {g.external_id for g in flatten(adapter.iter_grants())}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_answering_204_for_a_gone_grant_still_counts_as_revoked(fresh_sim, make_adapter, provider):
    adapter = make_adapter(provider)
    grant = a_grant(adapter)
    assert adapter.revoke_grant(ref_of(grant)) == RevokeOutcome.REVOKED
    fresh_sim.faults(provider=provider, kind="delete_204", count=1)
    assert adapter.revoke_grant(ref_of(grant)) == RevokeOutcome.REVOKED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_revoke_during_an_outage_is_transient_and_changes_nothing(fresh_sim, make_adapter, provider):
    adapter = make_adapter(provider)
    grant = a_grant(adapter)
    method = "POST" if provider == "github" and grant.extra.get("type") == "fine_grained" else "DELETE"
    fresh_sim.faults(provider=provider, kind="server_error", status=503, count=None, method=method)
    with pytest.raises(TransientIdpError):
        adapter.revoke_grant(ref_of(grant))
    assert fresh_sim.grant_exists(provider, grant.external_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_revoke_recovers_from_a_rate_limit(fresh_sim, make_adapter, provider):
    adapter = make_adapter(provider)
    grant = a_grant(adapter)
    fresh_sim.faults(provider=provider, kind="rate_limit", count=1, retry_after=0)
    assert adapter.revoke_grant(ref_of(grant)) == RevokeOutcome.REVOKED
    assert not fresh_sim.grant_exists(provider, grant.external_id)


@pytest.mark.parametrize(
    "match",
    [
        {"consent_type": "all_principals", "type": "oauth2PermissionGrant"},
        {"consent_type": "all_principals", "type": "appRoleAssignment"},
    ],
)
def test_a_tenant_wide_entra_consent_needs_confirmation(fresh_sim, make_adapter, match):
    adapter = make_adapter("entra")
    grant = a_grant(adapter, **match)
    with pytest.raises(ConfirmationRequired):
        adapter.revoke_grant(ref_of(grant))
    assert fresh_sim.grant_exists("entra", grant.external_id)
    assert adapter.revoke_grant(ref_of(grant), confirm_tenant_wide=True) == RevokeOutcome.REVOKED
    assert not fresh_sim.grant_exists("entra", grant.external_id)
    assert adapter.revoke_grant(ref_of(grant), confirm_tenant_wide=True) == RevokeOutcome.ALREADY_GONE


def test_revoking_an_okta_consent_also_revokes_its_refresh_tokens(fresh_sim, make_adapter):
    adapter = make_adapter("okta")
    grants = flatten(adapter.iter_grants())
    token = next(g for g in grants if g.kind == "refresh_token")
    consent = next(
        g
        for g in grants
        if g.kind == "oauth_consent"
        and g.client_id == token.client_id
        and g.user_external_id == token.user_external_id
    )
    assert adapter.revoke_grant(ref_of(consent)) == RevokeOutcome.REVOKED
    assert not fresh_sim.grant_exists("okta", token.external_id)


def test_github_provisioning_approves_a_pending_pat_request(fresh_sim, make_adapter):
    adapter = make_adapter("github")
    before = len(flatten(adapter.iter_grants()))
    request = flatten(adapter.iter_pat_requests())[0]
    result = adapter.provision(
        ProvisionRequest(
            client_id=request.client_id,
            scopes=request.scopes,
            user_external_id=request.user_external_id,
            extra={"request_id": request.external_id},
        )
    )
    assert result.done
    assert request.external_id not in {r.external_id for r in flatten(adapter.iter_pat_requests())}
    grants = flatten(adapter.iter_grants())
    assert len(grants) == before + 1
    assert any(
        g.user_external_id == request.user_external_id and g.client_id == request.client_id for g in grants
    )
    with pytest.raises(NotFound, match="no longer pending"):
        adapter.provision(
            ProvisionRequest(
                client_id=request.client_id, scopes=[], extra={"request_id": request.external_id}
            )
        )


def test_github_provisioning_without_a_request_is_refused(make_adapter):
    with pytest.raises(PermanentIdpError, match="request_id"):
        make_adapter("github").provision(ProvisionRequest(client_id="github-pat:cursor", scopes=[]))


def test_a_new_pat_request_shows_up(fresh_sim, make_adapter):
    adapter = make_adapter("github")
    member = flatten(adapter.iter_users())[3]
    rid = fresh_sim.mutate("add_pat_request", email=member.email, app="Claude")["id"]
    requests = {r.external_id: r for r in flatten(adapter.iter_pat_requests())}
    assert requests[str(rid)].user_external_id == member.external_id


def test_entra_provisioning_creates_a_delegated_consent(fresh_sim, make_adapter):
    adapter = make_adapter("entra")
    app = next(a for a in flatten(adapter.iter_apps()) if a.name == "Claude")
    user = flatten(adapter.iter_users())[7]
    grants = flatten(adapter.iter_grants())
    for g in grants:  # start from a user without this app
        if g.client_id == app.client_id and g.user_external_id == user.external_id:
            adapter.revoke_grant(ref_of(g))
    result = adapter.provision(
        ProvisionRequest(
            client_id=app.client_id, scopes=["User.Read", "Files.Read.All"], user_external_id=user.external_id
        )
    )
    assert result.done and result.grant is not None
    assert result.grant.scopes == ["User.Read", "Files.Read.All"]
    assert fresh_sim.grant_exists("entra", result.grant.external_id)
    listed = {g.external_id: g for g in flatten(adapter.iter_grants())}
    assert listed[result.grant.external_id].user_external_id == user.external_id
    again = adapter.provision(
        ProvisionRequest(client_id=app.client_id, scopes=["User.Read"], user_external_id=user.external_id)
    )
    assert again.done and "already exists" in again.detail


def test_entra_tenant_wide_provisioning_needs_confirmation(fresh_sim, make_adapter):
    adapter = make_adapter("entra")
    app = next(a for a in flatten(adapter.iter_apps()) if a.name == "Perplexity")
    with pytest.raises(ConfirmationRequired):
        adapter.provision(ProvisionRequest(client_id=app.client_id, scopes=["User.Read"]))
    result = adapter.provision(
        ProvisionRequest(client_id=app.client_id, scopes=["User.Read"], extra={"confirm_tenant_wide": True})
    )
    assert result.done and result.grant.consent_type == "all_principals"


def test_okta_provisioning_assigns_the_app(fresh_sim, make_adapter):
    adapter = make_adapter("okta")
    app = flatten(adapter.iter_apps())[0]
    user = next(u for u in flatten(adapter.iter_users()) if u.status == "active")
    result = adapter.provision(
        ProvisionRequest(client_id=app.client_id, scopes=["openid"], user_external_id=user.external_id)
    )
    assert result.done and app.external_id in result.detail


def test_okta_provisioning_an_unknown_app_is_refused(make_adapter):
    with pytest.raises(PermanentIdpError, match="no Okta app"):
        make_adapter("okta").provision(
            ProvisionRequest(client_id="0oanope", scopes=[], user_external_id="00u1")
        )


def test_google_provisioning_is_a_manual_step(make_adapter):
    result = make_adapter("google").provision(
        ProvisionRequest(client_id="123.apps.googleusercontent.com", scopes=[])
    )
    assert not result.done
    assert "Admin console" in result.detail and "123.apps.googleusercontent.com" in result.detail
