"""Okta Management API: SSWS API tokens, users, apps, user grants and refresh tokens, devices, System Log."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from . import catalog, creds
from .catalog import APPS
from .tenant import DEPROVISIONED, F_TOKEN, F_TOKEN_GONE, STATUS_NAMES, iso
from .wire import ApiError, Req, Resp, bounded, decode_cursor, encode_cursor, next_url, scan

if TYPE_CHECKING:
    from .server import Sim

CODES = {
    400: ("E0000001", "Api validation failed"),
    401: ("E0000011", "Invalid token provided"),
    403: ("E0000006", "You do not have permission to perform the requested action"),
    404: ("E0000007", "Not found: Resource not found"),
    405: ("E0000022", "The endpoint does not support the provided HTTP method"),
    429: ("E0000047", "API call exceeded rate limit due to too many requests."),
    500: ("E0000009", "Internal Server Error"),
    503: ("E0000010", "Service is in read only mode"),
}
OKTA_STATUS = ("ACTIVE", "SUSPENDED", "DEPROVISIONED")


def error(status: int, code: str, message: str) -> Resp:
    err_code, summary = CODES.get(status, ("E0000009", "Internal Server Error"))
    if status == 404 and message:
        summary = f"Not found: Resource not found: {message}"
    return Resp(
        status,
        {
            "errorCode": err_code,
            "errorSummary": summary,
            "errorLink": err_code,
            "errorId": "oae" + str(int(time.time() * 1000))[-17:],
            "errorCauses": [],
        },
    )


def common_headers(sim: Sim) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": "600",
        "X-Rate-Limit-Remaining": "599",
        "X-Rate-Limit-Reset": str(int(time.time()) + 60),
    }


def rate_limit(fault: Any) -> Resp:
    r = error(429, "E0000047", "")
    wait = fault.retry_after if fault.retry_after is not None else 1
    r.headers.update(
        {
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(int(time.time() + wait)),
        }
    )
    return r


def handle(sim: Sim, req: Req) -> Resp:
    auth = req.headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme != "SSWS" or not hmac.compare_digest(token.strip(), creds.okta_token(sim.params["seed"])):
        return error(401, "E0000011", "")
    parts = req.path.strip("/").split("/")
    if parts[:2] != ["api", "v1"]:
        return error(404, "", req.path)
    rest, m = parts[2:], req.method
    if rest == ["users"] and m == "GET":
        return _users(sim, req)
    if rest == ["apps"] and m == "GET":
        return _apps(sim, req)
    if rest == ["devices"] and m == "GET":
        return _devices(sim, req)
    if rest == ["logs"] and m == "GET":
        return _logs(sim, req)
    if len(rest) == 3 and rest[0] == "apps" and rest[2] == "users" and m == "POST":
        return _assign(sim, req, rest[1])
    if len(rest) >= 2 and rest[0] == "users":
        person = _person(sim, rest[1])
        sub = rest[2:]
        if not sub and m == "GET":
            return Resp(200, _user(sim, person))
        if sub == ["grants"] and m == "GET":
            return _grants(sim, req, person)
        if sub == ["clients"] and m == "GET":
            return _clients(sim, req, person)
        if len(sub) >= 3 and sub[0] == "clients":
            return _client_item(sim, req, person, sub[1], sub[2], sub[3] if len(sub) > 3 else None)
    return error(404, "", req.path)


def _person(sim: Sim, key: str) -> int:
    t = sim.tenant
    p = t.by_okta.get(key)
    if p is None:
        p = t.by_email.get(key.lower())
    if p is None:
        raise ApiError(error(404, "", key))
    return p


def _user(sim: Sim, i: int) -> dict:
    t = sim.tenant
    m = t.manager[i]
    uid = t.okta_ids[i]
    return {
        "id": uid,
        "status": OKTA_STATUS[t.status[i]],
        "created": iso(t.created[i]),
        "activated": iso(t.created[i]),
        "statusChanged": iso(t.now - 86400 * 5) if t.status[i] else None,
        "lastLogin": iso(t.now - (i % 89) * 3600),
        "lastUpdated": iso(t.now - 86400),
        "passwordChanged": iso(t.created[i]),
        "type": {"id": "oty1sim0000000000000"},
        "profile": {
            "firstName": t.first[i],
            "lastName": t.last[i],
            "login": t.email[i],
            "email": t.email[i],
            "title": t.title[i],
            "department": t.dept[i],
            "managerId": t.okta_ids[m] if m >= 0 else None,
            "manager": t.name(m) if m >= 0 else None,
            "mobilePhone": None,
            "secondEmail": None,
        },
        "_links": {"self": {"href": f"/api/v1/users/{uid}"}},
    }


def _cursor(req: Req) -> tuple[int, int]:
    cur = decode_cursor(req.query.get("after"))
    if cur is None:
        raise ApiError(error(400, "E0000001", ""))
    return cur


def _list(req: Req, items: list, page: int, nxt: int | None) -> Resp:
    base_q = {k: v for k, v in req.query.items() if k != "after"}
    links = [f'<{next_url(req.base, req.path, base_q)}>; rel="self"']
    if nxt is not None:
        links.append(
            f'<{next_url(req.base, req.path, base_q, after=encode_cursor(page + 1, nxt))}>; rel="next"'
        )
    return Resp(200, items, {"Link": ", ".join(links)})


def _users(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    page, start = _cursor(req)
    size = bounded(req.query.get("limit"), 200, 200)
    flt = req.query.get("filter") or req.query.get("search") or ""
    wanted: set[int] | None = None
    if flt:
        # supports the filters Lanyard sends: status eq "X" (or ... or ...)
        wanted = {STATUS_NAMES.index(s.lower()) for s in OKTA_STATUS if f'status eq "{s}"' in flt}
        if not wanted:
            return error(400, "E0000001", "")
    else:
        wanted = {0, 1}  # Okta leaves DEPROVISIONED users out of an unfiltered listing
    status = t.status
    positions, nxt = scan(start, size, t.n, lambda i: status[i] in wanted)
    return _list(req, [_user(sim, i) for i in positions], page, nxt)


def _app(sim: Sim, a: int) -> dict:
    t = sim.tenant
    app = APPS[a]
    aid = t.okta_app_ids[a]
    slug = app.name.lower().replace(" ", "").replace(".", "")
    return {
        "id": aid,
        "name": "oidc_client",
        "label": app.name,
        "status": "ACTIVE",
        "created": iso(t.now - 86400 * (400 + a)),
        "lastUpdated": iso(t.now - 86400 * 10),
        "signOnMode": "OPENID_CONNECT",
        "features": [],
        "credentials": {
            "oauthClient": {
                "autoKeyRotation": True,
                "client_id": aid,
                "token_endpoint_auth_method": "client_secret_basic",
            }
        },
        "settings": {
            "oauthClient": {
                "client_uri": f"https://{slug}.example",
                "logo_uri": None,
                "redirect_uris": [f"https://{slug}.example/oauth/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "application_type": "web",
            }
        },
        "_links": {"self": {"href": f"/api/v1/apps/{aid}"}},
    }


def _apps(sim: Sim, req: Req) -> Resp:
    page, start = _cursor(req)
    size = bounded(req.query.get("limit"), 20, 200)
    apps = sim.tenant.provider_apps["okta"]
    chunk = apps[start : start + size]
    end = start + len(chunk)
    return _list(req, [_app(sim, a) for a in chunk], page, end if end < len(apps) else None)


def _grant_records(sim: Sim, pos: int) -> list[dict]:
    t = sim.tenant
    st = t.store("okta")
    p, a = st.person[pos], st.app[pos]
    uid, cid = t.okta_ids[p], t.okta_app_ids[a]
    out = []
    for k, scope in enumerate(t.scopes("okta", pos)):
        gid = t.okta_grant_id(pos, k)
        out.append(
            {
                "id": gid,
                "status": "ACTIVE",
                "created": iso(st.created[pos]),
                "createdBy": {"id": uid, "type": "User"},
                "lastUpdated": iso(st.last_used[pos] or st.created[pos]),
                "issuer": "https://acmecorp.okta.com/oauth2/default",
                "clientId": cid,
                "userId": uid,
                # the description: scopeId is "the name of the Okta scope", and so is _embedded.scope.id
                "scopeId": scope,
                "source": "END_USER",
                "_embedded": {"scope": {"id": scope}},
                "_links": {
                    "app": {"href": f"/api/v1/apps/{cid}", "title": APPS[a].name},
                    "client": {"href": f"/oauth2/v1/clients/{cid}", "title": APPS[a].name},
                },
            }
        )
    return out


def _grants(sim: Sim, req: Req, person: int) -> Resp:
    page, start = _cursor(req)
    size = bounded(req.query.get("limit"), 20, 200)
    records = [r for pos in sim.tenant.store("okta").for_person(person) for r in _grant_records(sim, pos)]
    chunk = records[start : start + size]
    end = start + len(chunk)
    return _list(req, chunk, page, end if end < len(records) else None)


def _clients(sim: Sim, req: Req, person: int) -> Resp:
    t = sim.tenant
    st = t.store("okta")
    items = []
    for pos in st.for_person(person):
        a = st.app[pos]
        items.append(
            {
                "client_id": t.okta_app_ids[a],
                "client_name": APPS[a].name,
                "client_uri": None,
                "logo_uri": None,
                "_links": {},
            }
        )
    return Resp(200, items)


def _token_json(sim: Sim, pos: int) -> dict:
    t = sim.tenant
    st = t.store("okta")
    return {
        "id": t.okta_token_id(pos),
        "status": "ACTIVE",
        "created": iso(st.created[pos]),
        "lastUpdated": iso(st.last_used[pos] or st.created[pos]),
        "expiresAt": iso(max(st.last_used[pos], st.created[pos]) + 86400 * 90),
        "issuer": "https://acmecorp.okta.com/oauth2/default",
        "clientId": t.okta_app_ids[st.app[pos]],
        "userId": t.okta_ids[st.person[pos]],
        "scopes": t.scopes("okta", pos),
        "_links": {},
    }


def _client_item(sim: Sim, req: Req, person: int, client_id: str, what: str, item: str | None) -> Resp:
    t = sim.tenant
    st = t.store("okta")
    a = t.app_by_okta.get(client_id)
    missing = error(404, "", client_id if item is None else item)
    with t.lock:
        pos = None if a is None else st.find(person, a)
        has_token = pos is not None and st.flags[pos] & F_TOKEN and not st.flags[pos] & F_TOKEN_GONE
        if what == "tokens":
            if item is not None and (not has_token or item != t.okta_token_id(pos)):
                return missing if req.method == "GET" else sim.gone("okta", req, missing)
            if req.method == "GET":
                if item is not None:
                    return Resp(200, _token_json(sim, pos))
                return Resp(200, [_token_json(sim, pos)] if has_token else [])
            if req.method == "DELETE":
                if not has_token:
                    return sim.gone("okta", req, missing)
                st.flags[pos] |= F_TOKEN_GONE
                t._event("okta", "revoke", pos, person, a)
                return Resp(204)
        if what == "grants" and item is None:
            if req.method == "GET":
                return Resp(200, _grant_records(sim, pos) if pos is not None else [])
            if req.method == "DELETE":
                if pos is None:
                    return sim.gone("okta", req, missing)
                t.revoke("okta", pos)
                return Resp(204)
    return error(405, "", "")


def _assign(sim: Sim, req: Req, app_id: str) -> Resp:
    t = sim.tenant
    a = t.app_by_okta.get(app_id)
    if a is None or a not in t.provider_apps["okta"]:
        return error(404, "", app_id)
    body = req.json()
    if not isinstance(body, dict) or not body.get("id"):
        return error(400, "E0000001", "")
    person = _person(sim, body["id"])
    if t.status[person] == DEPROVISIONED:
        return error(400, "E0000001", "")
    with t.lock:
        t.okta_assignments.add((a, person))
    uid = t.okta_ids[person]
    return Resp(
        200,
        {
            "id": uid,
            "scope": body.get("scope", "USER"),
            "status": "ACTIVE",
            "created": iso(time.time()),
            "syncState": "DISABLED",
            "credentials": {"userName": t.email[person]},
            "_links": {"app": {"href": f"/api/v1/apps/{app_id}"}, "user": {"href": f"/api/v1/users/{uid}"}},
        },
    )


PLATFORM = {"macOS": "MACOS", "Windows": "WINDOWS", "iOS": "IOS", "Android": "ANDROID", "Linux": "LINUX"}
# the System Log names a Mac "OSX" (the description's ListLogs example), the Devices API "MACOS"
LOG_PLATFORM = {"macOS": "OSX"}


def _device_json(sim: Sim, d: int, expand: bool) -> dict:
    t = sim.tenant
    plat = catalog.PLATFORMS[t.dev_platform[d]]
    o = t.dev_owner[d]
    dev = {
        "id": t.device_id(d, "okta"),
        "status": "ACTIVE",
        "created": iso(t.created[o]),
        "lastUpdated": iso(t.dev_last_seen[d]),
        "profile": {
            "displayName": t.device_name(d),
            "platform": PLATFORM[plat[0]],
            "model": plat[4],
            "osVersion": plat[3],
            "serialNumber": t.device_id(d, "google")[:10].upper(),
            "registered": True,
            "secureHardwarePresent": bool(t.dev_managed[d]),
        },
        "resourceType": "UDDevice",
        "resourceDisplayName": {"value": t.device_name(d), "sensitive": False},
        "resourceId": t.device_id(d, "okta"),
        "_links": {},
    }
    if expand:
        dev["_embedded"] = {
            "users": [
                {
                    "created": iso(t.created[o]),
                    "managementStatus": "MANAGED" if t.dev_managed[d] else "NOT_MANAGED",
                    "screenLockType": "BIOMETRIC" if t.dev_compliant[d] else "NONE",
                    "user": {
                        "id": t.okta_ids[o],
                        "status": OKTA_STATUS[t.status[o]],
                        "profile": {
                            "login": t.email[o],
                            "email": t.email[o],
                            "firstName": t.first[o],
                            "lastName": t.last[o],
                        },
                    },
                }
            ]
        }
    return dev


def _devices(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    page, start = _cursor(req)
    size = bounded(req.query.get("limit"), 200, 200)
    expand = "user" in req.query.get("expand", "")
    # the description's DeviceProfile.platform has no Linux: Okta's device inventory holds none
    positions, nxt = scan(start, size, t.n_devices, lambda d: d_platform(t, d) in PLATFORM_ENUM)
    return _list(req, [_device_json(sim, d, expand) for d in positions], page, nxt)


PLATFORM_ENUM = {"ANDROID", "IOS", "MACOS", "WINDOWS"}


def d_platform(t: Any, d: int) -> str:
    return PLATFORM[catalog.PLATFORMS[t.dev_platform[d]][0]]


EVENT_TYPES = {
    "authorize": "app.oauth2.as.consent.grant",
    "activity": "app.oauth2.as.token.grant.refresh_token",
    "revoke": "app.oauth2.as.consent.revoke",
}


def _logs(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    since = 0.0
    if req.query.get("since"):
        try:
            since = time.mktime(time.strptime(req.query["since"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        except ValueError:
            return error(400, "E0000001", "")
    events = t.events("okta")
    idx = [i for i, e in enumerate(events) if e.ts >= since and e.person < t.n]
    page, start = _cursor(req)
    size = bounded(req.query.get("limit"), 100, 1000)
    chunk = idx[start : start + size]
    items = []
    for i in chunk:
        e = events[i]
        p, a = e.person, e.app
        d = t.primary_device(p)
        plat = catalog.PLATFORMS[t.dev_platform[d]] if d is not None else None
        scopes = t.scopes("okta", e.pos) if e.pos >= 0 else []
        items.append(
            {
                "uuid": f"{t.okta_ids[p][3:11]}-{i:04d}-11ef-sim0-{i:012d}",
                "published": iso(e.ts),
                "eventType": EVENT_TYPES.get(e.action, "app.oauth2.as.consent.grant"),
                "version": "0",
                "severity": "INFO",
                "displayMessage": "User granted consent to app"
                if e.action == "authorize"
                else "OAuth2 event",
                "actor": {
                    "id": t.okta_ids[p],
                    "type": "User",
                    "alternateId": t.email[p],
                    "displayName": t.name(p),
                },
                "client": {
                    "id": t.okta_app_ids[a],
                    "userAgent": {
                        "rawUserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
                        "os": plat[2] if plat else "Unknown",
                        "browser": "CHROME",
                    },
                    "zone": "null",
                    "device": "Mobile" if plat and plat[0] in ("iOS", "Android") else "Computer",
                    "ipAddress": f"192.0.2.{p % 250 + 1}",
                    "geographicalContext": {"city": "Dublin", "state": "Leinster", "country": "Ireland"},
                },
                "device": None
                if d is None
                else {
                    "id": t.device_id(d, "okta"),
                    "name": t.device_name(d),
                    "os_platform": LOG_PLATFORM.get(plat[0], PLATFORM[plat[0]]),
                    "os_version": plat[3],
                    "managed": bool(t.dev_managed[d]),
                    "registered": True,
                    "device_integrator": None,
                    "disk_encryption_type": "ALL_INTERNAL_VOLUMES",
                    "screen_lock_type": "BIOMETRIC" if t.dev_compliant[d] else "NONE",
                    "jailbreak": False,
                    "secure_hardware_present": bool(t.dev_managed[d]),
                },
                "outcome": {"result": "SUCCESS", "reason": None},
                "target": [
                    {
                        "id": t.okta_app_ids[a],
                        "type": "PublicClientApp",
                        "alternateId": t.okta_app_ids[a],
                        "displayName": APPS[a].name,
                    }
                ],
                "transaction": {"type": "WEB", "id": f"sim{i}"},
                "debugContext": {"debugData": {"grantedScopes": " ".join(scopes)}},
                "authenticationContext": {},
                "securityContext": {},
            }
        )
    end = start + len(chunk)
    return _list(req, items, page, end if end < len(idx) else None)
