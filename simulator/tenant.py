"""The seeded organisation behind the simulator: people, devices, apps and grants in compact arrays.

Grants are held per provider in parallel ``array`` columns (about 20 bytes a grant), so 100k grants in
each of the four providers fit in a few megabytes and are generated in well under a second each.
Positions in those arrays are the grants' identity: every provider id (Graph grant ids, Okta token ids,
GitHub PAT ids) is a reversible encoding of the position, so lookups need no extra index.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import math
import random
import struct
import threading
import time
import uuid
from array import array
from dataclasses import dataclass

from . import catalog
from .catalog import APPS

PROVIDERS = ("google", "entra", "okta", "github")
ACTIVE, SUSPENDED, DEPROVISIONED = 0, 1, 2
STATUS_NAMES = ("active", "suspended", "deprovisioned")
NO_PERSON = 0xFFFFFFFF

F_TOKEN = 1  # okta: the pair also holds a refresh token
F_CLASSIC = 2  # github: a classic PAT seen through a SAML credential authorization
F_ALL = 4  # entra: an AllPrincipals (tenant-wide) consent
F_TOKEN_GONE = 8  # okta: the refresh token was revoked but the consent remains

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def b62(n: int, width: int = 17) -> str:
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out)).rjust(width, "0")


def unb62(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 62 + B62.index(ch)
    return n


def _h(*parts: object) -> bytes:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).digest()


def _uuid(*parts: object) -> str:
    return str(uuid.UUID(bytes=_h(*parts)[:16], version=4))


def iso(ts: float | int | None) -> str | None:
    if not ts:
        return None
    return _iso(int(ts))


@functools.lru_cache(maxsize=65536)
def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"


class GrantStore:
    """Column arrays of one provider's grants; a grant is its position. Deleted grants stay as holes."""

    def __init__(self) -> None:
        self.person = array("I")
        self.app = array("H")
        self.variant = array("B")
        self.created = array("I")
        self.last_used = array("I")
        self.flags = bytearray()
        self.alive = bytearray()
        self.by_person: dict[int, list[int]] = {}
        self.custom_scopes: dict[int, list[str]] = {}
        self.alive_count = 0

    def add(self, person: int, app: int, variant: int, created: int, last_used: int, flags: int = 0) -> int:
        pos = len(self.alive)
        self.person.append(person)
        self.app.append(app)
        self.variant.append(variant)
        self.created.append(created)
        self.last_used.append(last_used)
        self.flags.append(flags)
        self.alive.append(1)
        self.by_person.setdefault(person, []).append(pos)
        self.alive_count += 1
        return pos

    def kill(self, pos: int) -> bool:
        if 0 <= pos < len(self.alive) and self.alive[pos]:
            self.alive[pos] = 0
            self.alive_count -= 1
            return True
        return False

    def is_alive(self, pos: int) -> bool:
        return 0 <= pos < len(self.alive) and bool(self.alive[pos])

    def for_person(self, person: int) -> list[int]:
        alive = self.alive
        return [p for p in self.by_person.get(person, ()) if alive[p]]

    def find(self, person: int, app: int) -> int | None:
        for p in self.by_person.get(person, ()):
            if self.alive[p] and self.app[p] == app:
                return p
        return None

    def __len__(self) -> int:
        return len(self.alive)


@dataclass(slots=True)
class Event:
    ts: int
    action: str  # authorize | activity | revoke | request
    pos: int  # grant position (or -1)
    person: int
    app: int


