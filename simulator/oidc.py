"""Simulated OpenID Connect providers: Okta's org authorization server and Google's, over the tenant's people.

So `make run` and the tests sign in to Lanyard the way a company does. Each provider serves, under its
simulator prefix, the paths the real provider uses:

- Okta (issuer ``<sim>/okta``): ``/.well-known/openid-configuration``, ``/oauth2/v1/authorize``,
  ``/oauth2/v1/token``, ``/oauth2/v1/userinfo``, ``/oauth2/v1/keys``. ``sub`` is the person's Okta user
  id (the Okta identity source's external id); the id token carries ``groups`` (as an Okta admin
  configures a groups claim) and ``amr`` (``["pwd", "mfa", "otp"]`` when the person passed the second
  factor on the login page, ``["pwd"]`` when not).
- Google (issuer ``<sim>/google``): ``/.well-known/openid-configuration``, ``/o/oauth2/v2/auth``,
  ``/oauth2/v4/token``, ``/v1/userinfo``, ``/oauth2/v3/certs``. ``sub`` is the Google account id (the
  Directory API's user id); like Google, no groups and no ``amr``, but ``hd`` (the Workspace domain).

Only the authorization-code flow with PKCE (S256, required) is offered. The one client per provider
is deterministic per seed (``client(seed, provider)``); it accepts redirect URIs on loopback hosts and
Django's ``testserver`` (a local demo and the test client), plus any registered through the control
API. The login page lists the demo people and takes any tenant email; suspended and deprovisioned
people are refused as the IdP would. Id tokens are RS256, signed with a key generated at start-up.

Control (``/_sim/oidc/...``): ``GET clients`` (client ids, secrets, issuers), ``POST groups``
``{"email", "add": [...], "remove": [...]}`` (change a person's Okta groups), ``POST redirect_uris``
``{"provider", "uri"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from . import catalog
from .tenant import ACTIVE, Tenant
from .wire import Resp

CODE_SECONDS = 60
TOKEN_SECONDS = 3600
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]", "testserver"}
# The Okta group the demo's IAM staff belong to (Lanyard maps it to its IAM staff role in `make run`).
IAM_GROUP = "Lanyard IAM"
AUDITOR_GROUP = "Lanyard Auditors"

PATHS = {
    "okta": {
        "authorize": "/oauth2/v1/authorize",
        "token": "/oauth2/v1/token",
        "userinfo": "/oauth2/v1/userinfo",
        "jwks": "/oauth2/v1/keys",
    },
    "google": {
        "authorize": "/o/oauth2/v2/auth",
        "token": "/oauth2/v4/token",
        "userinfo": "/v1/userinfo",
        "jwks": "/oauth2/v3/certs",
    },
}
DISCOVERY = "/.well-known/openid-configuration"


def client(seed: int, provider: str) -> tuple[str, str]:
    """Return the (client_id, client_secret) of the provider's one registered client for this seed."""
    digest = hashlib.sha256(f"lanyard-sim-oidc:{provider}:{seed}".encode()).hexdigest()
    if provider == "google":
        return f"{int(digest[:12], 16)}-lanyard.apps.googleusercontent.com", "GOCSPX-" + digest[12:40]
    return "0oa" + digest[:17], digest[17:57]


def handles(provider: str, sub: str) -> bool:
    """Return whether ``sub`` (a path below the provider prefix) is one of the OIDC endpoints."""
    return provider in PATHS and (sub == DISCOVERY or sub in PATHS[provider].values())


def _b64url_sha256(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).decode().rstrip("=")


@dataclass
class _Code:
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str
    person: int
    scope: list[str]
    nonce: str
    mfa: bool
    expires: float


