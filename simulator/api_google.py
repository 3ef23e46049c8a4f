"""Google Workspace: OAuth JWT-bearer token endpoint, Admin SDK Directory and Reports APIs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt

from . import catalog, creds
from .catalog import APPS
from .keys import public_key
from .tenant import DEPROVISIONED, NO_PERSON, SUSPENDED, iso
from .wire import ApiError, Req, Resp, bearer, bounded, decode_cursor, encode_cursor, scan

if TYPE_CHECKING:
    from .server import Sim

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DIRECTORY = "/admin/directory/v1"
REASONS = {403: "forbidden", 404: "notFound", 400: "badRequest", 401: "authError", 409: "duplicate"}
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def error(status: int, reason: str, message: str, domain: str = "global") -> Resp:
    reason = {"unauthorized": "authError", "internal": "backendError"}.get(reason, reason)
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": STATUS.get(status, "UNKNOWN"),
        }
    }
    return Resp(status, body)


def rate_limit(fault: Any) -> Resp:
    variant = fault.variant or "rateLimitExceeded"
    if variant == "429":
        return error(429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries'.", "usageLimits")
    if variant == "503":
        return error(503, "backendError", "The service is currently unavailable.")
    msg = "User Rate Limit Exceeded" if variant == "userRateLimitExceeded" else "Rate Limit Exceeded"
    return error(fault.status or 403, variant, msg, "usageLimits")


def _token(sim: Sim, req: Req) -> Resp:
    form = req.form()
    if form.get("grant_type") != JWT_BEARER:
        return Resp(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
    seed = sim.params["seed"]
    try:
        claims = jwt.decode(
            form.get("assertion", ""),
            public_key("google", seed),
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["iss", "aud", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        return Resp(
            400,
            {
                "error": "invalid_grant",
                "error_description": "Invalid JWT: Token must be a short-lived "
                "token (60 minutes) and in a reasonable timeframe.",
            },
        )
    except jwt.InvalidTokenError:
        return Resp(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    sa = creds.google_service_account(seed)
    if claims.get("iss") != sa["client_email"]:
        return Resp(400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"})
    if not str(claims.get("aud", "")).endswith("/token"):
        return Resp(
            400, {"error": "invalid_grant", "error_description": "Invalid JWT: audience is not the token URI"}
        )
    if not claims.get("scope"):
        return Resp(
            400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience."}
        )
    t = sim.tenant
    admin = t.by_email.get(str(claims.get("sub", "")).lower())
    if admin is None or not t.is_admin[admin]:
        return Resp(
            401,
            {
                "error": "unauthorized_client",
                "error_description": "Client is unauthorized to retrieve "
                "access tokens using this method, or client not authorized for any of the scopes requested.",
            },
        )
    return Resp(
        200,
        {"access_token": t.issue_token("google", "ya29.sim-"), "expires_in": 3599, "token_type": "Bearer"},
    )


def handle(sim: Sim, req: Req) -> Resp:
    if req.path == "/token" and req.method == "POST":
        return _token(sim, req)
    if not sim.tenant.token_valid("google", bearer(req.headers)):
        return error(
            401,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token,"
            " login cookie or other valid authentication credential.",
        )
    parts = req.path.strip("/").split("/")
    if req.path.startswith(DIRECTORY + "/users"):
        rest = parts[3:]  # after admin/directory/v1
        if rest == ["users"] and req.method == "GET":
            return _users(sim, req)
        if len(rest) >= 2:
            person = _person(sim, rest[1])
            if len(rest) == 2 and req.method == "GET":
                return Resp(200, _user(sim, person))
            if len(rest) == 3 and rest[2] == "tokens" and req.method == "GET":
                return _tokens(sim, person)
            if len(rest) == 4 and rest[2] == "tokens":
                return _token_item(sim, req, person, rest[3])
    if (
        req.path.startswith(DIRECTORY + "/customer/")
        and req.path.endswith("/devices/mobile")
        and req.method == "GET"
    ):
        return _mobile(sim, req)
    if req.path.startswith("/admin/reports/v1/activity/users/") and req.path.endswith("/applications/token"):
        return _activity(sim, req, parts[5])
    return error(404, "notFound", f"Not Found: {req.method} {req.path}")


def _person(sim: Sim, key: str) -> int:
    t = sim.tenant
    p = t.by_google.get(key)
    if p is None:
        p = t.by_email.get(key.lower())
    if p is None:
        raise ApiError(error(404, "notFound", "Resource Not Found: userKey"))
    return p


def _user(sim: Sim, i: int) -> dict:
    t = sim.tenant
    status = t.status[i]
    u = {
        "kind": "admin#directory#user",
        "id": t.google_ids[i],
        "etag": f'"{t.google_ids[i][-8:]}"',
        "primaryEmail": t.email[i],
        "name": {"givenName": t.first[i], "familyName": t.last[i], "fullName": t.name(i)},
        "isAdmin": bool(t.is_admin[i]),
        "isDelegatedAdmin": False,
        "lastLoginTime": iso(t.now - (i % 97) * 3600),
        "creationTime": iso(t.created[i]),
        "agreedToTerms": True,
        "suspended": status != 0,
        "archived": status == DEPROVISIONED,
        "changePasswordAtNextLogin": False,
        "ipWhitelisted": False,
        "emails": [{"address": t.email[i], "primary": True}],
        "organizations": [{"title": t.title[i], "primary": True, "customType": "", "department": t.dept[i]}],
        "customerId": "C03az79cb",
        "orgUnitPath": f"/{t.dept[i]}",
        "isMailboxSetup": True,
        "includeInGlobalAddressList": True,
    }
    if status == SUSPENDED:
        u["suspensionReason"] = "ADMIN"
    m = t.manager[i]
    if m >= 0:
        u["relations"] = [{"value": t.email[m], "type": "manager"}]
    return u


def _users(sim: Sim, req: Req) -> Resp:
    if not (req.query.get("customer") or req.query.get("domain")):
        return error(400, "badRequest", "Bad Request")
    cur = decode_cursor(req.query.get("pageToken"))
    if cur is None:
        return error(400, "invalid", "Invalid page token")
    page, start = cur
    size = bounded(req.query.get("maxResults"), 100, 500)
    t = sim.tenant
    end = min(t.n, start + size)
    body: dict[str, Any] = {
        "kind": "admin#directory#users",
        "etag": '"sim"',
        "users": [_user(sim, i) for i in range(start, end)],
    }
    if end < t.n:
        body["nextPageToken"] = encode_cursor(page + 1, end)
    return Resp(200, body)


def _token_json(sim: Sim, pos: int) -> dict:
    t = sim.tenant
    st = t.store("google")
    a = st.app[pos]
    return {
        "kind": "admin#directory#token",
        "etag": f'"{pos}"',
        "clientId": t.google_client[a],
        "displayText": APPS[a].name,
        "anonymous": False,
        "nativeApp": APPS[a].kind == "mcp_server",
        "userKey": t.google_ids[st.person[pos]],
        "scopes": t.scopes("google", pos),
    }


def _tokens(sim: Sim, person: int) -> Resp:
    st = sim.tenant.store("google")
    body: dict[str, Any] = {"kind": "admin#directory#tokenList", "etag": '"sim"'}
    items = [_token_json(sim, pos) for pos in st.for_person(person)]
    if items:
        body["items"] = items
    return Resp(200, body)


def _token_item(sim: Sim, req: Req, person: int, client_id: str) -> Resp:
    t = sim.tenant
    app = t.app_by_google.get(client_id)
    with t.lock:
        pos = None if app is None else t.store("google").find(person, app)
        missing = error(404, "notFound", "Resource Not Found: clientId")
        if req.method == "GET":
            return missing if pos is None else Resp(200, _token_json(sim, pos))
        if req.method == "DELETE":
            if pos is None:
                return sim.gone("google", req, missing)
            t.revoke("google", pos)
            return Resp(204)
    return error(405, "badRequest", "Method not allowed")


def _mobile(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    cur = decode_cursor(req.query.get("pageToken"))
    if cur is None:
        return error(400, "invalid", "Invalid page token")
    page, start = cur
    size = bounded(req.query.get("maxResults"), 100, 100)

    def mobile(d: int) -> bool:
        return catalog.PLATFORMS[t.dev_platform[d]][0] in ("iOS", "Android")

    positions, nxt = scan(start, size, t.n_devices, mobile)
    items = []
    for d in positions:
        plat = catalog.PLATFORMS[t.dev_platform[d]]
        o = t.dev_owner[d]
        items.append(
            {
                "kind": "admin#directory#mobiledevice",
                "resourceId": "AFiQxQ8" + t.device_id(d, "google"),
                "deviceId": t.device_id(d, "google"),
                "name": [t.name(o)],
                "email": [t.email[o]],
                "model": plat[4],
                "os": f"{plat[2]} {plat[3]}",
                "type": "IOS_SYNC" if plat[0] == "iOS" else "ANDROID",
                "status": "APPROVED" if t.dev_managed[d] else "UNPROVISIONED",
                "deviceCompromisedStatus": "No compromise detected"
                if t.dev_compliant[d]
                else "Compromise detected",
                "lastSync": iso(t.dev_last_seen[d]),
                "firstSync": iso(t.created[o]),
            }
        )
    body: dict[str, Any] = {"kind": "admin#directory#mobiledevices", "mobiledevices": items}
    if nxt is not None:
        body["nextPageToken"] = encode_cursor(page + 1, nxt)
    return Resp(200, body)


def _parse_time(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return time.mktime(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        raise ApiError(
            error(400, "invalid", f"Invalid value '{value}'. Values must match the RFC3339 format.")
        )


def _activity(sim: Sim, req: Req, user_key: str) -> Resp:
    t = sim.tenant
    since = _parse_time(req.query.get("startTime"))
    person = None if user_key == "all" else _person(sim, user_key)
    events = t.events("google")
    # newest first, as the Reports API answers
    ok_idx = [
        i
        for i in range(len(events) - 1, -1, -1)
        if events[i].ts >= since and (person is None or events[i].person == person)
    ]
    cur = decode_cursor(req.query.get("pageToken"))
    if cur is None:
        return error(400, "invalid", "Invalid page token")
    page, start = cur
    size = bounded(req.query.get("maxResults"), 1000, 1000)
    chunk = ok_idx[start : start + size]
    st = t.store("google")
    items = []
    for i in chunk:
        e = events[i]
        if e.person == NO_PERSON:
            continue
        scopes = t.scopes("google", e.pos) if e.pos >= 0 else []
        items.append(
            {
                "kind": "admin#reports#activity",
                "id": {
                    "time": iso(e.ts),
                    "uniqueQualifier": str(1000000 + i),
                    "applicationName": "token",
                    "customerId": "C03az79cb",
                },
                "etag": f'"{i}"',
                "actor": {
                    "email": t.email[e.person],
                    "profileId": t.google_ids[e.person],
                    "callerType": "USER",
                },
                "ipAddress": f"203.0.113.{e.person % 250 + 1}",
                "events": [
                    {
                        "type": "auth",
                        "name": e.action,
                        "parameters": [
                            {"name": "client_id", "value": t.google_client[e.app]},
                            {"name": "app_name", "value": APPS[e.app].name},
                            {
                                "name": "client_type",
                                "value": "NATIVE_DESKTOP" if st.app[e.pos] % 3 == 0 else "WEB",
                            },
                            {"name": "scope", "multiValue": scopes},
                        ],
                    }
                ],
            }
        )
    body: dict[str, Any] = {"kind": "admin#reports#activities", "etag": '"sim"', "items": items}
    if start + size < len(ok_idx):
        body["nextPageToken"] = encode_cursor(page + 1, start + size)
    return Resp(200, body)
