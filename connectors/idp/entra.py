"""Microsoft Entra ID through Microsoft Graph v1.0: users, service principals, delegated permission
grants (Principal and AllPrincipals), application-permission assignments, devices and sign-ins.

Auth is the client-credentials flow against ``login.microsoftonline.com/{tenant}``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import (
    ConfirmationRequired,
    GrantRef,
    IdpActivity,
    IdpApp,
    IdpConfig,
    IdpDevice,
    IdpGrant,
    IdpUser,
    PermanentIdpError,
    ProvisionRequest,
    ProvisionResult,
    RevokeOutcome,
)
from .http import AdapterBase, HttpCore, TokenCache, parse_time, rfc3339

DEFAULT_BASE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"  # owner of Microsoft's first-party apps
PAGE = 999
USER_FIELDS = (
    "id,displayName,userPrincipalName,mail,accountEnabled,department,employeeLeaveDateTime,"
    "onPremisesImmutableId"
)


def _platform(os_name: str) -> str:
    low = (os_name or "").lower()
    for key, name in (
        ("mac", "macOS"),
        ("windows", "Windows"),
        ("iphone", "iOS"),
        ("ios", "iOS"),
        ("ipad", "iOS"),
        ("android", "Android"),
        ("linux", "Linux"),
    ):
        if key in low:
            return name
    return os_name or ""


class EntraAdapter(AdapterBase):
    kind = "microsoft_entra"

    def __init__(self, config: IdpConfig, *, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        self.tenant_id = self.cred("tenant_id")
        self.client_id = self.cred("client_id")
        self._secret = self.cred("client_secret")
        self.token_url = (
            config.token_url or f"https://login.microsoftonline.com/{quote(self.tenant_id)}/oauth2/v2.0/token"
        )
        self.http = HttpCore(
            config,
            base_url=config.base_url or DEFAULT_BASE,
            token=TokenCache(self._fetch_token),
            transport=transport,
        )
        self._sp_lock = threading.Lock()
        self._sps: dict[str, dict] | None = None  # service-principal object id -> listing entry

    def _fetch_token(self) -> tuple[str, float]:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": "https://graph.microsoft.com/.default",
        }
        body, token = self.http.fetch_token(self.token_url, data=data)
        return token, float(body.get("expires_in", 3600))

    # --- users

    def iter_users(self) -> Iterator[list[IdpUser]]:
        params = {
            "$top": self.page(PAGE),
            "$select": USER_FIELDS,
            "$expand": "manager($select=id)",
        }
        now = datetime.now(UTC)
        for page in self.http.odata_pages("/v1.0/users", params):
            out = []
            for u in page:
                if not isinstance(u, dict) or "id" not in u:
                    raise self.http.malformed("user without id", "/v1.0/users")
                out.append(parse_user(u, now))
            yield out

    # --- apps

    def _service_principals(self) -> dict[str, dict]:
        with self._sp_lock:
            if self._sps is None:
                sps: dict[str, dict] = {}
                params = {"$top": self.page(PAGE)}
                for page in self.http.odata_pages("/v1.0/servicePrincipals", params):
                    for sp in page:
                        if not isinstance(sp, dict) or "id" not in sp or "appId" not in sp:
                            raise self.http.malformed(
                                "service principal without id/appId", "/v1.0/servicePrincipals"
                            )
                        sps[sp["id"]] = sp
                self._sps = sps
            return self._sps

    def _sp_by_app_id(self, app_id: str) -> dict | None:
        return next((sp for sp in self._service_principals().values() if sp.get("appId") == app_id), None)

    def iter_apps(self) -> Iterator[list[IdpApp]]:
        apps = []
        for sp in self._service_principals().values():
            if sp.get("appOwnerOrganizationId") == MICROSOFT_TENANT:
                continue  # Microsoft's own first-party apps (Graph, Office) are resources, not connectors
            apps.append(parse_service_principal(sp))
        for i in range(0, len(apps), self.config.page_size):
            yield apps[i : i + self.config.page_size]

    # --- grants

    def iter_grants(self) -> Iterator[list[IdpGrant]]:
        sps = self._service_principals()
        url = "/v1.0/oauth2PermissionGrants"
        for page in self.http.odata_pages(url, {"$top": self.page(PAGE)}):
            out = []
            for g in page:
                if not isinstance(g, dict) or not {"id", "clientId", "consentType"} <= g.keys():
                    raise self.http.malformed("permission grant without id/clientId/consentType", url)
                out.append(parse_permission_grant(g, sps))
            yield out
        # Application permissions: app roles of resource APIs (e.g. Graph's Files.Read.All) held by apps.
        for resource in [sp for sp in sps.values() if sp.get("appRoles")]:
            roles = {r.get("id"): r.get("value") for r in resource["appRoles"]}
            url = f"/v1.0/servicePrincipals/{resource['id']}/appRoleAssignedTo"
            for page in self.http.odata_pages(url, {"$top": self.page(PAGE)}):
                out = []
                for a in page:
                    grant = parse_app_role_assignment(a, resource, roles, sps)
                    if grant is not None:
                        out.append(grant)
                if out:
                    yield out

    def revoke_grant(self, ref: GrantRef, *, confirm_tenant_wide: bool = False) -> RevokeOutcome:
        app_role = ref.extra.get("type") == "appRoleAssignment"
        if (app_role or ref.consent_type == "all_principals") and not confirm_tenant_wide:
            raise ConfirmationRequired(
                "this consent covers the whole tenant; confirm the tenant-wide revocation explicitly",
                source=self.http.source,
                endpoint="/v1.0/servicePrincipals/appRoleAssignedTo"
                if app_role
                else "/v1.0/oauth2PermissionGrants",
            )
        if app_role:
            resource = ref.extra.get("resource_id")
            assignment = quote(ref.external_id, safe="")
            url = f"/v1.0/servicePrincipals/{quote(resource)}/appRoleAssignedTo/{assignment}"
        else:
            gid = ref.extra.get("grant_id") or ref.external_id
            url = f"/v1.0/oauth2PermissionGrants/{quote(gid, safe='')}"
        resp = self.http.request("DELETE", url, allow_not_found=True)
        return RevokeOutcome.ALREADY_GONE if resp.status_code == 404 else RevokeOutcome.REVOKED

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """Grant a delegated consent (oauth2PermissionGrant) for one user, or tenant-wide when confirmed."""
        sp = self._sp_by_app_id(request.client_id) or self._service_principals().get(request.client_id)
        if sp is None:
            raise PermanentIdpError(
                "the app has no service principal in this tenant; an admin must add it first",
                source=self.http.source,
                endpoint="/v1.0/servicePrincipals",
            )
        resource = self._sp_by_app_id(request.extra.get("resource_app_id", GRAPH_APP_ID))
        if resource is None:
            raise PermanentIdpError(
                "resource API not found in tenant",
                source=self.http.source,
                endpoint="/v1.0/servicePrincipals",
            )
        body: dict[str, Any] = {
            "clientId": sp["id"],
            "resourceId": resource["id"],
            "scope": " ".join(request.scopes),
        }
        if request.user_external_id:
            body.update(consentType="Principal", principalId=request.user_external_id)
        elif request.extra.get("confirm_tenant_wide"):
            body["consentType"] = "AllPrincipals"
        else:
            raise ConfirmationRequired(
                "a consent without a user covers the whole tenant; confirm it explicitly",
                source=self.http.source,
                endpoint="/v1.0/oauth2PermissionGrants",
            )
        try:
            resp = self.http.request("POST", "/v1.0/oauth2PermissionGrants", json=body)
        except PermanentIdpError as exc:
            if exc.status == 409:
                return ProvisionResult(done=True, detail="the delegated consent already exists")
            raise
        g = self.http.json_of(resp)
        if not isinstance(g, dict) or "id" not in g:
            raise self.http.malformed(
                "created grant has no id", "/v1.0/oauth2PermissionGrants", resp.status_code
            )
        all_principals = g.get("consentType") == "AllPrincipals"
        grant = IdpGrant(
            external_id=g["id"],
            client_id=sp["appId"],
            app_name=sp.get("displayName") or sp["appId"],
            kind="oauth_consent",
            scopes=(g.get("scope") or "").split(),
            user_external_id=None if all_principals else g.get("principalId"),
            consent_type="all_principals" if all_principals else "principal",
            extra={
                "type": "oauth2PermissionGrant",
                "grant_id": g["id"],
                "client_sp_id": sp["id"],
                "resource_id": resource["id"],
            },
        )
        return ProvisionResult(done=True, detail=f"delegated consent {g['id']} created", grant=grant)

    # --- devices and activity

    def iter_devices(self) -> Iterator[list[IdpDevice]]:
        params = {"$top": self.page(PAGE), "$expand": "registeredOwners($select=id)"}
        for page in self.http.odata_pages("/v1.0/devices", params):
            yield [parse_device(d) for d in page]

    def iter_activity(self, since: datetime | None = None) -> Iterator[list[IdpActivity]]:
        params: dict[str, Any] = {"$top": self.page(1000)}
        if since is not None:
            params["$filter"] = f"createdDateTime ge {rfc3339(since)}"
        url = "/v1.0/auditLogs/signIns"
        for page in self.http.odata_pages(url, params):
            out = []
            for s in page:
                occurred = parse_time(s.get("createdDateTime"))
                if occurred is None or "id" not in s:
                    raise self.http.malformed("sign-in without id or createdDateTime", url)
                out.append(parse_sign_in(s))
            yield out


# --- parsers: one documented object in, domain records out (tests/contracts feeds them examples
# built from Graph's CSDL, which has no examples of its own)


def parse_user(u: dict, now: datetime) -> IdpUser:
    if u.get("accountEnabled", True):
        status = "active"
    else:
        leave = parse_time(u.get("employeeLeaveDateTime"))
        status = "deprovisioned" if leave and leave <= now else "suspended"
    return IdpUser(
        external_id=u["id"],
        email=u.get("mail") or u.get("userPrincipalName") or "",
        name=u.get("displayName") or "",
        department=u.get("department") or "",
        manager_external_id=(u.get("manager") or {}).get("id"),
        status=status,
        # the on-premises AD objectGUID: the same in every source synced from that AD
        link_key=f"ad-guid:{u['onPremisesImmutableId']}" if u.get("onPremisesImmutableId") else "",
    )


def parse_service_principal(sp: dict) -> IdpApp:
    vp = sp.get("verifiedPublisher") or {}
    return IdpApp(
        client_id=sp["appId"],
        name=sp.get("displayName") or sp["appId"],
        publisher=vp.get("displayName") or "",
        verified=bool(vp.get("verifiedPublisherId")),
        external_id=sp["id"],
    )


def parse_permission_grant(g: dict, sps: dict[str, dict]) -> IdpGrant:
    """Map an oAuth2PermissionGrant; ``sps`` (service principals by object id) names its client."""
    gid, client_sp = g["id"], g["clientId"]
    sp = sps.get(client_sp) or {}
    all_principals = g["consentType"] == "AllPrincipals"
    return IdpGrant(
        external_id=gid,
        client_id=sp.get("appId") or client_sp,
        app_name=sp.get("displayName") or client_sp,
        kind="oauth_consent",
        scopes=(g.get("scope") or "").split(),
        user_external_id=None if all_principals else g.get("principalId"),
        consent_type="all_principals" if all_principals else "principal",
        extra={
            "type": "oauth2PermissionGrant",
            "grant_id": gid,
            "client_sp_id": client_sp,
            "resource_id": g.get("resourceId"),
        },
    )


def parse_app_role_assignment(a: dict, resource: dict, roles: dict, sps: dict[str, dict]) -> IdpGrant | None:
    """Map an appRoleAssignment held by an app (an application permission); None for users and groups."""
    if a.get("principalType") != "ServicePrincipal":
        return None
    sp = sps.get(a.get("principalId")) or {}
    return IdpGrant(
        external_id=a["id"],
        client_id=sp.get("appId") or a.get("principalId") or "",
        app_name=sp.get("displayName") or a.get("principalDisplayName") or "",
        kind="oauth_consent",
        scopes=[roles.get(a.get("appRoleId")) or a.get("appRoleId") or ""],
        consent_type="all_principals",
        created_at=parse_time(a.get("createdDateTime")),
        extra={
            "type": "appRoleAssignment",
            "assignment_id": a["id"],
            "resource_id": resource["id"],
            "resource": resource.get("displayName") or "",
            "client_sp_id": a.get("principalId"),
        },
    )


def parse_device(d: dict) -> IdpDevice:
    owners = d.get("registeredOwners") or []
    return IdpDevice(
        external_id=d.get("deviceId") or d.get("id") or "",
        name=d.get("displayName") or "",
        platform=_platform(d.get("operatingSystem") or ""),
        managed=bool(d.get("isManaged")),
        compliant=bool(d.get("isCompliant")),
        owner_external_id=owners[0].get("id") if owners else None,
        last_seen=parse_time(d.get("approximateLastSignInDateTime")),
    )


def parse_sign_in(s: dict) -> IdpActivity:
    dd = s.get("deviceDetail") or {}
    device = None
    if dd.get("deviceId") or dd.get("displayName"):
        device = IdpDevice(
            external_id=dd.get("deviceId") or "",
            name=dd.get("displayName") or "",
            platform=_platform(dd.get("operatingSystem") or ""),
            managed=bool(dd.get("isManaged")),
            compliant=bool(dd.get("isCompliant")),
            owner_external_id=s.get("userId"),
        )
    status = s.get("status") or {}
    return IdpActivity(
        external_id=s["id"],
        occurred_at=parse_time(s.get("createdDateTime")),  # type: ignore[arg-type]
        action="signin",
        client_id=s.get("appId") or "",
        user_external_id=s.get("userId"),
        user_email=s.get("userPrincipalName") or "",
        device=device,
        ip=s.get("ipAddress") or "",
        user_agent=dd.get("browser") or "",
        outcome="success" if not status.get("errorCode") else "failure",
        data={
            "app_name": s.get("appDisplayName") or "",
            "resource": s.get("resourceDisplayName") or "",
            "client_app": s.get("clientAppUsed") or "",
        },
    )