@dataclass
class OidcProviders:
    """The simulated providers' keys, codes, tokens and group changes (cleared on a tenant reset)."""

    seed: int = 1
    key: Any = None
    kid: str = ""
    codes: dict[str, _Code] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups_added: dict[str, set[str]] = field(default_factory=dict)
    groups_removed: dict[str, set[str]] = field(default_factory=dict)
    redirect_uris: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "sim-oidc-" + secrets.token_hex(4)

    def reset(self, seed: int) -> None:
        with self.lock:
            self.seed = seed
            self.codes.clear()
            self.tokens.clear()
            self.groups_added.clear()
            self.groups_removed.clear()
            self.redirect_uris.clear()

    # --- who is who

    def groups(self, tenant: Tenant, person: int) -> list[str]:
        """Return the person's Okta groups: Everyone, their department, IAM for IT's admins, changes."""
        email = tenant.email[person]
        out = {"Everyone", tenant.dept[person]}
        local = email.split("@")[0]
        if tenant.is_admin[person] or (
            email.endswith("@" + catalog.DEMO_DOMAIN) and local in ("iam", "iam2")
        ):
            out.add(IAM_GROUP)
        out |= self.groups_added.get(email, set())
        out -= self.groups_removed.get(email, set())
        return sorted(out)

    def subject(self, tenant: Tenant, provider: str, person: int) -> str:
        return tenant.okta_ids[person] if provider == "okta" else tenant.google_ids[person]

    def claims(self, tenant: Tenant, provider: str, person: int, scope: list[str]) -> dict[str, Any]:
        """Return the person's claims as the provider's userinfo gives them for ``scope``."""
        out: dict[str, Any] = {"sub": self.subject(tenant, provider, person)}
        if "email" in scope:
            out |= {"email": tenant.email[person], "email_verified": True}
        if "profile" in scope:
            out |= {
                "name": tenant.name(person),
                "given_name": tenant.first[person],
                "family_name": tenant.last[person],
            }
            if provider == "okta":
                out |= {"preferred_username": tenant.email[person], "locale": "en-GB", "zoneinfo": "UTC"}
        if provider == "okta":
            out["groups"] = self.groups(tenant, person)
        else:
            out["hd"] = tenant.domain
        return out

    # --- endpoints

    def handle(
        self,
        provider: str,
        method: str,
        sub: str,
        base: str,
        tenant: Tenant,
        headers: Any,
        body: bytes,
        query: dict[str, str],
    ) -> Resp:
        iss = f"{base}/{provider}"
        paths = PATHS[provider]
        if sub == DISCOVERY and method == "GET":
            return Resp(200, self.discovery(provider, iss))
        if sub == paths["jwks"] and method == "GET":
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return Resp(200, {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})
        if sub == paths["authorize"] and method in ("GET", "POST"):
            params = dict(query)
            if method == "POST":
                params |= {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            return self.authorize(provider, iss, tenant, params, submitted=method == "POST")
        if sub == paths["token"] and method == "POST":
            return self.token(provider, iss, tenant, headers, body)
        if sub == paths["userinfo"] and method in ("GET", "POST"):
            return self.userinfo(headers)
        return _oauth_error(405, "invalid_request", f"{method} is not allowed on {sub}")

    def discovery(self, provider: str, iss: str) -> dict[str, Any]:
        paths = PATHS[provider]
        claims = [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "email",
            "email_verified",
            "name",
            "given_name",
            "family_name",
        ]
        doc = {
            "issuer": iss,
            "authorization_endpoint": iss + paths["authorize"],
            "token_endpoint": iss + paths["token"],
            "userinfo_endpoint": iss + paths["userinfo"],
            "jwks_uri": iss + paths["jwks"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": claims,
        }
        if provider == "okta":
            doc["scopes_supported"].append("groups")
            doc["claims_supported"] += ["groups", "amr", "preferred_username"]
        else:
            doc["claims_supported"].append("hd")
        return doc

    def _redirect_allowed(self, provider: str, uri: str) -> bool:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            return False
        return parts.hostname in LOOPBACK or uri in self.redirect_uris.get(provider, set())

    def authorize(
        self, provider: str, iss: str, tenant: Tenant, p: dict[str, str], *, submitted: bool
    ) -> Resp:
        client_id, _ = client(self.seed, provider)
        redirect_uri = p.get("redirect_uri", "")
        # Without a known client and an allowed redirect URI, the error is shown, never redirected.
        if p.get("client_id") != client_id:
            return _page(400, "Unknown client", "<p>This application (client_id) is not registered.</p>")
        if not self._redirect_allowed(provider, redirect_uri):
            return _page(
                400, "Redirect URI not allowed", f"<p>{html.escape(redirect_uri)} is not registered.</p>"
            )
        state = p.get("state", "")

        def fail(error: str, description: str) -> Resp:
            q = {"error": error, "error_description": description, "iss": iss}
            if state:
                q["state"] = state
            return _redirect(redirect_uri, q)

        if p.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        scope = p.get("scope", "").split()
        if "openid" not in scope:
            return fail("invalid_scope", "The openid scope is required.")
        if not p.get("code_challenge") or p.get("code_challenge_method") != "S256":
            return fail(
                "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256."
            )
        email = p.get("login_email", "").strip().lower()
        error = ""
        if submitted:
            person = tenant.by_email.get(email)
            if person is None:
                error = f"There is no {html.escape(email) or 'empty'} account in this organisation."
            elif tenant.status[person] != ACTIVE:
                error = "This account is suspended or deactivated. Contact your administrator."
            else:
                code = secrets.token_urlsafe(24)
                with self.lock:
                    self.codes[code] = _Code(
                        provider=provider,
                        client_id=client_id,
                        redirect_uri=redirect_uri,
                        challenge=p["code_challenge"],
                        person=person,
                        scope=scope,
                        nonce=p.get("nonce", ""),
                        mfa=provider == "okta" and p.get("mfa") == "on",
                        expires=time.time() + CODE_SECONDS,
                    )
                q = {"code": code, "iss": iss}
                if state:
                    q["state"] = state
                return _redirect(redirect_uri, q)
        return self._login_page(provider, tenant, p, error)

    def _login_page(self, provider: str, tenant: Tenant, p: dict[str, str], error: str) -> Resp:
        brand = "Okta" if provider == "okta" else "Google"
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in p.items()
            if k not in ("login_email", "mfa")
        )
        people = []
        for role, first, last, what in catalog.DEMO_PERSONAS:
            email = f"{role}@{catalog.DEMO_DOMAIN}"
            if email in tenant.by_email:
                people.append(
                    f'<li><button type="submit" name="login_email" value="{email}">{first} {last}</button>'
                    f" <small>{email}, {html.escape(what)}</small></li>"
                )
        mfa = (
            '<p><label><input type="checkbox" name="mfa" checked> Verified with Okta Verify '
            "(the id token then says amr mfa)</label></p>"
            if provider == "okta"
            else ""
        )
        body = f"""
<p class="who">Sign in to <strong>Acme</strong> ({brand}, simulated) to continue to the application.</p>
{f'<p class="error" role="alert">{error}</p>' if error else ""}
<form method="post">
  {hidden}
  {mfa}
  <p>Pick a demo person:</p>
  <ul class="people">{"".join(people) or "<li>(no demo people in this tenant)</li>"}</ul>
  <p><label for="login_email">Or any email in the organisation</label><br>
     <input id="login_email" name="login_email" type="email" autocomplete="username"
            value="{html.escape(p.get("login_email", ""))}">
     <button type="submit" id="sign-in">Sign in</button></p>
</form>"""
        return _page(200 if not error else 401, f"Sign in with {brand}", body)

    def token(self, provider: str, iss: str, tenant: Tenant, headers: Any, body: bytes) -> Resp:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id, client_secret = client(self.seed, provider)
        given_id, given_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = (headers.get("Authorization") if headers is not None else "") or ""
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip()).decode()
            except (ValueError, UnicodeDecodeError):
                return _oauth_error(401, "invalid_client", "Malformed Basic credentials.")
            given_id, _, given_secret = raw.partition(":")
        if given_id != client_id or not hmac.compare_digest(given_secret.encode(), client_secret.encode()):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Only authorization_code is supported.")
        with self.lock:
            code = self.codes.pop(form.get("code", ""), None)  # single use, whatever happens next
        if code is None or code.expires < time.time() or code.provider != provider:
            return _oauth_error(400, "invalid_grant", "The authorization code is invalid or expired.")
        if code.client_id != given_id or code.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(
                400, "invalid_grant", "The redirect_uri does not match the authorization request."
            )
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(_b64url_sha256(verifier), code.challenge):
            return _oauth_error(400, "invalid_grant", "PKCE verification failed (code_verifier).")
        now = int(time.time())
        claims = self.claims(tenant, provider, code.person, code.scope)
        id_claims: dict[str, Any] = {
            **claims,
            "iss": iss,
            "aud": client_id,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "auth_time": now,
            "jti": secrets.token_hex(12),
        }
        if code.nonce:
            id_claims["nonce"] = code.nonce
        if provider == "okta":
            id_claims["amr"] = ["pwd", "mfa", "otp"] if code.mfa else ["pwd"]
            id_claims["idp"] = "00o" + client_id[3:20]
        id_token = jwt.encode(id_claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        access = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[access] = {"claims": claims, "expires": now + TOKEN_SECONDS}
        return Resp(
            200,
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_SECONDS,
                "access_token": access,
                "scope": " ".join(code.scope),
                "id_token": id_token,
            },
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def userinfo(self, headers: Any) -> Resp:
        auth = (headers.get("Authorization") if headers is not None else "") or ""
        scheme, _, token = auth.partition(" ")
        entry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or entry["expires"] < time.time():
            return Resp(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Resp(200, entry["claims"])

    # --- control

    def control(self, sub: str, method: str, data: dict, base: str, tenant: Tenant) -> Resp:
        if sub == "/oidc/clients" and method == "GET":
            out = {}
            for provider in PATHS:
                cid, secret = client(self.seed, provider)
                out[provider] = {"issuer": f"{base}/{provider}", "client_id": cid, "client_secret": secret}
            return Resp(200, out)
        if sub == "/oidc/groups" and method == "POST":
            email = data["email"].lower()
            if email not in tenant.by_email:
                raise KeyError(f"no person {email}")
            with self.lock:
                for g in data.get("add") or []:
                    self.groups_added.setdefault(email, set()).add(g)
                    self.groups_removed.get(email, set()).discard(g)
                for g in data.get("remove") or []:
                    self.groups_removed.setdefault(email, set()).add(g)
                    self.groups_added.get(email, set()).discard(g)
            return Resp(200, {"email": email, "groups": self.groups(tenant, tenant.by_email[email])})
        if sub == "/oidc/redirect_uris" and method == "POST":
            with self.lock:
                self.redirect_uris.setdefault(data["provider"], set()).add(data["uri"])
            return Resp(
                200,
                {"provider": data["provider"], "redirect_uris": sorted(self.redirect_uris[data["provider"]])},
            )
        return Resp(404, {"error": f"unknown control endpoint {method} /_sim{sub}"})


def _oauth_error(status: int, error: str, description: str) -> Resp:
    return Resp(status, {"error": error, "error_description": description}, {"Cache-Control": "no-store"})


def _redirect(uri: str, params: dict[str, str]) -> Resp:
    sep = "&" if urlsplit(uri).query else "?"
    return Resp(302, b"", {"Location": uri + sep + urlencode(params), "Cache-Control": "no-store"})


def _page(status: int, title: str, body: str) -> Resp:
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem;
        color: #1b1b1f; }}
 h1 {{ font-size: 1.4rem; }} .error {{ color: #8a1c1c; font-weight: 600; }}
 ul.people {{ list-style: none; padding: 0; }} ul.people li {{ margin: .4rem 0; }}
 button {{ font: inherit; padding: .35rem .8rem; }}
 input[type=email] {{ font: inherit; width: 18rem; max-width: 100%; }}
 small {{ color: #555; }}
</style></head>
<body><h1>{html.escape(title)}</h1>{body}</body></html>"""
    return Resp(
        status, doc.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    )
