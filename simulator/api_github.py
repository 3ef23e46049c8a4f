"""GitHub REST: App JWT → installation token, org members, fine-grained PATs and PAT requests,
SAML credential authorizations (classic PATs), org installations and the org audit log."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

import jwt

from . import creds
from .catalog import APPS
from .keys import public_key
from .tenant import DEPROVISIONED, F_CLASSIC, iso
from .wire import Req, Resp, bearer, bounded, next_url, scan

if TYPE_CHECKING:
    from .server import Sim

DOCS = "https://docs.github.com/rest"


def error(status: int, code: str, message: str) -> Resp:
    messages = {
        401: "Bad credentials",
        403: "Resource not accessible by integration",
        404: "Not Found",
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
    }
    msg = (
        messages.get(status, message)
        if code in ("unauthorized", "forbidden", "backendError", "internal")
        else message
    )
    return Resp(status, {"message": msg, "documentation_url": DOCS, "status": str(status)})


def common_headers(sim: Sim) -> dict[str, str]:
    return {
        "x-ratelimit-limit": "15000",
        "x-ratelimit-remaining": "14999",
        "x-ratelimit-used": "1",
        "x-ratelimit-reset": str(int(time.time()) + 3600),
        "x-ratelimit-resource": "core",
        "x-github-api-version-selected": "2022-11-28",
    }


def rate_limit(fault: Any) -> Resp:
    wait = fault.retry_after if fault.retry_after is not None else 1
    if fault.variant == "secondary":
        r = error(
            fault.status or 403,
            "",
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        r.headers["retry-after"] = str(int(wait))
        return r
    r = error(fault.status or 403, "", "API rate limit exceeded for installation ID 70000001.")
    r.headers.update(
        {
            "x-ratelimit-limit": "15000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "15000",
            "x-ratelimit-reset": str(int(time.time() + wait)),
            "x-ratelimit-resource": "core",
        }
    )
    return r


def _app_jwt(sim: Sim, req: Req) -> Resp | None:
    token = bearer(req.headers)
    if not token:
        return error(401, "", "A JSON web token could not be decoded")
    seed = sim.params["seed"]
    try:
        claims = jwt.decode(
            token,
            public_key("github", seed),
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"]},
            leeway=60,
        )
    except jwt.ExpiredSignatureError:
        return error(
            401,
            "",
            "'Expiration time' claim ('exp') must be a numeric value representing the future time "
            "at which the assertion expires",
        )
    except jwt.InvalidTokenError:
        return error(401, "", "A JSON web token could not be decoded")
    if str(claims["iss"]) != creds.github_app(seed)["app_id"]:
        return error(401, "", "Integration not found")
    if claims["exp"] - claims["iat"] > 660:
        return error(401, "", "'Expiration time' claim ('exp') is too far in the future")
    return None


def handle(sim: Sim, req: Req) -> Resp:
    parts = req.path.strip("/").split("/")
    t = sim.tenant
    app = creds.github_app(sim.params["seed"])
    if parts[:2] == ["app", "installations"]:
        refused = _app_jwt(sim, req)
        if refused is not None:
            return refused
        if len(parts) == 4 and parts[3] == "access_tokens" and req.method == "POST":
            if parts[2] != app["installation_id"]:
                return error(404, "", "Not Found")
            tok = t.issue_token("github", "ghs_")
            return Resp(
                201,
                {
                    "token": tok,
                    "expires_at": iso(time.time() + 3600)[:19] + "Z",
                    "permissions": {
                        "members": "read",
                        "organization_personal_access_tokens": "write",
                        "organization_personal_access_token_requests": "write",
                        "organization_administration": "read",
                    },
                    "repository_selection": "all",
                },
            )
        return error(404, "", "Not Found")
    if not t.token_valid("github", bearer(req.headers)):
        return error(401, "", "Bad credentials")
    m = req.method
    if parts[0] == "users" and len(parts) == 2 and m == "GET":
        return _user(sim, parts[1])
    if parts[0] != "orgs" or len(parts) < 3:
        return error(404, "", "Not Found")
    if parts[1] != app["org"]:
        return error(404, "", "Not Found")
    rest = parts[2:]
    if rest == ["members"] and m == "GET":
        return _members(sim, req)
    if rest == ["personal-access-tokens"] and m == "GET":
        return _pats(sim, req)
    if rest == ["personal-access-tokens"] and m == "POST":
        return _bulk_revoke(sim, req)
    if len(rest) == 2 and rest[0] == "personal-access-tokens" and m == "POST":
        return _revoke_pat(sim, req, rest[1])
    if rest == ["personal-access-token-requests"] and m == "GET":
        return _pat_requests(sim, req)
    if len(rest) == 2 and rest[0] == "personal-access-token-requests" and m == "POST":
        return _review_request(sim, req, rest[1])
    if rest == ["installations"] and m == "GET":
        return _installations(sim, req)
    if rest == ["credential-authorizations"] and m == "GET":
        return _credentials(sim, req)
    if len(rest) == 2 and rest[0] == "credential-authorizations" and m == "DELETE":
        return _delete_credential(sim, req, rest[1])
    if rest == ["audit-log"] and m == "GET":
        return _audit_log(sim, req)
    return error(404, "", "Not Found")


def _paged(sim: Sim, req: Req, key: str, total: int, ok: Any, default: int = 30) -> tuple[list[int], dict]:
    """Page-number paging; remembers where each page starts so deep pages don't rescan."""
    per_page = bounded(req.query.get("per_page"), default, 100)
    page = bounded(req.query.get("page"), 1, 10**9)
    t = sim.tenant
    cache = t.__dict__.setdefault("_gh_pages", {})
    start = cache.get((key, per_page, page))
    if start is None:
        start, seen = 0, 0
        skip = (page - 1) * per_page
        while start < total and seen < skip:
            if ok(start):
                seen += 1
            start += 1
    positions, nxt = scan(start, per_page, total, ok)
    headers = {}
    if nxt is not None:
        cache[(key, per_page, page + 1)] = nxt
        headers["Link"] = (
            f'<{next_url(req.base, req.path, req.query, per_page=per_page, page=page + 1)}>; rel="next"'
        )
    return positions, headers


