"""Okta Management API: users, OIDC apps, per-user consent grants and refresh tokens, devices, System Log.

Auth is an API token (``Authorization: SSWS <token>``). Okta throttles with 429 and tells when the
window resets in ``X-Rate-Limit-Reset`` (epoch seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import (
    GrantRef,
    IdpActivity,
    IdpApp,
    IdpConfig,
    IdpDevice,
    IdpGrant,
    IdpUser,
    NotFound,
    PermanentIdpError,
    ProvisionRequest,
    ProvisionResult,
    RevokeOutcome,
)
from .http import RETRY, AdapterBase, HttpCore, Verdict, batched, parse_time, rfc3339

STATUS = {"SUSPENDED": "suspended", "DEPROVISIONED": "deprovisioned"}
EVENT_ACTIONS = {
    "app.oauth2.as.consent.grant": "token.authorize",
    "app.oauth2.as.consent.revoke": "token.revoke",
    "app.oauth2.as.token.revoke": "token.revoke",
}
PLATFORMS = {"MACOS": "macOS", "WINDOWS": "Windows", "IOS": "iOS", "ANDROID": "Android", "LINUX": "Linux"}
# the System Log's device.os_platform names a Mac "OSX" (the description's ListLogs example)
LOG_PLATFORMS = {**PLATFORMS, "OSX": "macOS"}


def classify(resp: httpx.Response) -> Verdict | None:
    if resp.status_code == 429:
        wait = None
        reset = resp.headers.get("x-rate-limit-reset")
        if reset and reset.strip().isdigit():
            wait = max(0.0, int(reset) - time.time())
        return Verdict(RETRY, wait, "rate limited (HTTP 429)")
    return None


class OktaAdapter(AdapterBase):
    kind = "okta"

    def __init__(self, config: IdpConfig, *, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        if not config.base_url:
            raise PermanentIdpError("Okta needs the org URL as base_url", source=config.name or config.kind)
        self.http = HttpCore(
            config,
            base_url=config.base_url,
            auth_scheme="SSWS",
            static_token=self.cred("api_token", "token"),
            headers={"Accept": "application/json"},
            classify=classify,
            transport=transport,
        )
        # Refresh tokens cost one request per (user, app) holding offline_access; they can be switched off.
        self.list_refresh_tokens = bool(config.credentials.get("list_refresh_tokens", True))
        self._apps_lock = threading.Lock()
        self._apps: list[dict] | None = None

    # --- users

    def _raw_users(self) -> Iterator[list[dict]]:
        # An unfiltered listing leaves DEPROVISIONED users out, so ask for them separately.
        yield from self.http.link_pages("/api/v1/users", {"limit": self.page(200)})
        yield from self.http.link_pages(
            "/api/v1/users", {"limit": self.page(200), "filter": 'status eq "DEPROVISIONED"'}
        )

    def iter_users(self) -> Iterator[list[IdpUser]]:
        for page in self._raw_users():
            out = []
            for u in page:
                if not isinstance(u, dict) or "id" not in u:
                    raise self.http.malformed("user without id", "/api/v1/users")
                out.append(parse_user(u))
            yield out

    # --- apps

    def _app_list(self) -> list[dict]:
        with self._apps_lock:
            if self._apps is None:
                self._apps = [
                    a
                    for page in self.http.link_pages("/api/v1/apps", {"limit": self.page(200)})
                    for a in page
                ]
            return self._apps

    @staticmethod
    def _client_id(app: dict) -> str:
        return app_client_id(app)

    def iter_apps(self) -> Iterator[list[IdpApp]]:
        apps = [parse_app(a) for a in self._app_list()]
        yield from batched(apps, self.config.page_size)

    # --- grants

    def _user_grants(self, user_id: str) -> list[IdpGrant]:
        uid = quote(user_id, safe="")
        url = f"/api/v1/users/{uid}/grants"
        records: list[dict] = []
        try:
            for page in self.http.link_pages(url, {"limit": self.page(200), "expand": "scope"}):
                for g in page:
                    if not isinstance(g, dict) or not g.get("clientId"):
                        raise self.http.malformed("grant without clientId", url)
                    records.append(g)
        except NotFound:
            return []  # the user went away between the listing and now
        out: list[IdpGrant] = []
        for consent in parse_consent_grants(user_id, records):
            out.append(consent)
            if self.list_refresh_tokens and "offline_access" in consent.scopes:
                out.extend(self._tokens(user_id, consent.client_id, consent.app_name))
        return out

    def _tokens(self, user_id: str, client_id: str, app_name: str) -> list[IdpGrant]:
        url = f"/api/v1/users/{quote(user_id, safe='')}/clients/{quote(client_id, safe='')}/tokens"
        out = []
        try:
            pages = list(self.http.link_pages(url, {"limit": self.page(200)}))
        except NotFound:
            return []
        for page in pages:
            for t in page:
                if "id" not in t:
                    raise self.http.malformed("token without id", url)
                out.append(parse_refresh_token(user_id, client_id, app_name, t))
        return out

    def _user_ids(self) -> Iterator[str]:
        for page in self._raw_users():
            for u in page:
                if not isinstance(u, dict) or "id" not in u:
                    raise self.http.malformed("user without id", "/api/v1/users")
                yield u["id"]

    def iter_grants(self) -> Iterator[list[IdpGrant]]:
        batch: list[IdpGrant] = []
        for grants in self.http.ordered_map(self._user_grants, self._user_ids()):
            batch.extend(grants)
            if len(batch) >= self.config.page_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def revoke_grant(self, ref: GrantRef, *, confirm_tenant_wide: bool = False) -> RevokeOutcome:
        user_id = ref.extra.get("user_id") or ref.user_external_id
        client_id = ref.extra.get("client_id") or ref.client_id
        if not user_id or not client_id:
            raise PermanentIdpError("grant has no user or client id to revoke", source=self.http.source)
        base = f"/api/v1/users/{quote(user_id, safe='')}/clients/{quote(client_id, safe='')}"
        if ref.kind == "refresh_token":
            token_id = ref.extra.get("token_id") or ref.external_id
            resp = self.http.request(
                "DELETE", f"{base}/tokens/{quote(token_id, safe='')}", allow_not_found=True
            )
            return RevokeOutcome.ALREADY_GONE if resp.status_code == 404 else RevokeOutcome.REVOKED
        resp = self.http.request("DELETE", f"{base}/grants", allow_not_found=True)
        # revoking the consent alone would leave live refresh tokens behind
        self.http.request("DELETE", f"{base}/tokens", allow_not_found=True)
        return RevokeOutcome.ALREADY_GONE if resp.status_code == 404 else RevokeOutcome.REVOKED

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """Assign the app to the user (POST /api/v1/apps/{appId}/users)."""
        if not request.user_external_id:
            raise PermanentIdpError("Okta assigns apps to a user; none given", source=self.http.source)
        app_id = request.extra.get("app_id")
        if not app_id:
            app = next((a for a in self._app_list() if self._client_id(a) == request.client_id), None)
            if app is None:
                raise PermanentIdpError(
                    "no Okta app has this client id", source=self.http.source, endpoint="/api/v1/apps"
                )
            app_id = app["id"]
        url = f"/api/v1/apps/{quote(app_id, safe='')}/users"
        resp = self.http.request("POST", url, json={"id": request.user_external_id, "scope": "USER"})
        body = self.http.json_of(resp)
        if not isinstance(body, dict) or "id" not in body:
            raise self.http.malformed("assignment response has no id", url, resp.status_code)
        return ProvisionResult(done=True, detail=f"app {app_id} assigned to user {body['id']}")

    # --- devices and activity

    def iter_devices(self) -> Iterator[list[IdpDevice]]:
        for page in self.http.link_pages("/api/v1/devices", {"limit": self.page(200), "expand": "user"}):
            yield [parse_device(d) for d in page]

    def iter_activity(self, since: datetime | None = None) -> Iterator[list[IdpActivity]]:
        params: dict[str, Any] = {"limit": self.page(1000), "sortOrder": "ASCENDING"}
        if since is not None:
            params["since"] = rfc3339(since)
        # the System Log always offers a next link (for polling): stop at the first empty page
        for page in self.http.link_pages("/api/v1/logs", params, stop_on_empty=True):
            out = []
            for e in page:
                if parse_time(e.get("published")) is None or "uuid" not in e:
                    raise self.http.malformed("log event without uuid or published", "/api/v1/logs")
                out.append(parse_log_event(e))
            yield out


# --- parsers: one documented object in, domain records out (tests/contracts feeds them the
# description's own examples)


def parse_user(u: dict) -> IdpUser:
    p = u.get("profile") or {}
    name = " ".join(x for x in (p.get("firstName"), p.get("lastName")) if x)
    return IdpUser(
        external_id=u["id"],
        email=p.get("email") or p.get("login") or "",
        name=name,
        department=p.get("department") or "",
        manager_external_id=p.get("managerId") or None,
        status=STATUS.get(u.get("status", ""), "active"),
    )


def app_client_id(app: dict) -> str:
    return ((app.get("credentials") or {}).get("oauthClient") or {}).get("client_id") or app.get("id", "")


def parse_app(a: dict) -> IdpApp:
    return IdpApp(
        client_id=app_client_id(a),
        name=a.get("label") or a.get("name") or a.get("id", ""),
        publisher="",
        verified=False,
        external_id=a.get("id", ""),
    )


def grant_scope(g: dict) -> str:
    """The scope name of an OAuth2ScopeConsentGrant: ``_embedded.scope.id`` (with expand=scope).

    The description documents both ``_embedded.scope.id`` and ``scopeId`` as the scope's name, but
    orgs have answered opaque ``scp…`` ids in ``scopeId``; the embedded scope is the reliable one.
    """
    embedded = ((g.get("_embedded") or {}).get("scope") or {}).get("id")
    return embedded or g.get("scopeId") or ""


def parse_consent_grants(user_id: str, grants: list[dict]) -> list[IdpGrant]:
    """Fold one user's per-scope consent grants into one grant per client, scopes in order."""
    by_client: dict[str, dict[str, Any]] = {}
    for g in grants:
        cid = g["clientId"]
        entry = by_client.setdefault(cid, {"scopes": [], "ids": [], "created": [], "name": ""})
        scope = grant_scope(g)
        if scope and scope not in entry["scopes"]:
            entry["scopes"].append(scope)
        entry["ids"].append(g.get("id"))
        if g.get("created"):
            entry["created"].append(g["created"])
        links = g.get("_links") or {}
        entry["name"] = entry["name"] or (links.get("app") or links.get("client") or {}).get("title", "")
    return [
        IdpGrant(
            external_id=f"{user_id}:{cid}",
            client_id=cid,
            app_name=e["name"] or cid,
            kind="oauth_consent",
            scopes=e["scopes"],
            user_external_id=user_id,
            created_at=parse_time(min(e["created"])) if e["created"] else None,
            extra={"user_id": user_id, "client_id": cid, "grant_ids": e["ids"]},
        )
        for cid, e in by_client.items()
    ]


