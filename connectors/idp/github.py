"""GitHub (organisation): fine-grained PATs and pending PAT requests, SAML-authorised classic PATs,
GitHub App installations, members and the org audit log.

Auth is a GitHub App: an RS256 JWT (``iss`` = app id) buys a one-hour installation token.
GitHub has two rate limits: the primary one (``x-ratelimit-remaining: 0``, wait until
``x-ratelimit-reset``) and secondary ones (``retry-after``, message "secondary rate limit").
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from .base import (
    GrantRef,
    IdpAccessRequest,
    IdpActivity,
    IdpApp,
    IdpConfig,
    IdpGrant,
    IdpUser,
    NotFound,
    PermanentIdpError,
    ProvisionRequest,
    ProvisionResult,
    RevokeOutcome,
)
from .http import RETRY, AdapterBase, HttpCore, TokenCache, Verdict, batched, parse_time, retry_after_seconds

DEFAULT_BASE = "https://api.github.com"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def classify(resp: httpx.Response) -> Verdict | None:
    if resp.status_code not in (403, 429):
        return None
    retry_after = retry_after_seconds(resp.headers.get("retry-after"))
    if retry_after is not None:
        return Verdict(RETRY, retry_after, "secondary rate limit")
    if resp.headers.get("x-ratelimit-remaining") == "0":
        reset = resp.headers.get("x-ratelimit-reset", "")
        wait = max(0.0, int(reset) - time.time()) if reset.isdigit() else None
        return Verdict(RETRY, wait, "primary rate limit exhausted")
    try:
        message = str(resp.json().get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    if "secondary rate limit" in message.lower():
        return Verdict(RETRY, None, "secondary rate limit")
    if resp.status_code == 429:
        return Verdict(RETRY, None, "rate limited (HTTP 429)")
    return None


def pat_client_id(token_name: str) -> str:
    """A stable client id for a PAT, from its name: PATs have no OAuth client, only a user-chosen name."""
    slug = re.sub(r"[^a-z0-9]+", "-", (token_name or "unnamed").lower()).strip("-") or "unnamed"
    return f"github-pat:{slug}"


def _perm_scopes(perms: dict | None) -> list[str]:
    out = []
    for group in ("repository", "organization", "other"):
        for name, level in sorted(((perms or {}).get(group) or {}).items()):
            out.append(f"{name}:{level}")
    return out


class GitHubAdapter(AdapterBase):
    kind = "github"

    def __init__(self, config: IdpConfig, *, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        self.app_id = str(self.cred("app_id"))
        self.installation_id = str(self.cred("installation_id"))
        self.org = self.cred("org", "organization")
        self._private_key = self.cred("private_key")
        self.http = HttpCore(
            config,
            base_url=config.base_url or DEFAULT_BASE,
            token=TokenCache(self._fetch_token, margin=300),
            headers=HEADERS,
            classify=classify,
            transport=transport,
        )
        self._logins_lock = threading.Lock()
        self._ids_by_login: dict[str, str] | None = None
        self._pats_by_token: dict[int, int] | None = None

    @property
    def _org(self) -> str:
        return quote(self.org, safe="")

    def _fetch_token(self) -> tuple[str, float]:
        now = int(time.time())
        try:
            app_jwt = jwt.encode(
                {"iat": now - 60, "exp": now + 540, "iss": self.app_id}, self._private_key, "RS256"
            )
        except (ValueError, TypeError, jwt.PyJWTError):
            raise self.http.error(PermanentIdpError, "GitHub App private_key is not a usable RSA key", "/app")
        url = f"/app/installations/{quote(self.installation_id, safe='')}/access_tokens"
        body, token = self.http.fetch_token(
            url,
            field="token",
            what="an installation token",
            headers={"Authorization": f"Bearer {app_jwt}"},
        )
        expires = parse_time(body.get("expires_at"))
        return token, (expires.timestamp() - time.time()) if expires else 3600.0

    # --- users

    def _members(self) -> Iterator[list[dict]]:
        return self.http.link_pages(f"/orgs/{self._org}/members", {"per_page": self.page(100)})

    def _user(self, login: str) -> dict | None:
        try:
            return self.http.get_json(f"/users/{quote(login, safe='')}")
        except NotFound:
            return None

    def iter_users(self) -> Iterator[list[IdpUser]]:
        ids: dict[str, str] = {}

        def members() -> Iterator[tuple[str, str]]:
            for page in self._members():
                for m in page:
                    if not isinstance(m, dict) or "login" not in m or "id" not in m:
                        raise self.http.malformed("member without login/id", f"/orgs/{self.org}/members")
                    ids[m["login"].lower()] = str(m["id"])
                    yield m["login"], str(m["id"])

        def profile(member: tuple[str, str]) -> IdpUser:
            login, uid = member
            return parse_user(login, uid, self._user(login) or {})

        # members carry no email or name: fetch each profile, ``concurrency`` at a time, in order
        yield from batched(self.http.ordered_map(profile, members()), self.config.page_size)
        with self._logins_lock:
            self._ids_by_login = ids

    def _login_map(self) -> dict[str, str]:
        with self._logins_lock:
            if self._ids_by_login is None:
                self._ids_by_login = {
                    m["login"].lower(): str(m["id"]) for page in self._members() for m in page if "login" in m
                }
            return self._ids_by_login

    # --- apps

    def iter_apps(self) -> Iterator[list[IdpApp]]:
        url = f"/orgs/{self._org}/installations"
        for page in self.http.link_pages(
            url, {"per_page": self.page(100)}, items=lambda body: (body or {}).get("installations")
        ):
            yield [parse_installation(i) for i in page]

    # --- grants

    def iter_grants(self) -> Iterator[list[IdpGrant]]:
        url = f"/orgs/{self._org}/personal-access-tokens"
        for page in self.http.link_pages(url, {"per_page": self.page(100)}):
            out = []
            for p in page:
                if not isinstance(p, dict) or "id" not in p or not isinstance(p.get("owner"), dict):
                    raise self.http.malformed("PAT without id/owner", url)
                out.append(parse_pat(p))
            yield out
        # classic PATs authorised for SAML single sign-on
        url = f"/orgs/{self._org}/credential-authorizations"
        logins = None
        for page in self.http.link_pages(url, {"per_page": self.page(100)}):
            if logins is None:
                logins = self._login_map()
            out = []
            for c in page:
                if "credential_id" not in c:
                    raise self.http.malformed("credential authorization without credential_id", url)
                grant = parse_credential_authorization(c, logins)
                if grant is not None:
                    out.append(grant)
            if out:
                yield out

    def iter_pat_requests(self) -> Iterator[list[IdpAccessRequest]]:
        """Yield pending fine-grained PAT requests waiting for an org admin's approval."""
        url = f"/orgs/{self._org}/personal-access-token-requests"
        for page in self.http.link_pages(url, {"per_page": self.page(100)}):
            out = []
            for r in page:
                if "id" not in r:
                    raise self.http.malformed("PAT request without id", url)
                out.append(parse_pat_request(r))
            yield out

    def revoke_grant(self, ref: GrantRef, *, confirm_tenant_wide: bool = False) -> RevokeOutcome:
        kind, _, num = ref.external_id.partition(":")
        if ref.extra.get("type") == "classic" or kind == "cred":
            cred = ref.extra.get("credential_id") or num
            url = f"/orgs/{self._org}/credential-authorizations/{quote(str(cred), safe='')}"
            resp = self.http.request("DELETE", url, allow_not_found=True)
        else:
            pat = ref.extra.get("pat_id") or num
            url = f"/orgs/{self._org}/personal-access-tokens/{quote(str(pat), safe='')}"
            resp = self.http.request("POST", url, json={"action": "revoke"}, allow_not_found=True)
        return RevokeOutcome.ALREADY_GONE if resp.status_code == 404 else RevokeOutcome.REVOKED

    def review_pat_request(self, request_id: str | int, *, approve: bool, reason: str = "") -> None:
        """Approve or deny one pending fine-grained PAT request."""
        url = f"/orgs/{self._org}/personal-access-token-requests/{quote(str(request_id), safe='')}"
        body: dict[str, Any] = {"action": "approve" if approve else "deny"}
        if reason:
            body["reason"] = reason
        self.http.request("POST", url, json=body)

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """Approve the pending fine-grained PAT request named in ``extra["request_id"]``."""
        request_id = request.extra.get("request_id") or request.extra.get("pat_request_id")
        if not request_id:
            raise PermanentIdpError(
                "GitHub provisioning approves a pending PAT request: give extra['request_id']",
                source=self.http.source,
                endpoint=f"/orgs/{self.org}/personal-access-token-requests",
            )
        try:
            self.review_pat_request(request_id, approve=True, reason=request.extra.get("reason", ""))
        except NotFound:
            raise self.http.error(
                NotFound,
                "the PAT request is no longer pending (approved, denied or withdrawn)",
                f"/orgs/{self.org}/personal-access-token-requests/{request_id}",
                404,
            )
        return ProvisionResult(done=True, detail=f"PAT request {request_id} approved")

    # --- activity

    def _pat_ids_by_token(self) -> dict[int, int]:
        """Map token_id -> pat_id from the PAT listing: audit events name the token, not the PAT grant."""
        with self._logins_lock:
            if self._pats_by_token is None:
                url = f"/orgs/{self._org}/personal-access-tokens"
                self._pats_by_token = {
                    p["token_id"]: p["id"]
                    for page in self.http.link_pages(url, {"per_page": self.page(100)})
                    for p in page
                    if isinstance(p, dict) and "token_id" in p and "id" in p
                }
            return self._pats_by_token

    def iter_activity(self, since: datetime | None = None) -> Iterator[list[IdpActivity]]:
        params: dict[str, Any] = {"per_page": self.page(100), "include": "all"}
        if since is not None:
            params["phrase"] = f"created:>={since.strftime('%Y-%m-%dT%H:%M:%S')}"
        url = f"/orgs/{self._org}/audit-log"
        for page in self.http.link_pages(url, params):
            out = []
            for e in page:
                if parse_time(e.get("@timestamp") or e.get("created_at")) is None:
                    raise self.http.malformed("audit event without @timestamp", url)
                pats = self._pat_ids_by_token() if e.get("token_id") is not None else {}
                out.append(parse_audit_event(e, pats))
            yield out


