"""The simulator's OpenID providers over HTTP: discovery, login page, code + PKCE, id tokens, userinfo."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

import simulator

REDIRECT = "http://127.0.0.1:8000/accounts/oidc/okta/login/callback/"


@pytest.fixture(scope="module")
def sim():
    handle = simulator.start(identities=40, grants=20, seed=5)
    yield handle
    handle.stop()


@pytest.fixture
def http(sim):
    sim.reset(identities=40, grants=20, seed=5)
    with httpx.Client(base_url=sim.url, timeout=10) as c:
        yield c


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize(
    http, sim, provider="okta", *, email="employee@lanyard.demo", mfa=True, **over
) -> httpx.Response:
    verifier, challenge = pkce()
    cfg = http.get(f"/{provider}/.well-known/openid-configuration").json()
    params = {
        "client_id": sim.oidc_clients()[provider]["client_id"],
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **over,
    }
    form = {**params, "login_email": email, **({"mfa": "on"} if mfa else {})}
    response = http.post(urlsplit(cfg["authorization_endpoint"]).path, data=form)
    response.verifier = verifier  # type: ignore[attr-defined]
    return response


def exchange(http, sim, code: str, verifier: str, provider="okta") -> httpx.Response:
    c = sim.oidc_clients()[provider]
    cfg = http.get(f"/{provider}/.well-known/openid-configuration").json()
    return http.post(
        urlsplit(cfg["token_endpoint"]).path,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(c["client_id"], c["client_secret"]),
    )


def test_discovery_names_the_okta_endpoints_under_its_issuer(http, sim):
    cfg = http.get("/okta/.well-known/openid-configuration").json()
    assert cfg["issuer"] == f"{sim.url}/okta"
    assert cfg["authorization_endpoint"] == f"{sim.url}/okta/oauth2/v1/authorize"
    assert cfg["jwks_uri"] == f"{sim.url}/okta/oauth2/v1/keys"
    assert cfg["code_challenge_methods_supported"] == ["S256"]
    assert "groups" in cfg["claims_supported"]


def test_the_login_page_lists_the_demo_people(http, sim):
    _, challenge = pkce()
    client_id = sim.oidc_clients()["okta"]["client_id"]
    response = http.get(
        "/okta/oauth2/v1/authorize",
        params={
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid email",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "iam@lanyard.demo" in response.text and "employee@lanyard.demo" in response.text


def test_code_and_pkce_give_a_signed_id_token_with_groups_and_amr(http, sim):
    response = authorize(http, sim, email="iam@lanyard.demo")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert location.path == urlsplit(REDIRECT).path and query["state"] == ["st-1"]
    assert query["iss"] == [f"{sim.url}/okta"]
    token = exchange(http, sim, query["code"][0], response.verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    jwks = jwt.PyJWKClient(f"{sim.url}/okta/oauth2/v1/keys")
    key = jwks.get_signing_key_from_jwt(body["id_token"])
    claims = jwt.decode(
        body["id_token"],
        key.key,
        algorithms=["RS256"],
        audience=sim.oidc_clients()["okta"]["client_id"],
        issuer=f"{sim.url}/okta",
    )
    assert claims["email"] == "iam@lanyard.demo" and claims["email_verified"] is True
    assert claims["sub"].startswith("00u") and claims["name"] == "Iris Admin"
    assert "Lanyard IAM" in claims["groups"] and claims["amr"] == ["pwd", "mfa", "otp"]
    info = http.get("/okta/oauth2/v1/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"]


def test_the_subject_is_the_okta_user_id_the_sync_sees(http, sim):
    response = authorize(http, sim, email="employee@lanyard.demo", mfa=False)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    claims = jwt.decode(
        exchange(http, sim, code, response.verifier).json()["id_token"], options={"verify_signature": False}
    )
    users = http.get(
        "/okta/api/v1/users",
        params={"q": "employee@lanyard.demo"},
        headers={"Authorization": f"SSWS {sim.credentials()['okta']['credentials']['api_token']}"},
    ).json()
    assert claims["sub"] in {u["id"] for u in users if u["profile"]["email"] == "employee@lanyard.demo"}
    assert claims["amr"] == ["pwd"]


def test_google_gives_the_account_id_and_no_groups(http, sim):
    response = authorize(http, sim, provider="google", client_id=sim.oidc_clients()["google"]["client_id"])
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    claims = jwt.decode(
        exchange(http, sim, code, response.verifier, "google").json()["id_token"],
        options={"verify_signature": False},
    )
    assert claims["hd"] == "acmecorp.example"
    assert "groups" not in claims and "amr" not in claims
    assert claims["sub"].isdigit()


def test_a_wrong_verifier_is_refused_and_the_code_is_single_use(http, sim):
    response = authorize(http, sim)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    bad = exchange(http, sim, code, "not-the-verifier")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    again = exchange(http, sim, code, response.verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_refused(http, sim):
    response = authorize(http, sim)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    r = http.post(
        "/okta/oauth2/v1/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": response.verifier,
        },
        auth=(sim.oidc_clients()["okta"]["client_id"], "wrong"),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_without_pkce_the_request_is_sent_back_with_an_error(http, sim):
    response = authorize(http, sim, code_challenge="", code_challenge_method="")
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "code" not in query


def test_an_unregistered_redirect_uri_is_never_redirected_to(http, sim):
    response = authorize(http, sim, redirect_uri="https://evil.example/cb")
    assert response.status_code == 400 and "location" not in response.headers


def test_unknown_and_suspended_people_are_refused_on_the_login_page(http, sim):
    assert authorize(http, sim, email="nobody@lanyard.demo").status_code == 401
    sim.mutate("set_status", email="employee@lanyard.demo", status="suspended")
    response = authorize(http, sim, email="employee@lanyard.demo")
    assert response.status_code == 401 and "suspended" in response.text


def test_group_changes_show_in_the_next_id_token(http, sim):
    assert "Lanyard IAM" not in sim.oidc_groups("employee@lanyard.demo", add=[])
    assert "Lanyard IAM" in sim.oidc_groups("employee@lanyard.demo", add=["Lanyard IAM"])
    assert "Lanyard IAM" not in sim.oidc_groups("iam@lanyard.demo", remove=["Lanyard IAM"])


def test_userinfo_refuses_an_unknown_token(http):
    r = http.get("/okta/oauth2/v1/userinfo", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
