"""Google Workspace: Admin SDK Directory (users, per-user OAuth tokens, mobile devices) and Reports.

Auth is a service account with domain-wide delegation: an RS256 JWT-bearer assertion whose ``sub`` is
a delegated admin, exchanged at the token endpoint for a bearer token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt

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
from .http import RETRY, AdapterBase, HttpCore, TokenCache, Verdict, batched, parse_time, rfc3339

DEFAULT_BASE = "https://admin.googleapis.com"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.device.mobile.readonly",
    "https://www.googleapis.com/auth/admin.reports.audit.readonly",
)
DIRECTORY = "/admin/directory/v1"
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "backendError"}


def classify(resp: httpx.Response) -> Verdict | None:
    """Google throttles with 403 + reason rateLimitExceeded/userRateLimitExceeded, or 429/503, no hint."""
    if resp.status_code == 403:
        try:
            errors = resp.json().get("error", {}).get("errors", [])
            reasons = {e.get("reason") for e in errors if isinstance(e, dict)}
        except (ValueError, AttributeError):
            reasons = set()
        if reasons & RATE_REASONS:
            return Verdict(RETRY, None, f"rate limited ({', '.join(sorted(reasons & RATE_REASONS))})")
    if resp.status_code in (429, 503):
        return Verdict(RETRY, None, f"rate limited (HTTP {resp.status_code})")
    return None


class GoogleWorkspaceAdapter(AdapterBase):
    kind = "google_workspace"

    def __init__(self, config: IdpConfig, *, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        self.customer = self.cred("customer_id", required=False) or "my_customer"
        self.subject = self.cred("delegated_admin", "subject")
        self.client_email = self.cred("client_email")
        self._private_key = self.cred("private_key")
        self._key_id = self.cred("private_key_id", required=False)
        self.token_url = config.token_url or self.cred("token_uri", required=False) or DEFAULT_TOKEN_URL
        self.http = HttpCore(
            config,
            base_url=config.base_url or DEFAULT_BASE,
            token=TokenCache(self._fetch_token),
            classify=classify,
            transport=transport,
        )
        self._ids_by_email: dict[str, str] | None = None

    # --- auth

    def _fetch_token(self) -> tuple[str, float]:
        now = int(time.time())
        claims = {
            "iss": self.client_email,
            "sub": self.subject,
            "scope": " ".join(SCOPES),
            "aud": self.token_url,
            "iat": now,
            "exp": now + 3600,
        }
        try:
            assertion = jwt.encode(
                claims,
                self._private_key,
                algorithm="RS256",
                headers={"kid": self._key_id} if self._key_id else None,
            )
        except (ValueError, TypeError, jwt.PyJWTError):
            raise self.http.error(
                PermanentIdpError, "service-account private_key is not a usable RSA key", self.token_url
            )
        body, token = self.http.fetch_token(
            self.token_url, data={"grant_type": JWT_BEARER, "assertion": assertion}
        )
        return token, float(body.get("expires_in", 3600))

    # --- users

    def _raw_users(self) -> Iterator[list[dict]]:
        params = {"customer": self.customer, "maxResults": self.page(500), "projection": "full"}
        return self.http.token_pages(f"{DIRECTORY}/users", params, "users")

    def iter_users(self) -> Iterator[list[IdpUser]]:
        # The manager relation names an email, so resolve it after the whole directory is in hand.
        raw: list[tuple[IdpUser, str | None]] = []
        ids: dict[str, str] = {}
        for page in self._raw_users():
            for u in page:
                try:
                    uid, email = u["id"], u["primaryEmail"]
                except (KeyError, TypeError):
                    raise self.http.malformed("user without id or primaryEmail", f"{DIRECTORY}/users")
                ids[email.lower()] = uid
                raw.append(parse_user(u))
        self._ids_by_email = ids
        for user, manager in raw:
            user.manager_external_id = ids.get(manager.lower()) if manager else None
        yield from batched((user for user, _ in raw), self.config.page_size)

    def _user_ids(self) -> Iterator[str]:
        for page in self._raw_users():
            for u in page:
                if not isinstance(u, dict) or "id" not in u:
                    raise self.http.malformed("user without id", f"{DIRECTORY}/users")
                yield u["id"]

    def _email_map(self) -> dict[str, str]:
        if self._ids_by_email is None:
            self._ids_by_email = {
                u["primaryEmail"].lower(): u["id"]
                for page in self._raw_users()
                for u in page
                if "primaryEmail" in u
            }
        return self._ids_by_email

    # --- grants

    def _tokens(self, user_key: str) -> list[IdpGrant]:
        url = f"{DIRECTORY}/users/{quote(user_key, safe='')}/tokens"
        try:
            body = self.http.get_json(url)
        except NotFound:
            return []  # the user went away between the listing and now
        if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
            raise self.http.malformed("token list has no items list", url)
        out = []
        for t in body.get("items", []):
            if not isinstance(t, dict) or "clientId" not in t:
                raise self.http.malformed("token without clientId", url)
            out.append(parse_token(user_key, t))
        return out

    def iter_grants(self) -> Iterator[list[IdpGrant]]:
        # One tokens request per user, ``concurrency`` at a time, yielded in directory order.
        batch: list[IdpGrant] = []
        for grants in self.http.ordered_map(self._tokens, self._user_ids()):
            batch.extend(grants)
            if len(batch) >= self.config.page_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def iter_apps(self) -> Iterator[list[IdpApp]]:
        # Google has no listing of third-party apps: they appear through users' tokens (client id, name).
        return iter(())

    def revoke_grant(self, ref: GrantRef, *, confirm_tenant_wide: bool = False) -> RevokeOutcome:
        user_key = ref.extra.get("user_key") or ref.user_external_id
        client_id = ref.extra.get("client_id") or ref.client_id
        if not user_key or not client_id:
            raise PermanentIdpError(
                "grant has no user key or client id to revoke", source=self.http.source, endpoint="tokens"
            )
        url = f"{DIRECTORY}/users/{quote(user_key, safe='')}/tokens/{quote(client_id, safe='')}"
        resp = self.http.request("DELETE", url, allow_not_found=True)
        return RevokeOutcome.ALREADY_GONE if resp.status_code == 404 else RevokeOutcome.REVOKED

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        return ProvisionResult(
            done=False,
            detail=(
                "Google Workspace has no API to allow an app: in the Admin console open Security > Access "
                "and data control > API controls > Manage third-party app access, mark client "
                f"{request.client_id} "
                "as Trusted (or Limited) for the right organisational unit, then record the evidence."
            ),
        )

    # --- devices and activity

    def iter_devices(self) -> Iterator[list[IdpDevice]]:
        url = f"{DIRECTORY}/customer/{quote(self.customer, safe='')}/devices/mobile"
        emails = None
        for page in self.http.token_pages(
            url, {"maxResults": self.page(100), "projection": "FULL"}, "mobiledevices"
        ):
            if emails is None:
                emails = self._email_map()
            yield [parse_mobile_device(d, emails) for d in page]

    def iter_activity(self, since: datetime | None = None) -> Iterator[list[IdpActivity]]:
        url = "/admin/reports/v1/activity/users/all/applications/token"
        params: dict[str, Any] = {"maxResults": self.page(1000)}
        if since is not None:
            params["startTime"] = rfc3339(since)
        for page in self.http.token_pages(url, params, "items"):
            out = []
            for item in page:
                if parse_time((item.get("id") or {}).get("time")) is None:
                    raise self.http.malformed("activity without id.time", url)
                out.extend(parse_activity(item))
            yield out


# --- parsers: one documented object in, domain records out (tests/contracts feeds them examples
# built from the discovery documents' schemas, which have no examples of their own)


def parse_user(u: dict) -> tuple[IdpUser, str | None]:
    """Map a User; return it with its manager's email (resolved to an id once the directory is read)."""
    uid, email = u["id"], u["primaryEmail"]
    manager = next((r.get("value") for r in u.get("relations") or () if r.get("type") == "manager"), None)
    orgs = u.get("organizations") or []
    org = next((o for o in orgs if o.get("primary")), orgs[0] if orgs else {})
    dept = org.get("department") or (u.get("orgUnitPath") or "").strip("/").split("/")[-1]
    if u.get("archived") or u.get("deletionTime"):
        status = "deprovisioned"
    elif u.get("suspended"):
        status = "suspended"
    else:
        status = "active"
    name = (u.get("name") or {}).get("fullName") or ""
    return IdpUser(external_id=uid, email=email, name=name, department=dept, status=status), manager


