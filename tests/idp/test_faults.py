"""Each provider's failure modes, injected by the simulator's fault switches, end in the right error."""

from __future__ import annotations

import pytest

from connectors.idp.base import MalformedResponse, PermanentIdpError, TransientIdpError

from .conftest import PROVIDERS, flatten

# a listing endpoint per provider, paged (path filter for page faults)
GRANT_PATHS = {
    "google": "/tokens",
    "entra": "/oauth2PermissionGrants",
    "okta": "/grants",
    "github": "/personal-access-tokens",
}
USER_PATHS = {
    "google": "/admin/directory/v1/users",
    "entra": "/v1.0/users",
    "okta": "/api/v1/users",
    "github": "/members",
}
RATE_LIMITS = [
    ("google", {"variant": "rateLimitExceeded"}),
    ("google", {"variant": "userRateLimitExceeded"}),
    ("google", {"variant": "429"}),
    ("google", {"variant": "503"}),
    ("entra", {}),
    ("okta", {}),
    ("github", {"variant": "primary"}),
    ("github", {"variant": "primary", "status": 429}),
    ("github", {"variant": "secondary"}),
    ("github", {"variant": "secondary", "status": 429}),
]


@pytest.mark.parametrize(("provider", "spec"), RATE_LIMITS)
def test_a_rate_limit_recovers_within_the_retries(sim, make_adapter, provider, spec):
    adapter = make_adapter(provider)
    expected = sim.state()["providers"][provider]["users"]
    sim.faults(provider=provider, kind="rate_limit", count=2, path=USER_PATHS[provider], **spec)
    assert len(flatten(adapter.iter_users())) == expected
    assert sim.state()["faults"] == [], "both faults were used up"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rate_limit_that_outlasts_the_retries_is_transient(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="rate_limit", count=None, path=USER_PATHS[provider], retry_after=0)
    with pytest.raises(TransientIdpError) as exc:
        flatten(adapter.iter_users())
    assert exc.value.transient
    assert "gave up after 4 attempts" in str(exc.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_server_errors_raise_transient(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="server_error", status=502, count=None, path=USER_PATHS[provider])
    with pytest.raises(TransientIdpError) as exc:
        flatten(adapter.iter_users())
    assert exc.value.status == 502
    assert exc.value.source and exc.value.endpoint


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_few_server_errors_are_retried(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    expected = sim.state()["providers"][provider]["grants"]
    sim.faults(provider=provider, kind="server_error", count=3, path=GRANT_PATHS[provider])
    assert len(flatten(adapter.iter_grants())) == expected


@pytest.mark.parametrize("provider", ["google", "entra", "okta", "github"])
def test_a_page_failing_mid_listing_raises_after_earlier_pages(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="server_error", count=None, page=2, path=USER_PATHS[provider])
    pages = []
    with pytest.raises(TransientIdpError):
        for page in adapter.iter_users():
            pages.append(page)
    # Google resolves managers after the whole directory and GitHub fetches profiles ahead: neither
    # has a complete page to hand over before the failing request
    assert len(pages) == (1 if provider in ("entra", "okta") else 0)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_page_that_times_out_repeatedly_is_transient(sim, make_adapter, provider):
    adapter = make_adapter(provider, timeout=0.2, max_retries=1)
    sim.faults(provider=provider, kind="timeout", delay=0.6, count=None, page=2, path=USER_PATHS[provider])
    with pytest.raises(TransientIdpError) as exc:
        flatten(adapter.iter_users())
    assert "timed out" in str(exc.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_answers_within_the_timeout_succeed(sim, make_adapter, provider):
    adapter = make_adapter(provider, timeout=2.0)
    sim.faults(provider=provider, kind="slow", delay=0.1, count=2, path=USER_PATHS[provider])
    assert flatten(adapter.iter_users())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_dropped_connection_is_retried(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    expected = sim.state()["providers"][provider]["users"]
    sim.faults(provider=provider, kind="drop", count=1, path=USER_PATHS[provider])
    assert len(flatten(adapter.iter_users())) == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_json_raises_malformed_response(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="malformed", count=1, path=GRANT_PATHS[provider])
    with pytest.raises(MalformedResponse) as exc:
        flatten(adapter.iter_grants())
    assert "not valid JSON" in str(exc.value)
    assert exc.value.source and exc.value.endpoint and exc.value.status == 200
    assert not exc.value.transient


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forbidden_answer_is_permanent(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="forbidden", count=1, path=USER_PATHS[provider])
    with pytest.raises(PermanentIdpError) as exc:
        flatten(adapter.iter_users())
    assert exc.value.status == 403
    assert not isinstance(exc.value, TransientIdpError)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_persistent_401_is_permanent(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    sim.faults(provider=provider, kind="unauthorized", count=None, path=USER_PATHS[provider])
    with pytest.raises(PermanentIdpError) as exc:
        flatten(adapter.iter_users())
    assert exc.value.status == 401
    assert "authentication failed" in str(exc.value)


def test_google_tokens_failing_for_one_user_fail_the_listing(sim, make_adapter):
    adapter = make_adapter("google")
    sim.faults(provider="google", kind="server_error", count=None, path="/tokens", page=1)
    with pytest.raises(TransientIdpError):
        flatten(adapter.iter_grants())


def test_a_shape_the_adapter_does_not_know_is_malformed(sim, make_adapter, monkeypatch):
    # JSON that is not the documented shape must not be taken for an empty listing
    adapter = make_adapter("entra")
    adapter.http.token.get()
    monkeypatch.setattr(adapter.http, "json_of", lambda resp: {"unexpected": True})
    with pytest.raises(MalformedResponse) as exc:
        flatten(adapter.iter_users())
    assert "list of items" in str(exc.value)


@pytest.mark.parametrize("provider", ["entra", "github"])
@pytest.mark.parametrize("kind", ["server_error", "timeout"])
def test_page_three_of_grants_failing_repeatedly_stops_the_listing(sim, make_adapter, provider, kind):
    adapter = make_adapter(provider, timeout=0.2, max_retries=1)
    sim.faults(provider=provider, kind=kind, delay=0.5, count=None, page=3, path=GRANT_PATHS[provider])
    pages = []
    with pytest.raises(TransientIdpError):
        for page in adapter.iter_grants():
            pages.append(page)
    assert len(pages) == 2, "the two pages before the failing one were delivered"