# --- parsers: one documented object in, domain records out (tests/contracts feeds them the
# descriptions' own examples)


def parse_user(login: str, uid: str, profile: dict) -> IdpUser:
    """Map a member (login, id) and its public-user/private-user profile to an IdpUser."""
    return IdpUser(external_id=uid, email=profile.get("email") or "", name=profile.get("name") or login)


def parse_installation(i: dict) -> IdpApp:
    return IdpApp(
        client_id=f"github-app:{i.get('app_slug')}",
        name=i.get("app_slug") or str(i.get("app_id")),
        publisher="",
        verified=False,
        external_id=str(i.get("id")),
        kind="plugin",
    )


def parse_pat(p: dict) -> IdpGrant:
    """Map an organization-programmatic-access-grant (a fine-grained PAT) to a grant."""
    owner = p["owner"]
    name = p.get("token_name") or "fine-grained PAT"
    return IdpGrant(
        external_id=f"pat:{p['id']}",
        client_id=pat_client_id(name),
        app_name=name,
        kind="personal_access_token",
        scopes=_perm_scopes(p.get("permissions")),
        user_external_id=str(owner.get("id")),
        created_at=parse_time(p.get("access_granted_at")),
        expires_at=parse_time(p.get("token_expires_at")),
        last_used_at=parse_time(p.get("token_last_used_at")),
        extra={
            "type": "fine_grained",
            "pat_id": p["id"],
            "token_id": p.get("token_id"),
            "owner_login": owner.get("login"),
            "repository_selection": p.get("repository_selection"),
            "token_expired": bool(p.get("token_expired")),
        },
    )