def parse_token(user_key: str, t: dict) -> IdpGrant:
    client_id = t["clientId"]
    key = t.get("userKey") or user_key
    return IdpGrant(
        external_id=f"{key}:{client_id}",
        client_id=client_id,
        app_name=t.get("displayText") or client_id,
        kind="oauth_consent",
        scopes=list(t.get("scopes") or []),
        user_external_id=key,
        extra={
            "user_key": key,
            "client_id": client_id,
            "native_app": bool(t.get("nativeApp")),
            "anonymous": bool(t.get("anonymous")),
        },
    )


def parse_mobile_device(d: dict, emails: dict[str, str]) -> IdpDevice:
    owner = (d.get("email") or [None])[0]
    os_name = d.get("os") or ""
    dtype = d.get("type") or ""
    if "IOS" in dtype or os_name.startswith("iOS"):
        platform = "iOS"
    elif "ANDROID" in dtype or os_name.startswith("Android"):
        platform = "Android"
    else:
        platform = os_name.split(" ")[0]
    return IdpDevice(
        external_id=d.get("deviceId") or d.get("resourceId") or "",
        name=d.get("model") or "",
        platform=platform,
        managed=d.get("status") == "APPROVED",
        compliant=(d.get("deviceCompromisedStatus") or "").lower().startswith("no compromise"),
        owner_external_id=emails.get(owner.lower()) if owner else None,
        last_seen=parse_time(d.get("lastSync")),
    )


def parse_activity(item: dict) -> list[IdpActivity]:
    """Map one Activity (a token event record) to one IdpActivity per event in it."""
    ident = item.get("id") or {}
    occurred = parse_time(ident.get("time"))
    actor = item.get("actor") or {}
    out = []
    for n, ev in enumerate(item.get("events") or ()):
        params = {p.get("name"): p.get("value", p.get("multiValue")) for p in ev.get("parameters") or ()}
        out.append(
            IdpActivity(
                external_id=f"{ident.get('time')}:{ident.get('uniqueQualifier')}:{n}",
                occurred_at=occurred,  # type: ignore[arg-type]
                action=f"token.{ev.get('name', 'event')}",
                client_id=params.get("client_id") or "",
                user_external_id=actor.get("profileId"),
                user_email=actor.get("email") or "",
                ip=item.get("ipAddress") or "",
                data={
                    "grant_external_id": f"{actor.get('profileId')}:{params.get('client_id')}",
                    "app_name": params.get("app_name") or "",
                    "scopes": params.get("scope") or [],
                    "client_type": params.get("client_type") or "",
                },
            )
        )
    return out