class Tenant:
    """A deterministic organisation seen through four providers. All mutation goes through ``lock``."""

    def __init__(
        self, *, seed: int = 1, identities: int = 300, grants: int = 3000, events: int | None = None
    ):
        self.seed = seed
        self.n = max(1, identities)
        self.grants_per_provider = max(0, grants)
        self.events_cap = min(self.grants_per_provider, 2000) if events is None else events
        self.lock = threading.RLock()
        self.now = int(time.time()) // 3600 * 3600
        self.domain = catalog.DOMAIN
        self.org = "acmecorp"
        self.tenant_id = _uuid("tenant", seed)
        self._build_people()
        self._build_devices()
        self._build_apps()
        self._stores: dict[str, GrantStore] = {}
        self._events: dict[str, list[Event]] = {}
        self.entra_roles: list[dict] = []
        self.pat_requests: dict[int, dict] = {}
        self.okta_assignments: set[tuple[int, int]] = set()
        self.tokens: dict[str, dict[str, float]] = {p: {} for p in PROVIDERS}
        self._next_request_id = 5000

    # --- people and devices

    def _build_people(self) -> None:
        rng = random.Random(f"people:{self.seed}")
        n = self.n
        self.first: list[str] = []
        self.last: list[str] = []
        self.email: list[str] = []
        self.dept: list[str] = []
        self.title: list[str] = []
        self.manager = array("i", [-1]) * n
        self.status = bytearray(n)
        self.created = array("I", [0]) * n
        self.is_admin = bytearray(n)
        seen: set[str] = set()
        depts = catalog.DEPARTMENTS
        heads = {}
        for i in range(n):
            first, last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
            local = f"{first}.{last}".lower().replace("é", "e")
            k = 2
            while local in seen:
                local = f"{first}.{last}{k}".lower().replace("é", "e")
                k += 1
            seen.add(local)
            self.first.append(first)
            self.last.append(last)
            self.email.append(f"{local}@{self.domain}")
            self.created[i] = self.now - 86400 * rng.randrange(30, 3000)
        # a CEO, one head per department, then managers and ICs per department
        self.dept.append("Executive")
        self.title.append("Chief Executive Officer")
        for i in range(1, min(n, len(depts) + 1)):
            name = depts[i - 1][0]
            heads[name] = i
            self.dept.append(name)
            self.title.append(f"VP {name}")
            self.manager[i] = 0
        weights = [d[1] for d in depts]
        members: dict[str, list[int]] = {d[0]: [] for d in depts}
        for i in range(len(self.dept), n):
            d = rng.choices(depts, weights=weights)[0]
            members[d[0]].append(i)
            self.dept.append(d[0])
            self.title.append("")
        for name, mgr_title, ic_title in ((d[0], d[2], d[3]) for d in depts):
            people = members[name]
            head = heads.get(name, 0)
            n_mgr = max(1, math.ceil(len(people) / 8)) if people else 0
            managers = people[:n_mgr]
            for j, m in enumerate(managers):
                self.title[m] = mgr_title
                self.manager[m] = head if j < 3 else managers[rng.randrange(min(3, j))]
            for ic in people[n_mgr:]:
                self.title[ic] = ic_title
                self.manager[ic] = rng.choice(managers)
        for i in range(len(depts) + 1, n):
            r = rng.random()
            if r < 0.03:
                self.status[i] = SUSPENDED
            elif r < 0.05:
                self.status[i] = DEPROVISIONED
        self.admin = heads.get("IT", 0)
        self.is_admin[self.admin] = 1
        self._place_demo_personas(heads)
        self.by_email = {e: i for i, e in enumerate(self.email)}
        self.google_ids = [f"1{(self.seed * 104729 + i * 7919) % 10**20:020d}" for i in range(n)]
        self.entra_ids = [_uuid("entra-user", self.seed, i) for i in range(n)]
        self.okta_ids = [
            "00u" + b62(int.from_bytes(_h("okta-user", self.seed, i)[:10]))[:17] for i in range(n)
        ]
        self.github_ids = [60_000_000 + self.seed * 1_000_000 + i for i in range(n)]
        self.github_logins = [e.split("@")[0].replace(".", "-") + "-acme" for e in self.email]
        self.by_google = {v: i for i, v in enumerate(self.google_ids)}
        self.by_entra = {v: i for i, v in enumerate(self.entra_ids)}
        self.by_okta = {v: i for i, v in enumerate(self.okta_ids)}
        self.by_login = {v: i for i, v in enumerate(self.github_logins)}

    def _place_demo_personas(self, heads: dict[str, int]) -> None:
        """Give the demo logins' names and emails to fitting people (active, not a department head)."""
        n, heads_ = self.n, set(heads.values()) | {0}
        reports: dict[int, list[int]] = {}
        for i in range(n):
            if self.manager[i] >= 0 and self.status[i] == 0:
                reports.setdefault(self.manager[i], []).append(i)

        def pick(ok) -> int | None:
            return next((i for i in range(n) if i not in heads_ and i not in taken and ok(i)), None)

        taken: set[int] = set()
        it = [i for i in range(n) if self.dept[i] == "IT"]
        manager = pick(lambda i: self.status[i] == 0 and len(reports.get(i, [])) >= 2)
        chosen = {
            "iam": pick(lambda i: i in it and self.status[i] == 0 and i != self.admin),
        }
        taken |= {v for v in chosen.values() if v is not None}
        chosen["iam2"] = pick(lambda i: i in it and self.status[i] == 0 and i != self.admin)
        taken |= {v for v in chosen.values() if v is not None}
        chosen["manager"] = manager if manager not in taken else None
        taken |= {v for v in chosen.values() if v is not None}
        if chosen["manager"] is not None:
            chosen["employee"] = next((r for r in reports[chosen["manager"]] if r not in taken), None)
            taken |= {v for v in chosen.values() if v is not None}
        chosen["owner"] = pick(
            lambda i: (
                self.status[i] == 0
                and chosen.get("manager") is not None
                and self.dept[i] != self.dept[chosen["manager"]]
            )
        )
        for role, first, last, _ in catalog.DEMO_PERSONAS:
            i = chosen.get(role)
            if i is not None:
                self.first[i], self.last[i] = first, last
                self.email[i] = f"{role}@{catalog.DEMO_DOMAIN}"

    def name(self, i: int) -> str:
        return f"{self.first[i]} {self.last[i]}"

    def _build_devices(self) -> None:
        rng = random.Random(f"devices:{self.seed}")
        self.dev_owner = array("I")
        self.dev_platform = bytearray()
        self.dev_managed = bytearray()
        self.dev_compliant = bytearray()
        self.dev_last_seen = array("I")
        self.person_devices: dict[int, list[int]] = {}
        weights = [p[1] for p in catalog.PLATFORMS]
        for i in range(self.n):
            for _ in range(1 if rng.random() < 0.7 else 2):
                d = len(self.dev_owner)
                plat = rng.choices(range(len(catalog.PLATFORMS)), weights=weights)[0]
                managed = rng.random() < 0.8
                self.dev_owner.append(i)
                self.dev_platform.append(plat)
                self.dev_managed.append(managed)
                self.dev_compliant.append(managed and rng.random() < 0.9)
                self.dev_last_seen.append(self.now - rng.randrange(0, 86400 * 20))
                self.person_devices.setdefault(i, []).append(d)
        self.n_devices = len(self.dev_owner)

    def device_name(self, d: int) -> str:
        plat = catalog.PLATFORMS[self.dev_platform[d]]
        o = self.dev_owner[d]
        if plat[0] == "Windows":
            return f"DESKTOP-{_h('devname', self.seed, d).hex()[:7].upper()}"
        if plat[0] == "Linux":
            return f"{self.first[o].lower()}-thinkpad"
        return f"{self.first[o]}'s {plat[4]}"

    def device_id(self, d: int, provider: str) -> str:
        if provider == "okta":
            return "guo" + b62(int.from_bytes(_h("okta-dev", self.seed, d)[:10]))[:17]
        if provider == "google":
            return _h("google-dev", self.seed, d).hex()[:16]
        return _uuid("entra-dev", self.seed, d)

    def device_object_id(self, d: int) -> str:
        return _uuid("entra-devobj", self.seed, d)

    def primary_device(self, person: int) -> int | None:
        devs = self.person_devices.get(person)
        return devs[0] if devs else None

    # --- apps

    def _build_apps(self) -> None:
        s = self.seed
        self.google_client = [
            f"{100000000000 + int.from_bytes(_h('gnum', s, i)[:5]) % 899999999999}-"
            f"{''.join(B62[b % 36].lower() for b in _h('gcli', s, i))[:32]}.apps.googleusercontent.com"
            for i in range(len(APPS))
        ]
        self.entra_app_ids = [_uuid("entra-app", s, i) for i in range(len(APPS))]
        self.entra_sp_ids = [_uuid("entra-sp", s, i) for i in range(len(APPS))]
        self.graph_sp_id = _uuid("entra-graph-sp", s)
        self.okta_app_ids = [
            "0oa" + b62(int.from_bytes(_h("okta-app", s, i)[:10]))[:17] for i in range(len(APPS))
        ]
        self.github_app_ids = [300000 + i * 17 + s for i in range(len(APPS))]
        self.github_installation_ids = [50_000_000 + i * 101 + s for i in range(len(APPS))]
        self.app_by_google = {c: i for i, c in enumerate(self.google_client)}
        self.app_by_entra_sp = {c: i for i, c in enumerate(self.entra_sp_ids)}
        self.app_by_entra_app = {c: i for i, c in enumerate(self.entra_app_ids)}
        self.app_by_okta = {c: i for i, c in enumerate(self.okta_app_ids)}
        self.app_by_name = {a.name.lower(): i for i, a in enumerate(APPS)}
        self.provider_apps = {p: [i for i, a in enumerate(APPS) if getattr(a, p)] for p in PROVIDERS}

    def app_scopes(self, provider: str, app: int, variant: int) -> list[str]:
        variants = getattr(APPS[app], provider)
        if provider == "github":
            return [f"{k}:{v}" for k, v in variants[variant % len(variants)][1].items()]
        return list(variants[variant % len(variants)]) if variants else []

    def scopes(self, provider: str, pos: int) -> list[str]:
        st = self.store(provider)
        custom = st.custom_scopes.get(pos)
        if custom is not None:
            return custom
        scopes = self.app_scopes(provider, st.app[pos], st.variant[pos])
        if provider == "okta":
            # Okta issues refresh tokens only to consents that include offline_access
            scopes = [s for s in scopes if s != "offline_access"]
            if st.flags[pos] & F_TOKEN:
                scopes.append("offline_access")
        return scopes

    # --- grants

    def store(self, provider: str) -> GrantStore:
        st = self._stores.get(provider)
        if st is None:
            with self.lock:
                st = self._stores.get(provider)
                if st is None:
                    st = self._generate(provider)
                    self._stores[provider] = st
        return st

    def _generate(self, provider: str) -> GrantStore:
        rng = random.Random(f"grants:{provider}:{self.seed}")
        st = GrantStore()
        m = self.grants_per_provider
        apps = self.provider_apps[provider]
        if provider == "entra":
            m = self._generate_entra_tenant_wide(st, m)
        if not apps or m <= 0:
            return st
        if provider == "okta":
            pairs = math.ceil(m / 1.15)
        elif provider == "github":
            pairs = m
        else:
            pairs = m
        weights = []
        for i in range(self.n):
            w = rng.random() ** 2 + 0.2
            if provider == "github":
                if self.status[i] == DEPROVISIONED:
                    w = 0.0
                elif self.dept[i] != "Engineering":
                    w *= 0.15
            weights.append(w)
        cap = len(apps)
        pairs = min(pairs, sum(1 for w in weights if w) * cap)
        if provider == "okta":
            tokens = min(m - pairs, pairs)
        total_w = sum(weights)
        counts = [min(cap, int(pairs * w / total_w)) for w in weights]
        short = pairs - sum(counts)
        i = 0
        while short > 0:
            if weights[i] and counts[i] < cap:
                counts[i] += 1
                short -= 1
            i = (i + 1) % self.n
        cum = list(itertools.accumulate(APPS[a].weight for a in apps))
        now = self.now
        choices, randrange, rand = rng.choices, rng.randrange, rng.random
        j = 0
        for person, k in enumerate(counts):
            if not k:
                continue
            if k >= cap:
                chosen = list(apps)
            else:
                seen: dict[int, None] = {}
                while len(seen) < k:
                    for a in choices(apps, cum_weights=cum, k=k + 2):
                        seen[a] = None
                chosen = list(seen)[:k]
            for a in chosen:
                nvar = len(getattr(APPS[a], provider))
                created = now - randrange(86400, 86400 * 700)
                last_used = 0 if rand() < 0.15 else created + randrange(max(1, now - created))
                flags = 0
                if provider == "okta" and (j * 7919) % pairs < tokens:
                    flags = F_TOKEN
                elif provider == "github" and j % 10 == 9:
                    flags = F_CLASSIC
                st.add(person, a, randrange(nvar) if nvar > 1 else 0, created, last_used, flags)
                j += 1
        if provider == "github":
            self._seed_pat_requests(rng)
        return st

    def _generate_entra_tenant_wide(self, st: GrantStore, m: int) -> int:
        """Seed AllPrincipals consents and application-permission assignments; return what's left of m."""
        tenant_wide = [i for i in self.provider_apps["entra"] if APPS[i].sanctioned][:3]
        for a in tenant_wide:
            if m <= 0:
                break
            st.add(NO_PERSON, a, 0, self.now - 86400 * 400, self.now - 3600, F_ALL)
            m -= 1
        roles = {v: k for k, v in catalog.GRAPH_APP_ROLES}
        for a, app in enumerate(APPS):
            for role in app.entra_app_roles:
                if m <= 0:
                    break
                self.entra_roles.append(
                    {
                        "id": base64.urlsafe_b64encode(_h("ara", self.seed, a, role)[:18]).decode(),
                        "app": a,
                        "appRoleId": roles[role],
                        "role": role,
                        "created": self.now - 86400 * 300,
                        "alive": True,
                    }
                )
                m -= 1
        return m

    def _seed_pat_requests(self, rng: random.Random) -> None:
        engineers = [i for i in range(self.n) if self.dept[i] == "Engineering" and self.status[i] == ACTIVE]
        apps = list(self.provider_apps["github"])
        for _ in range(min(50, max(3, self.grants_per_provider // 200))):
            if not engineers:
                break
            self.add_pat_request(
                rng.choice(engineers), rng.choice(apps), reason="Needed for AI coding agent", record=False
            )

    def add_pat_request(self, person: int, app: int, reason: str = "", record: bool = True) -> int:
        with self.lock:
            rid = self._next_request_id
            self._next_request_id += 1
            self.pat_requests[rid] = {
                "id": rid,
                "person": person,
                "app": app,
                "variant": rid % len(APPS[app].github),
                "created": self.now - (rid % 50) * 3600,
                "reason": reason,
            }
            if record:
                self._event("github", "request", -1, person, app)
            return rid

    # --- ids (reversible)

    def entra_grant_id(self, pos: int) -> str:
        raw = struct.pack(">I", pos) + _h("entra-grant", self.seed, pos)[:26]
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def entra_grant_pos(self, gid: str) -> int | None:
        try:
            raw = base64.urlsafe_b64decode(gid + "=" * (-len(gid) % 4))
            pos = struct.unpack(">I", raw[:4])[0]
        except (ValueError, struct.error):
            return None
        return pos if self.entra_grant_id(pos) == gid else None

    def okta_token_id(self, pos: int) -> str:
        return f"oar{pos:017x}"

    def okta_grant_id(self, pos: int, scope_idx: int) -> str:
        return f"oag{pos * 64 + scope_idx:017x}"

    def pat_id(self, pos: int) -> int:
        return 100_000 + pos

    def credential_id(self, pos: int) -> int:
        return 9_000_000 + pos

    # --- external ids, as the adapters build them

    def external_id(self, provider: str, pos: int, token: bool = False) -> str:
        st = self.store(provider)
        p, a = st.person[pos], st.app[pos]
        if provider == "google":
            return f"{self.google_ids[p]}:{self.google_client[a]}"
        if provider == "entra":
            return self.entra_grant_id(pos)
        if provider == "okta":
            return self.okta_token_id(pos) if token else f"{self.okta_ids[p]}:{self.okta_app_ids[a]}"
        return f"cred:{self.credential_id(pos)}" if st.flags[pos] & F_CLASSIC else f"pat:{self.pat_id(pos)}"

    def locate(self, provider: str, external_id: str) -> tuple[str, int] | None:
        """Find the grant the adapters call ``external_id``: ("grant"|"token"|"role", position)."""
        st = self.store(provider)
        if provider == "google":
            user, _, client = external_id.partition(":")
            p, a = self.by_google.get(user), self.app_by_google.get(client)
            pos = None if p is None or a is None else st.find(p, a)
            return None if pos is None else ("grant", pos)
        if provider == "entra":
            for i, r in enumerate(self.entra_roles):
                if r["id"] == external_id:
                    return ("role", i) if r["alive"] else None
            pos = self.entra_grant_pos(external_id)
            return ("grant", pos) if pos is not None and st.is_alive(pos) else None
        if provider == "okta":
            if external_id.startswith("oar"):
                try:
                    pos = int(external_id[3:], 16)
                except ValueError:
                    return None
                live = st.is_alive(pos) and st.flags[pos] & F_TOKEN and not st.flags[pos] & F_TOKEN_GONE
                return ("token", pos) if live else None
            user, _, client = external_id.partition(":")
            p, a = self.by_okta.get(user), self.app_by_okta.get(client)
            pos = None if p is None or a is None else st.find(p, a)
            return None if pos is None else ("grant", pos)
        kind, _, num = external_id.partition(":")
        if not num.isdigit() or kind not in ("pat", "cred"):
            return None
        pos = int(num) - (9_000_000 if kind == "cred" else 100_000)
        if not st.is_alive(pos) or bool(st.flags[pos] & F_CLASSIC) != (kind == "cred"):
            return None
        return ("grant", pos)

    def grant_exists(self, provider: str, external_id: str) -> bool:
        """Whether the grant the adapters call ``external_id`` is still there."""
        with self.lock:
            return self.locate(provider, external_id) is not None

    def remove(self, provider: str, external_id: str) -> bool:
        """Remove a grant as if someone revoked it at the provider, outside Lanyard."""
        with self.lock:
            found = self.locate(provider, external_id)
            if found is None:
                return False
            kind, pos = found
            if kind == "role":
                self.entra_roles[pos]["alive"] = False
                return True
            if kind == "token":
                self.store(provider).flags[pos] |= F_TOKEN_GONE
                return True
            return self.revoke(provider, pos)

    def adapter_grant_count(self, provider: str) -> int:
        """How many grants an adapter listing the whole tenant should yield."""
        st = self.store(provider)
        with self.lock:
            if provider == "entra":
                return st.alive_count + sum(1 for r in self.entra_roles if r["alive"])
            if provider == "okta":
                tokens = sum(
                    1
                    for pos in range(len(st))
                    if st.alive[pos] and st.flags[pos] & F_TOKEN and not st.flags[pos] & F_TOKEN_GONE
                )
                return st.alive_count + tokens
            return st.alive_count

    def member_count(self, provider: str) -> int:
        if provider == "github":
            return sum(1 for s in self.status if s != DEPROVISIONED)
        return self.n

    # --- mutation

    def revoke(self, provider: str, pos: int) -> bool:
        st = self.store(provider)
        with self.lock:
            if st.kill(pos):
                self._event(provider, "revoke", pos, st.person[pos], st.app[pos])
                return True
            return False

    def add_grant(
        self,
        provider: str,
        person: int,
        app: int,
        *,
        variant: int = 0,
        scopes: list[str] | None = None,
        flags: int = 0,
    ) -> int:
        st = self.store(provider)
        with self.lock:
            existing = st.find(person, app) if provider in ("google", "okta") else None
            if existing is not None:
                return existing
            pos = st.add(person, app, variant, self.now, 0, flags)
            if scopes is not None:
                st.custom_scopes[pos] = scopes
            self._event(provider, "authorize", pos, person, app)
            return pos

    def set_status(self, person: int, status: int) -> None:
        with self.lock:
            self.status[person] = status

    # --- activity

    def events(self, provider: str) -> list[Event]:
        ev = self._events.get(provider)
        if ev is None:
            with self.lock:
                ev = self._events.get(provider)
                if ev is None:
                    ev = self._seed_events(provider)
                    self._events[provider] = ev
        return ev

    def _seed_events(self, provider: str) -> list[Event]:
        st = self.store(provider)
        out: list[Event] = []
        total = len(st)
        k = min(self.events_cap, total)
        if k:
            step = max(1, total // k)
            for j in range(k):
                pos = (j * step) % total
                p, a = st.person[pos], st.app[pos]
                if p == NO_PERSON:
                    continue
                if j % 2 and st.last_used[pos]:
                    out.append(Event(st.last_used[pos], "activity", pos, p, a))
                else:
                    out.append(Event(st.created[pos], "authorize", pos, p, a))
        out.sort(key=lambda e: e.ts)
        return out

    def _event(self, provider: str, action: str, pos: int, person: int, app: int) -> None:
        ev = self.events(provider)
        ev.append(Event(max(int(time.time()), ev[-1].ts if ev else 0), action, pos, person, app))

    # --- tokens issued by the fake token endpoints

    def issue_token(self, provider: str, prefix: str, ttl: int = 3600) -> str:
        tok = prefix + base64.urlsafe_b64encode(
            _h("tok", provider, time.time_ns(), id(self))
        ).decode().rstrip("=")
        with self.lock:
            self.tokens[provider][tok] = time.time() + ttl
        return tok

    def token_valid(self, provider: str, tok: str) -> bool:
        exp = self.tokens[provider].get(tok)
        return exp is not None and exp > time.time()

    def expire_tokens(self, provider: str | None = None) -> None:
        with self.lock:
            for p in [provider] if provider else PROVIDERS:
                self.tokens[p].clear()

    # --- summary

    def state(self) -> dict:
        out = {
            "seed": self.seed,
            "identities": self.n,
            "devices": self.n_devices,
            "domain": self.domain,
            "delegated_admin": self.email[self.admin],
            "statuses": {
                name: sum(1 for s in self.status if s == code) for code, name in enumerate(STATUS_NAMES)
            },
            "providers": {},
        }
        for p in PROVIDERS:
            out["providers"][p] = {
                "users": self.member_count(p),
                "grants": self.adapter_grant_count(p),
                "apps": len(self.provider_apps[p]),
                "events": len(self.events(p)),
            }
        out["providers"]["github"]["pending_pat_requests"] = len(self.pat_requests)
        out["providers"]["entra"]["all_principals_grants"] = sum(
            1
            for pos in range(len(self.store("entra")))
            if self.store("entra").alive[pos] and self.store("entra").flags[pos] & F_ALL
        )
        out["providers"]["entra"]["app_role_assignments"] = sum(1 for r in self.entra_roles if r["alive"])
        out["providers"]["google"]["devices"] = sum(
            1
            for d in range(self.n_devices)
            if catalog.PLATFORMS[self.dev_platform[d]][0] in ("iOS", "Android")
        )
        out["providers"]["entra"]["devices"] = self.n_devices
        out["providers"]["okta"]["devices"] = sum(  # Okta's device inventory has no Linux platform
            1 for d in range(self.n_devices) if catalog.PLATFORMS[self.dev_platform[d]][0] != "Linux"
        )
        out["providers"]["github"]["devices"] = 0
        return out