def _account(login: str, uid: int, kind: str = "User", node: str = "MDQ6VXNlcj") -> dict:
    """A simple-user: every field the description requires (hypermedia URLs included)."""
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"{node}{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "site_admin": False,
    }


def _simple_user(sim: Sim, i: int) -> dict:
    t = sim.tenant
    return _account(t.github_logins[i], t.github_ids[i])


def _members(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    status = t.status
    positions, headers = _paged(sim, req, "members", t.n, lambda i: status[i] != DEPROVISIONED)
    return Resp(200, [_simple_user(sim, i) for i in positions], headers)


def _user(sim: Sim, login: str) -> Resp:
    t = sim.tenant
    i = t.by_login.get(login)
    if i is None:
        return error(404, "", "Not Found")
    return Resp(
        200,
        {
            **_simple_user(sim, i),
            "name": t.name(i),
            "company": "@acmecorp",
            "blog": "",
            "location": None,
            "email": t.email[i],
            "hireable": None,
            "bio": None,
            "public_repos": 3 + i % 17,
            "public_gists": i % 3,
            "followers": i % 40,
            "following": i % 25,
            "created_at": iso(t.created[i])[:19] + "Z",
            "updated_at": iso(t.now)[:19] + "Z",
        },
    )


def _permissions(sim: Sim, app: int, variant: int) -> dict:
    variants = APPS[app].github
    return {"organization": {}, "repository": dict(variants[variant % len(variants)][1]), "other": {}}


def _pat_json(sim: Sim, pos: int) -> dict:
    t = sim.tenant
    st = t.store("github")
    a, v = st.app[pos], st.variant[pos]
    pid = t.pat_id(pos)
    expires = st.created[pos] + 86400 * 366 if pos % 5 else None
    return {
        "id": pid,
        "owner": _simple_user(sim, st.person[pos]),
        "repository_selection": "all" if pos % 3 == 0 else "subset",
        "repositories_url": f"https://api.github.com/organizations/1/personal-access-token/{pid}/repositories",
        "permissions": _permissions(sim, a, v),
        "access_granted_at": iso(st.created[pos])[:19] + "Z",
        "token_id": 200_000 + pos,
        "token_name": APPS[a].github[v % len(APPS[a].github)][0],
        "token_expired": bool(expires and expires < time.time()),
        "token_expires_at": iso(expires)[:19] + "Z" if expires else None,
        "token_last_used_at": iso(st.last_used[pos])[:19] + "Z" if st.last_used[pos] else None,
    }


def _pats(sim: Sim, req: Req) -> Resp:
    st = sim.tenant.store("github")
    alive, flags = st.alive, st.flags
    positions, headers = _paged(sim, req, "pats", len(st), lambda p: alive[p] and not flags[p] & F_CLASSIC)
    return Resp(200, [_pat_json(sim, p) for p in positions], headers)


def _revoke_pat(sim: Sim, req: Req, pat_id: str) -> Resp:
    body = req.json()
    if not isinstance(body, dict) or body.get("action") != "revoke":
        return Resp(
            422,
            {
                "message": 'Invalid request.\n\n"action" must be "revoke".',
                "documentation_url": DOCS,
                "status": "422",
            },
        )
    t = sim.tenant
    st = t.store("github")
    pos = int(pat_id) - 100_000 if pat_id.isdigit() else -1
    with t.lock:
        if not st.is_alive(pos) or st.flags[pos] & F_CLASSIC:
            return sim.gone("github", req, error(404, "", "Not Found"))
        t.revoke("github", pos)
    return Resp(204)


def _bulk_revoke(sim: Sim, req: Req) -> Resp:
    body = req.json()
    if (
        not isinstance(body, dict)
        or body.get("action") != "revoke"
        or not isinstance(body.get("pat_ids"), list)
    ):
        return Resp(422, {"message": "Invalid request.", "documentation_url": DOCS, "status": "422"})
    t = sim.tenant
    st = t.store("github")
    with t.lock:
        for pid in body["pat_ids"]:
            pos = int(pid) - 100_000
            if st.is_alive(pos) and not st.flags[pos] & F_CLASSIC:
                t.revoke("github", pos)
    return Resp(202, {})


def _request_json(sim: Sim, r: dict) -> dict:
    t = sim.tenant
    a, v = r["app"], r["variant"]
    return {
        "id": r["id"],
        "reason": r["reason"] or None,
        "owner": _simple_user(sim, r["person"]),
        "repository_selection": "all",
        "repositories_url": f"https://api.github.com/organizations/1/personal-access-token-requests/{r['id']}/repositories",
        "permissions": _permissions(sim, a, v),
        "created_at": iso(r["created"])[:19] + "Z",
        "token_id": 800_000 + r["id"],
        "token_name": APPS[a].github[v % len(APPS[a].github)][0],
        "token_expired": False,
        "token_expires_at": iso(t.now + 86400 * 90)[:19] + "Z",
        "token_last_used_at": None,
    }


def _pat_requests(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    t.store("github")
    with t.lock:
        reqs = list(t.pat_requests.values())
    positions, headers = _paged(sim, req, f"reqs{len(reqs)}", len(reqs), lambda i: True)
    return Resp(200, [_request_json(sim, reqs[i]) for i in positions], headers)


def _review_request(sim: Sim, req: Req, rid: str) -> Resp:
    body = req.json()
    if not isinstance(body, dict) or body.get("action") not in ("approve", "deny"):
        return Resp(
            422,
            {
                "message": 'Invalid request.\n\n"action" must be one of approve, deny.',
                "documentation_url": DOCS,
                "status": "422",
            },
        )
    t = sim.tenant
    t.store("github")
    with t.lock:
        r = t.pat_requests.pop(int(rid), None) if rid.isdigit() else None
        if r is None:
            return error(404, "", "Not Found")
        if body["action"] == "approve":
            t.add_grant("github", r["person"], r["app"], variant=r["variant"])
    return Resp(204)


def _installations(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    apps = [a for a in t.provider_apps["github"] if APPS[a].github_app]
    positions, headers = _paged(sim, req, "inst", len(apps), lambda i: True)
    items = []
    for i in positions:
        a = apps[i]
        slug = APPS[a].name.lower().replace(" ", "-")
        iid = t.github_installation_ids[a]
        items.append(
            {
                "id": iid,
                "account": _account(t.org, 4_200_000, "Organization", "MDEyOk9yZ2FuaXphdGlvbj"),
                "app_id": t.github_app_ids[a],
                "app_slug": slug,
                "client_id": f"Iv23li{iid:x}",
                "target_id": 4_200_000,
                "target_type": "Organization",
                "repository_selection": "all",
                "permissions": {
                    "contents": "write",
                    "metadata": "read",
                    "pull_requests": "write",
                    "issues": "write",
                },
                "events": ["pull_request", "issue_comment", "push"],
                "created_at": iso(t.now - 86400 * (100 + a))[:19] + "Z",
                "updated_at": iso(t.now - 86400 * 5)[:19] + "Z",
                "single_file_name": None,
                "access_tokens_url": f"https://api.github.com/app/installations/{iid}/access_tokens",
                "repositories_url": "https://api.github.com/installation/repositories",
                "html_url": f"https://github.com/organizations/{t.org}/settings/installations/{iid}",
                "suspended_by": None,
                "suspended_at": None,
            }
        )
    return Resp(200, {"total_count": len(apps), "installations": items}, headers)


def _classic_scopes(sim: Sim, app: int, variant: int) -> list[str]:
    perms = APPS[app].github[variant % len(APPS[app].github)][1]
    scopes = ["repo" if perms.get("contents") == "write" else "public_repo", "read:org"]
    if "workflows" in perms:
        scopes.append("workflow")
    return scopes


def _credentials(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    st = t.store("github")
    alive, flags = st.alive, st.flags
    positions, headers = _paged(sim, req, "creds", len(st), lambda p: alive[p] and flags[p] & F_CLASSIC)
    items = []
    for pos in positions:
        p = st.person[pos]
        items.append(
            {
                "login": t.github_logins[p],
                "credential_id": t.credential_id(pos),
                "credential_type": "personal access token",
                "token_last_eight": f"{pos:08x}"[-8:],
                "credential_authorized_at": iso(st.created[pos])[:19] + "Z",
                "credential_accessed_at": iso(st.last_used[pos])[:19] + "Z" if st.last_used[pos] else None,
                "authorized_credential_id": 300_000 + pos,
                "authorized_credential_title": APPS[st.app[pos]].github[
                    st.variant[pos] % len(APPS[st.app[pos]].github)
                ][0],
                "authorized_credential_note": None,
                "authorized_credential_expires_at": None,
                "scopes": _classic_scopes(sim, st.app[pos], st.variant[pos]),
            }
        )
    return Resp(200, items, headers)


def _delete_credential(sim: Sim, req: Req, cred: str) -> Resp:
    t = sim.tenant
    st = t.store("github")
    pos = int(cred) - 9_000_000 if cred.isdigit() else -1
    with t.lock:
        if not st.is_alive(pos) or not st.flags[pos] & F_CLASSIC:
            return sim.gone("github", req, error(404, "", "Not Found"))
        t.revoke("github", pos)
    return Resp(204)


ACTIONS = {
    "authorize": "personal_access_token.access_granted",
    "revoke": "personal_access_token.access_revoked",
    "activity": "git.clone",
    "request": "personal_access_token.request_created",
}


def _audit_log(sim: Sim, req: Req) -> Resp:
    t = sim.tenant
    events = t.events("github")
    since = 0.0
    phrase = req.query.get("phrase", "")
    if "created:>=" in phrase:
        value = phrase.split("created:>=", 1)[1].split()[0]
        try:
            since = time.mktime(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        except ValueError:
            return Resp(422, {"message": "Invalid phrase", "documentation_url": DOCS, "status": "422"})
    idx = [i for i in range(len(events) - 1, -1, -1) if events[i].ts >= since]
    positions, headers = _paged(sim, req, f"audit{len(idx)}:{since}", len(idx), lambda i: True, default=30)
    st = t.store("github")
    items = []
    for j in positions:
        i = idx[j]
        e = events[i]
        login = t.github_logins[e.person]
        item = {
            "@timestamp": e.ts * 1000,
            "_document_id": f"sim-{i}",
            "action": ACTIONS[e.action],
            "actor": login,
            "actor_id": t.github_ids[e.person],
            "user": login,
            "user_id": t.github_ids[e.person],
            "org": t.org,
            "created_at": e.ts * 1000,
            "actor_ip": f"192.0.2.{e.person % 250 + 1}",
        }
        if e.pos >= 0:
            item["programmatic_access_type"] = (
                "Classic personal access token"
                if st.flags[e.pos] & F_CLASSIC
                else "Fine-grained personal access token"
            )
            # the PAT listing's token_id, which its description says "can also be found in audit log
            # events"; there is no pat_id in an audit event
            item["token_id"] = 200_000 + e.pos
            item["hashed_token"] = base64.b64encode(
                hashlib.sha256(f"sim-token-{e.pos}".encode()).digest()
            ).decode()
            item["token_scopes"] = ",".join(
                f"{k}:{v}" for k, v in _permissions(sim, e.app, st.variant[e.pos])["repository"].items()
            )
        items.append(item)
    return Resp(200, items, headers)