def parse_refresh_token(user_id: str, client_id: str, app_name: str, t: dict) -> IdpGrant:
    return IdpGrant(
        external_id=t["id"],
        client_id=client_id,
        app_name=app_name,
        kind="refresh_token",
        scopes=list(t.get("scopes") or []),
        user_external_id=user_id,
        created_at=parse_time(t.get("created")),
        expires_at=parse_time(t.get("expiresAt")),
        last_used_at=parse_time(t.get("lastUpdated")),
        extra={"user_id": user_id, "client_id": client_id, "token_id": t["id"]},
    )


def parse_device(d: dict) -> IdpDevice:
    profile = d.get("profile") or {}
    users = (d.get("_embedded") or {}).get("users") or []
    first = users[0] if users else {}
    managed = any(u.get("managementStatus") == "MANAGED" for u in users)
    return IdpDevice(
        external_id=d.get("id", ""),
        name=profile.get("displayName") or "",
        platform=PLATFORMS.get(profile.get("platform", ""), profile.get("platform", "")),
        managed=managed,
        compliant=managed and first.get("screenLockType") not in (None, "NONE"),
        owner_external_id=(first.get("user") or {}).get("id"),
        last_seen=parse_time(d.get("lastUpdated")),
    )


def parse_log_event(e: dict) -> IdpActivity:
    etype = e.get("eventType") or ""
    actor = e.get("actor") or {}
    client = e.get("client") or {}
    dev = e.get("device") or None
    device = None
    if dev:
        platform = dev.get("os_platform") or ""
        device = IdpDevice(
            external_id=dev.get("id") or "",
            name=dev.get("name") or "",
            platform=LOG_PLATFORMS.get(platform, platform),
            managed=bool(dev.get("managed")),
            compliant=bool(dev.get("managed")) and dev.get("screen_lock_type") not in (None, "NONE"),
            owner_external_id=actor.get("id"),
        )
    target = next(
        (t for t in e.get("target") or () if t.get("type") in ("PublicClientApp", "AppInstance")),
        {},
    )
    client_id = client.get("id") or target.get("id") or ""
    return IdpActivity(
        external_id=e["uuid"],
        occurred_at=parse_time(e.get("published")),  # type: ignore[arg-type]
        action=EVENT_ACTIONS.get(etype, "token.activity" if ".token." in etype else etype),
        client_id=client_id,
        user_external_id=actor.get("id"),
        user_email=actor.get("alternateId") or "",
        device=device,
        ip=client.get("ipAddress") or "",
        user_agent=(client.get("userAgent") or {}).get("rawUserAgent") or "",
        outcome=((e.get("outcome") or {}).get("result") or "success").lower(),
        data={
            "grant_external_id": f"{actor.get('id')}:{client.get('id') or target.get('id')}",
            "event_type": etype,
            "app_name": target.get("displayName") or "",
            "client_device": client.get("device") or "",
            "scopes": (
                ((e.get("debugContext") or {}).get("debugData") or {}).get("grantedScopes") or ""
            ).split(),
        },
    )
