"""Microsoft Entra ID: the client-credentials token endpoint and the Graph v1.0 endpoints Lanyard uses."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from . import catalog, creds
from .catalog import APPS, GRAPH_APP_ID, GRAPH_APP_ROLES
from .tenant import ACTIVE, DEPROVISIONED, F_ALL, NO_PERSON, iso
from .wire import ApiError, Req, Resp, bearer, bounded, decode_cursor, encode_cursor, next_url, scan

if TYPE_CHECKING:
    from .server import Sim

CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    409: "Request_MultipleObjectsWithSameKeyValue",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
CTX = "https://graph.microsoft.com/v1.0/$metadata#"


def error(status: int, code: str, message: str) -> Resp:
    code = (
        CODES.get(status, code) if code in ("unauthorized", "forbidden", "backendError", "internal") else code
    )
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": "00000000-0000-0000-0000-000000000000"}
    return Resp(status, {"error": {"code": code, "message": message, "innerError": inner}})


def rate_limit(fault: Any) -> Resp:
    r = error(429, "TooManyRequests", "Too many requests; the request has been throttled.")
    r.headers["Retry-After"] = str(int(fault.retry_after if fault.retry_after is not None else 1))
    return r


def _token(sim: Sim, req: Req, tenant: str) -> Resp:
    seed = sim.params["seed"]
    form = req.form()
    if tenant != creds.entra_tenant_id(seed):
        return Resp(
            400,
            {"error": "invalid_request", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."},
        )
    if form.get("grant_type") != "client_credentials":
        return Resp(
            400,
            {
                "error": "unsupported_grant_type",
                "error_description": "AADSTS70003: The app requested an unsupported grant type.",
            },
        )
    client_id, secret = creds.entra_client(seed)
    if form.get("client_id") != client_id:
        return Resp(
            400,
            {
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: Application with "
                "identifier was not found in the directory.",
            },
        )
    if not hmac.compare_digest(form.get("client_secret", ""), secret):
        return Resp(
            401,
            {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret "
                "provided. Ensure the secret being sent in the request is the client secret value.",
            },
        )
    if not form.get("scope", "").endswith("/.default"):
        return Resp(
            400,
            {
                "error": "invalid_scope",
                "error_description": "AADSTS1002012: The provided value for "
                "scope is not valid. Client credential flows must have a scope value with /.default.",
            },
        )
    tok = sim.tenant.issue_token("entra", "eyJ0eXAiOiJKV1QiLCJzaW0iOjF9.")
    return Resp(
        200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}
    )


def handle(sim: Sim, req: Req) -> Resp:
    parts = req.path.strip("/").split("/")
    if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and req.method == "POST":
        return _token(sim, req, parts[0])
    if not sim.tenant.token_valid("entra", bearer(req.headers)):
        msg = (
            "Access token is empty."
            if not bearer(req.headers)
            else "Lifetime validation failed, the token is expired."
        )
        return error(401, "InvalidAuthenticationToken", msg)
    if not parts or parts[0] != "v1.0":
        return error(400, "BadRequest", "Invalid version.")
    rest, m = parts[1:], req.method
    if rest == ["users"] and m == "GET":
        return _users(sim, req)
    if rest == ["servicePrincipals"] and m == "GET":
        return _service_principals(sim, req)
    if rest == ["oauth2PermissionGrants"]:
        if m == "GET":
            return _grants(sim, req)
        if m == "POST":
            return _create_grant(sim, req)
    if len(rest) == 2 and rest[0] == "oauth2PermissionGrants":
        return _grant_item(sim, req, rest[1])
    if (
        len(rest) >= 3
        and rest[0] == "servicePrincipals"
        and rest[2] in ("appRoleAssignedTo", "appRoleAssignments")
    ):
        return _app_roles(sim, req, rest[1], rest[2], rest[3] if len(rest) > 3 else None)
    if rest == ["devices"] and m == "GET":
        return _devices(sim, req)
    if rest == ["auditLogs", "signIns"] and m == "GET":
        return _sign_ins(sim, req)
    return error(400, "BadRequest", f"Resource not found for the segment '{rest[-1] if rest else ''}'.")


def _page(req: Req, default: int = 100, maximum: int = 999) -> tuple[int, int, int]:
    cur = decode_cursor(req.query.get("$skiptoken"))
    if cur is None:
        raise ApiError(error(400, "BadRequest", "Invalid $skiptoken."))
    return cur[0], cur[1], bounded(req.query.get("$top"), default, maximum)


def _listing(req: Req, entity: str, items: list, page: int, nxt: int | None) -> Resp:
    body: dict[str, Any] = {"@odata.context": CTX + entity, "value": items}
    if nxt is not None:
        body["@odata.nextLink"] = next_url(
            req.base, req.path, req.query, **{"$skiptoken": encode_cursor(page + 1, nxt)}
        )
    return Resp(200, body)


def _user(sim: Sim, i: int, expand_manager: bool) -> dict:
    t = sim.tenant
    u: dict[str, Any] = {
        "id": t.entra_ids[i],
        "displayName": t.name(i),
        "givenName": t.first[i],
        "surname": t.last[i],
        "userPrincipalName": t.email[i],
        "mail": t.email[i],
        "jobTitle": t.title[i],
        "department": t.dept[i],
        "accountEnabled": t.status[i] == ACTIVE,
        "createdDateTime": iso(t.created[i]),
        "employeeLeaveDateTime": iso(t.now - 86400 * 3) if t.status[i] == DEPROVISIONED else None,
    }
    if expand_manager and t.manager[i] >= 0:
        u["manager"] = {"@odata.type": "#microsoft.graph.user", "id": t.entra_ids[t.manager[i]]}
    return u


def _users(sim: Sim, req: Req) -> Resp:
    page, start, size = _page(req)
    t = sim.tenant
    expand = "manager" in req.query.get("$expand", "")
    end = min(t.n, start + size)
    return _listing(
        req, "users", [_user(sim, i, expand) for i in range(start, end)], page, end if end < t.n else None
    )


def _sp(sim: Sim, a: int) -> dict:
    t = sim.tenant
    app = APPS[a]
    vp = {
        "displayName": app.vendor,
        "verifiedPublisherId": str(5000000 + a),
        "addedDateTime": "2023-03-01T00:00:00Z",
    }
    return {
        "id": t.entra_sp_ids[a],
        "appId": t.entra_app_ids[a],
        "displayName": app.name,
        "appDisplayName": app.name,
        "appOwnerOrganizationId": creds.entra_tenant_id(900 + a),
        "servicePrincipalType": "Application",
        "accountEnabled": True,
        "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
        "verifiedPublisher": vp
        if app.verified
        else {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "appRoles": [],
    }


def _graph_sp(sim: Sim) -> dict:
    return {
        "id": sim.tenant.graph_sp_id,
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "appDisplayName": "Microsoft Graph",
        "appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
        "servicePrincipalType": "Application",
        "accountEnabled": True,
        "tags": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "appRoles": [
            {
                "id": rid,
                "value": value,
                "displayName": value,
                "allowedMemberTypes": ["Application"],
                "isEnabled": True,
            }
            for rid, value in GRAPH_APP_ROLES
        ],
    }


def _service_principals(sim: Sim, req: Req) -> Resp:
    page, start, size = _page(req)
    apps = sim.tenant.provider_apps["entra"]
    everything = [None, *apps]  # None: Microsoft Graph itself
    chunk = everything[start : start + size]
    items = [_graph_sp(sim) if a is None else _sp(sim, a) for a in chunk]
    end = start + len(chunk)
    return _listing(req, "servicePrincipals", items, page, end if end < len(everything) else None)


def _grant_json(sim: Sim, pos: int) -> dict:
    t = sim.tenant
    st = t.store("entra")
    all_principals = bool(st.flags[pos] & F_ALL)
    return {
        "id": t.entra_grant_id(pos),
        "clientId": t.entra_sp_ids[st.app[pos]],
        "consentType": "AllPrincipals" if all_principals else "Principal",
        "principalId": None if all_principals else t.entra_ids[st.person[pos]],
        "resourceId": t.graph_sp_id,
        "scope": " ".join(t.scopes("entra", pos)),
    }


def _grants(sim: Sim, req: Req) -> Resp:
    page, start, size = _page(req)
    st = sim.tenant.store("entra")
    alive = st.alive
    positions, nxt = scan(start, size, len(st), alive.__getitem__)
    return _listing(req, "oauth2PermissionGrants", [_grant_json(sim, p) for p in positions], page, nxt)


def _grant_item(sim: Sim, req: Req, gid: str) -> Resp:
    t = sim.tenant
    missing = error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{gid}' does not exist or one of its queried reference-property objects are not present.",
    )
    with t.lock:
        pos = t.entra_grant_pos(gid)
        alive = pos is not None and t.store("entra").is_alive(pos)
        if req.method == "GET":
            return Resp(200, _grant_json(sim, pos)) if alive else missing
        if req.method == "DELETE":
            if not alive:
                return sim.gone("entra", req, missing)
            t.revoke("entra", pos)
            return Resp(204)
    return error(405, "BadRequest", "Method not allowed.")


def _create_grant(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    body = req.json()
    if not isinstance(body, dict):
        return error(400, "BadRequest", "Unable to read JSON request payload.")
    a = t.app_by_entra_sp.get(body.get("clientId", ""))
    if a is None or a not in t.provider_apps["entra"]:
        return error(400, "Request_BadRequest", "Invalid value specified for property 'clientId'.")
    if body.get("resourceId") != t.graph_sp_id:
        return error(400, "Request_BadRequest", "Invalid value specified for property 'resourceId'.")
    scope = " ".join(str(body.get("scope", "")).split())
    if not scope:
        return error(400, "Request_BadRequest", "Invalid value specified for property 'scope'.")
    consent = body.get("consentType")
    st = t.store("entra")
    with t.lock:
        if consent == "Principal":
            person = t.by_entra.get(body.get("principalId") or "")
            if person is None:
                return error(400, "Request_BadRequest", "Invalid value specified for property 'principalId'.")
            if st.find(person, a) is not None:
                return error(
                    409, "Request_MultipleObjectsWithSameKeyValue", "Permission entry already exists."
                )
            pos = t.add_grant("entra", person, a, scopes=scope.split())
        elif consent == "AllPrincipals":
            pos = t.add_grant("entra", NO_PERSON, a, scopes=scope.split(), flags=F_ALL)
        else:
            return error(400, "Request_BadRequest", "Invalid value specified for property 'consentType'.")
        return Resp(201, {"@odata.context": CTX + "oauth2PermissionGrants/$entity", **_grant_json(sim, pos)})


def _role_json(sim: Sim, r: dict) -> dict:
    t = sim.tenant
    return {
        "id": r["id"],
        "appRoleId": r["appRoleId"],
        "createdDateTime": iso(r["created"]),
        "deletedDateTime": None,
        "principalDisplayName": APPS[r["app"]].name,
        "principalId": t.entra_sp_ids[r["app"]],
        "principalType": "ServicePrincipal",
        "resourceDisplayName": "Microsoft Graph",
        "resourceId": t.graph_sp_id,
    }


def _app_roles(sim: Sim, req: Req, sp_id: str, relation: str, item: str | None) -> Resp:
    t = sim.tenant
    if sp_id != t.graph_sp_id and sp_id not in t.app_by_entra_sp:
        return error(404, "Request_ResourceNotFound", f"Resource '{sp_id}' does not exist.")
    t.store("entra")
    if relation == "appRoleAssignedTo":
        roles = [r for r in t.entra_roles if sp_id == t.graph_sp_id]
    else:
        roles = [r for r in t.entra_roles if t.entra_sp_ids[r["app"]] == sp_id]
    if item is None and req.method == "GET":
        page, start, size = _page(req)
        live = [r for r in roles if r["alive"]]
        chunk = live[start : start + size]
        end = start + len(chunk)
        return _listing(
            req,
            "appRoleAssignments",
            [_role_json(sim, r) for r in chunk],
            page,
            end if end < len(live) else None,
        )
    if item is not None and req.method == "DELETE":
        with t.lock:
            for r in roles:
                if r["id"] == item and r["alive"]:
                    r["alive"] = False
                    return Resp(204)
        return sim.gone(
            "entra", req, error(404, "Request_ResourceNotFound", f"Resource '{item}' does not exist.")
        )
    return error(405, "BadRequest", "Method not allowed.")


def _devices(sim: Sim, req: Req) -> Resp:
    page, start, size = _page(req)
    t = sim.tenant
    expand = "registeredOwners" in req.query.get("$expand", "")
    end = min(t.n_devices, start + size)
    items = []
    for d in range(start, end):
        plat = catalog.PLATFORMS[t.dev_platform[d]]
        item = {
            "id": t.device_object_id(d),
            "deviceId": t.device_id(d, "entra"),
            "displayName": t.device_name(d),
            "operatingSystem": plat[2] if plat[0] != "iOS" else "IPhone",
            "operatingSystemVersion": plat[3],
            "isManaged": bool(t.dev_managed[d]),
            "isCompliant": bool(t.dev_compliant[d]),
            "trustType": "AzureAd" if t.dev_managed[d] else "Workplace",
            "accountEnabled": True,
            "approximateLastSignInDateTime": iso(t.dev_last_seen[d]),
        }
        if expand:
            item["registeredOwners"] = [
                {"@odata.type": "#microsoft.graph.user", "id": t.entra_ids[t.dev_owner[d]]}
            ]
        items.append(item)
    return _listing(req, "devices", items, page, end if end < t.n_devices else None)


def _sign_ins(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    since = 0
    flt = req.query.get("$filter", "")
    if "createdDateTime ge " in flt:
        value = flt.split("createdDateTime ge ", 1)[1].split()[0]
        try:
            since = time.mktime(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        except ValueError:
            return error(400, "BadRequest", f"Invalid filter clause: {flt}")
    events = t.events("entra")
    idx = [
        i for i in range(len(events) - 1, -1, -1) if events[i].ts >= since and events[i].person != NO_PERSON
    ]
    page, start, size = _page(req, default=1000, maximum=1000)
    chunk = idx[start : start + size]
    items = []
    for i in chunk:
        e = events[i]
        d = t.primary_device(e.person)
        plat = catalog.PLATFORMS[t.dev_platform[d]] if d is not None else None
        items.append(
            {
                "id": t.entra_grant_id(i)[:8] + "-sim-" + str(i),
                "createdDateTime": iso(e.ts)[:19] + "Z",
                "userDisplayName": t.name(e.person),
                "userPrincipalName": t.email[e.person],
                "userId": t.entra_ids[e.person],
                "appId": t.entra_app_ids[e.app],
                "appDisplayName": APPS[e.app].name,
                "ipAddress": f"198.51.100.{e.person % 250 + 1}",
                "clientAppUsed": "Browser",
                "resourceDisplayName": "Microsoft Graph",
                "resourceId": GRAPH_APP_ID,
                "status": {"errorCode": 0, "failureReason": "Other.", "additionalDetails": None},
                "deviceDetail": {
                    "deviceId": t.device_id(d, "entra") if d is not None and t.dev_managed[d] else "",
                    "displayName": t.device_name(d) if d is not None else "",
                    "operatingSystem": plat[2] if plat else "",
                    "browser": "Edge 126.0.0" if plat and plat[0] == "Windows" else "Chrome 126.0.0",
                    "isCompliant": bool(d is not None and t.dev_compliant[d]),
                    "isManaged": bool(d is not None and t.dev_managed[d]),
                    "trustType": "Azure AD joined" if d is not None and t.dev_managed[d] else "",
                },
            }
        )
    end = start + len(chunk)
    return _listing(req, "auditLogs/signIns", items, page, end if end < len(idx) else None)