def parse_credential_authorization(c: dict, logins: dict[str, str]) -> IdpGrant | None:
    """Map a SAML SSO credential authorization to a grant; None for anything but a classic PAT."""
    if c.get("credential_type") != "personal access token":
        return None
    name = c.get("authorized_credential_title") or c.get("authorized_credential_note") or "classic PAT"
    return IdpGrant(
        external_id=f"cred:{c['credential_id']}",
        client_id=pat_client_id(name),
        app_name=name,
        kind="personal_access_token",
        scopes=list(c.get("scopes") or []),
        user_external_id=logins.get((c.get("login") or "").lower()),
        created_at=parse_time(c.get("credential_authorized_at")),
        expires_at=parse_time(c.get("authorized_credential_expires_at")),
        last_used_at=parse_time(c.get("credential_accessed_at")),
        token_hint=c.get("token_last_eight") or "",
        extra={"type": "classic", "credential_id": c["credential_id"], "owner_login": c.get("login")},
    )


def parse_pat_request(r: dict) -> IdpAccessRequest:
    owner = r.get("owner") or {}
    name = r.get("token_name") or "fine-grained PAT"
    return IdpAccessRequest(
        external_id=str(r["id"]),
        client_id=pat_client_id(name),
        app_name=name,
        scopes=_perm_scopes(r.get("permissions")),
        user_external_id=str(owner.get("id")) if owner.get("id") is not None else None,
        reason=r.get("reason") or "",
        created_at=parse_time(r.get("created_at")),
        expires_at=parse_time(r.get("token_expires_at")),
        extra={"request_id": r["id"], "owner_login": owner.get("login"), "token_id": r.get("token_id")},
    )


AUDIT_KEYS = ("programmatic_access_type", "token_id", "hashed_token", "token_scopes", "actor")


def parse_audit_event(e: dict, pat_ids_by_token: dict[int, int]) -> IdpActivity:
    """Map an audit-log-event; ``pat_ids_by_token`` links a token_id to its fine-grained PAT grant."""
    data: dict[str, Any] = {k: e[k] for k in AUDIT_KEYS if k in e}
    pat_id = pat_ids_by_token.get(e["token_id"]) if e.get("token_id") is not None else None
    if pat_id is not None:
        data["grant_external_id"] = f"pat:{pat_id}"
    return IdpActivity(
        external_id=str(e.get("_document_id") or f"{e.get('@timestamp')}:{e.get('action')}"),
        occurred_at=parse_time(e.get("@timestamp") or e.get("created_at")),  # type: ignore[arg-type]
        action=e.get("action") or "",
        user_external_id=str(e["actor_id"]) if e.get("actor_id") is not None else None,
        ip=e.get("actor_ip") or "",
        data=data,
    )
