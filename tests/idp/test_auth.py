"""Authentication: each provider's real credential flow, clear failures, tokens refreshed, no secret leaks."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from connectors.idp import get_adapter
from connectors.idp.base import PermanentIdpError
from simulator.keys import private_key_pem

from .conftest import PROVIDERS, SIZE, flatten

# each provider gets a real RSA key that is not the one registered with it
BAD = {
    "google": {"private_key": private_key_pem("github", SIZE["seed"])},
    "entra": {"client_secret": "sim~this-is-the-wrong-secret-value"},
    "okta": {"api_token": "00wrongwrongwrongwrongwrongwrongwrongwrong"},
    "github": {"private_key": private_key_pem("google", SIZE["seed"])},
}
SECRET_FIELD = {
    "google": "private_key",
    "entra": "client_secret",
    "okta": "api_token",
    "github": "private_key",
}


def bad_adapter(make_config, provider):
    config = make_config(provider)
    creds = {**config.credentials, **BAD[provider]}
    return get_adapter(dataclasses.replace(config, credentials=creds))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_credentials_raise_a_clear_permanent_error_without_the_secret(
    make_config, provider, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    adapter = bad_adapter(make_config, provider)
    try:
        with pytest.raises(PermanentIdpError) as exc:
            flatten(adapter.iter_users())
    finally:
        adapter.close()
    message = str(exc.value)
    assert exc.value.status in (400, 401)
    assert any(word in message for word in ("access token", "installation token", "authentication failed"))
    assert exc.value.source in message
    secret = BAD[provider][SECRET_FIELD[provider]]
    for text in [message, repr(exc.value), caplog.text]:
        assert secret not in text
        assert secret.splitlines()[1] not in text if "\n" in secret else True


def test_entra_names_the_wrong_secret(make_config):
    adapter = bad_adapter(make_config, "entra")
    with pytest.raises(PermanentIdpError, match="AADSTS7000215: Invalid client secret"):
        flatten(adapter.iter_users())
    adapter.close()


def test_google_needs_a_delegated_admin(make_config):
    config = make_config("google")
    creds = {**config.credentials, "delegated_admin": "nobody@acmecorp.example"}
    adapter = get_adapter(dataclasses.replace(config, credentials=creds))
    with pytest.raises(PermanentIdpError, match="unauthorized_client"):
        flatten(adapter.iter_users())
    adapter.close()


def test_missing_credentials_are_named(make_config):
    config = make_config("okta")
    with pytest.raises(PermanentIdpError, match="api_token"):
        get_adapter(dataclasses.replace(config, credentials={}))


def test_an_unknown_kind_is_refused(make_config):
    config = make_config("okta")
    with pytest.raises(PermanentIdpError, match="unknown identity-source kind"):
        get_adapter(dataclasses.replace(config, kind="myspace"))


@pytest.mark.parametrize("provider", ["google", "entra", "github"])
def test_a_token_revoked_at_the_provider_is_refreshed_once(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    first = len(flatten(adapter.iter_users()))
    token = adapter.http.token.current
    sim.mutate("expire_tokens", provider=provider)
    assert len(flatten(adapter.iter_users())) == first
    assert adapter.http.token.current != token


@pytest.mark.parametrize("provider", ["google", "entra", "github"])
def test_the_token_is_fetched_once_and_reused(sim, make_adapter, provider):
    adapter = make_adapter(provider)
    flatten(adapter.iter_users())
    token = adapter.http.token.current
    flatten(adapter.iter_users())
    assert adapter.http.token.current == token


def test_a_config_repr_never_shows_credentials(make_config):
    config = make_config("entra")
    assert config.credentials["client_secret"] not in repr(config)
