"""What the decision point knows about the people, devices and connectors a batch of questions names.

``load(questions)`` reads the register for a whole batch at once, with a constant number of queries
however many questions it holds (one evaluation is a batch of one):

1. the identities the subjects name (by e-mail or the IdP's id), with their sources, and in the same
   statement every identity of the same people (their standing: a person deprovisioned at the HR
   source is leaving everywhere, ``connectors.selectors``);
2. the connectors the resources name (by id, MCP server URL, or OAuth client id: one more query);
3. the live grants those people hold on those connectors, with the attestation state of each;
4. the provisioned requests of those people for those connectors (when they have portal accounts);
5. the devices the subjects name.

Nothing is cached across decisions (but the ranking of sources for HR data, a minute at most): a
grant revoked, a connector suspended or a person suspended is seen by the very next decision.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from audit.services import values_in as _values_in
from connectors.models import Connector, ConnectorApp, Grant, Identity
from connectors.people import hr_order
from governance.models import Attestation, AttestationCampaign, ConnectorRequest

from .schema import ACTIONS, NAMESPACE

MAX_ID = 500


def _rows(sql: str, params: list, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Run one hand-written statement of the hot path (the ORM's compile costs more than the query)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _in(column: str, values) -> tuple[str, list]:
    values = list(values)
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values


def values_in(field_name: str, values) -> Q:
    """``field IN (...)``: plain for the few values a decision names (the planner uses the index);
    ``audit.services.values_in``'s one-parameter form only for a long batch."""
    values = list(values)
    return Q(**{f"{field_name}__in": values}) if len(values) <= 64 else _values_in(field_name, values)


TOOL_KEYS = {"tool": "tool", "resource": "resource", "prompt": "prompt", "uri": "resource"}
NOBODY = "nobody"
_SEVERITY = {Identity.Status.ACTIVE: 0, Identity.Status.SUSPENDED: 1, Identity.Status.DEPROVISIONED: 2}


class QuestionError(ValueError):
    """A question Lanyard cannot put to the policies (an unknown type or action): a 400 for it."""


@dataclass
class Question:
    subject: dict[str, Any]
    action: dict[str, Any]
    resource: dict[str, Any]
    context: dict[str, Any]


@dataclass
class Ask:
    """One question, resolved against the register."""

    question: Question
    action: str = ""
    error: str = ""
    subject_key: str = ""
    identity: dict[str, Any] | None = None
    connector: Connector | None = None
    connector_ref: dict[str, str] = field(default_factory=dict)  # how an unknown connector was named
    tool: tuple[str, str] | None = None  # (kind, name)
    app: ConnectorApp | None = None
    device_id: str = ""
    lanyard_id: int | None = None
    device: dict[str, Any] | None = None
    grant: dict[str, Any] | None = None


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise QuestionError(f"{what} must be a string.")
    value = str(value).strip()
    if len(value) > MAX_ID:
        raise QuestionError(f"{what} is longer than {MAX_ID} characters.")
    return value


def _props(part: dict[str, Any]) -> dict[str, Any]:
    props = part.get("properties")
    return props if isinstance(props, dict) else {}


def parse(ask: Ask) -> None:
    """Check the question's vocabulary and note how it names its subject, connector and device."""
    q = ask.question
    if q.subject.get("type") != "identity":
        raise QuestionError(
            f"Unknown subject type {q.subject.get('type')!r}; Lanyard decides for 'identity'."
        )
    name = _text(q.action.get("name"), "action.name")
    if name not in ACTIONS:
        raise QuestionError(f"Unknown action {name!r}; one of {', '.join(ACTIONS)}.")
    ask.action = name
    ask.subject_key = _text(q.subject.get("id"), "subject.id")
    if not ask.subject_key:
        raise QuestionError("subject.id is empty; send the person's e-mail or the IdP's id.")
    sprops = _props(q.subject)
    ask.device_id = _text(sprops.get("device"), "subject.properties.device")
    own = _text(sprops.get("lanyard_identity"), "subject.properties.lanyard_identity")
    ask.lanyard_id = int(own) if own.isdigit() else None

    kind = q.resource.get("type")
    rprops = _props(q.resource)
    rid = _text(q.resource.get("id"), "resource.id")
    ref: dict[str, str] = {}
    if kind == "connector":
        if rid.isdigit():
            ref["id"] = rid
        if client_id := _text(rprops.get("client_id"), "resource.properties.client_id"):
            ref["client_id"] = client_id
            ref["source"] = _text(rprops.get("source"), "resource.properties.source")
        if url := _text(rprops.get("url"), "resource.properties.url"):
            ref["url"] = url
        for key, tool_kind in TOOL_KEYS.items():
            if value := _text(rprops.get(key), f"resource.properties.{key}"):
                ask.tool = (tool_kind, value)
                break
    elif kind == "mcp_server":
        url = rid or _text(rprops.get("url"), "resource.properties.url")
        ref["url"] = url
    elif kind == "mcp_tool":
        server = _text(rprops.get("server"), "resource.properties.server")
        tool = _text(rprops.get("tool"), "resource.properties.tool") or rid
        if not server or not tool:
            raise QuestionError(
                "An mcp_tool names properties.server (URL or connector id) and properties.tool."
            )
        ref["id" if server.isdigit() else "url"] = server
        ask.tool = ("tool", tool)
    else:
        raise QuestionError(f"Unknown resource type {kind!r}; one of connector, mcp_server, mcp_tool.")
    if not ref:
        raise QuestionError(
            "Name the connector: its Lanyard id, properties.client_id (with properties.source) or "
            "properties.url."
        )
    ask.connector_ref = ref


_hr: tuple[float, dict] = (0.0, {})


def forget_hr_order(**kwargs: Any) -> None:
    """Drop the kept ranking (a source added, removed or marked authoritative in this process)."""
    global _hr
    _hr = (0.0, {})


def _hr_order() -> dict:
    """The sources ranked for HR data (``connectors.people.hr_order``), kept a minute: it moves with syncs."""
    global _hr
    now = time.monotonic()
    if now - _hr[0] > 60:
        _hr = (now, hr_order())
    return _hr[1]


_SIBLING_COLUMNS = ("pk", "person_id", "status", "status_changed_at", "source_id", "user_id", "source__name")


def _identities(asks: list[Ask]) -> dict[int, list[dict[str, Any]]]:
    """Resolve each subject to an identity; return every identity of the people found, by person
    (read in the same statement: ``_people`` needs them and would otherwise ask again)."""
    keys = {a.subject_key for a in asks if not a.error}
    emails = {k for k in keys if "@" in k}
    external = keys - emails
    # Lanyard's own gateway also names Lanyard's identity id: exact where one e-mail has two identities.
    own = {a.lanyard_id for a in asks if not a.error and a.lanyard_id}
    wanted = emails | {e.lower() for e in emails}
    columns = (
        "pk",
        "email",
        "external_id",
        "name",
        "department",
        "status",
        "status_changed_at",
        "is_service",
        "unverified",
        "person_id",
        "user_id",
        "source_id",
        "source__name",
        "source__kind",
        "asked",
    )
    if not keys:
        return {}

    def match(alias: str) -> tuple[str, list]:
        where, params = [], []
        for column, values in (("email", wanted), ("external_id", external), ("id", own)):
            if values:
                clause, more = _in(f"{alias}.{column}", values)
                where.append(clause)
                params += more
        return " OR ".join(where), params

    asked, params = match("i")
    kin, kin_params = match("m")
    select = (
        "SELECT i.id, i.email, i.external_id, i.name, i.department, i.status, i.status_changed_at, "
        "i.is_service, i.unverified, i.person_id, i.user_id, i.source_id, s.name, s.kind, {flag} "
        "FROM connectors_identity i LEFT JOIN connectors_identitysource s ON s.id = i.source_id "
    )
    # The identities asked about (flag 1), then every identity of their people (flag 0).
    read = _rows(
        select.format(flag=1)  # noqa: S608 - placeholders only: the values are parameters
        + f"WHERE {asked} UNION ALL "
        + select.format(flag=0)
        + f"WHERE i.person_id IN (SELECT m.person_id FROM connectors_identity m WHERE ({kin}) "  # noqa: S608
        "AND m.person_id IS NOT NULL)",
        params + kin_params,
        columns,
    )
    rows, kin_rows = [], []
    for r in read:
        (rows if r.pop("asked") else kin_rows).append(r)
    kindred: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(kin_rows, key=lambda r: r["pk"]):
        kindred[r["person_id"]].append({c: r[c] for c in _SIBLING_COLUMNS})
    unmatched = {e.lower() for e in emails} - {r["email"].lower() for r in rows}
    if unmatched:  # a mixed-case address stored: the lower(email) path, only when needed
        rows += list(
            Identity.objects.alias(e=Lower("email")).filter(e__in=unmatched).order_by().values(*columns[:-1])
        )
    # Indexed once: a batch of a hundred questions must not scan every row for each of them.
    by_pk: dict[int, dict] = {}
    by_email: dict[str, list[dict]] = defaultdict(list)
    by_external: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_pk.setdefault(r["pk"], r)
        by_email[r["email"].lower()].append(r)
        by_external[r["external_id"]].append(r)
    for ask in asks:
        if ask.error:
            continue
        key, source = ask.subject_key, _text(_props(ask.question.subject).get("source"), "source")
        exact = by_pk.get(ask.lanyard_id) if ask.lanyard_id else None
        if exact is not None:
            ask.identity = dict(exact)
            continue
        found = list(by_email.get(key.lower(), ()) if "@" in key else by_external.get(key, ()))
        if source:
            found = [r for r in found if source in (r["source__name"], r["source__kind"])] or []
        # Verified before unverified, active first, oldest first: the ingest API's order.
        found.sort(key=lambda r: (r["unverified"], r["status"] != Identity.Status.ACTIVE, r["pk"]))
        ask.identity = dict(found[0]) if found else None
    return kindred


def _people(asks: list[Ask], kindred: dict[int, list[dict]] | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every identity of each asked person, with the standing the person's HR source gives it
    (``kindred``: those ``_identities`` already read, by person)."""
    found = [a.identity for a in asks if a.identity]
    persons = {i["person_id"] for i in found if i["person_id"]}
    if not found:
        return {}
    columns = _SIBLING_COLUMNS
    # An identity linked to no person is its own family: its row is already read.
    rows = [{c: i[c] for c in columns} for i in found if not i["person_id"]]
    rows = list({r["pk"]: r for r in rows}.values())
    kindred = kindred or {}
    for person in sorted(persons & kindred.keys()):
        rows += kindred[person]
    if missing := persons - kindred.keys():  # found by the lower(email) path: not read yet
        rows += list(Identity.objects.filter(values_in("person_id", missing)).order_by().values(*columns))
    order = _hr_order()
    hr: dict[int, dict] = {}
    for r in rows:
        if r["person_id"] is None:
            continue
        rank = (order.get(r["source_id"], len(order)), r["status"] != Identity.Status.ACTIVE, r["pk"])
        if r["person_id"] not in hr or rank < hr[r["person_id"]]["rank"]:
            hr[r["person_id"]] = r | {"rank": rank}
    by_key: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_key[r["person_id"] or -r["pk"]].append(r)
    read = {r["pk"] for r in rows}
    for ask in asks:
        i = ask.identity
        if not i:
            continue
        own = i["pk"] in read
        status, since, where = i["status"], i["status_changed_at"], i["source__name"]
        person = hr.get(i["person_id"]) if i["person_id"] else None
        if person and _SEVERITY.get(person["status"], 0) > _SEVERITY.get(status, 0):
            status, since, where = person["status"], person["status_changed_at"], person["source__name"]
        i["standing"], i["standing_since"], i["standing_source"] = status, since, where or "Lanyard"
        i["siblings"] = by_key[i["person_id"] or -i["pk"]] if own else [i]
    return by_key


_CONNECTOR_WANTED = {"id", "name", "status", "business_owner_id", "risk", "risk_score", "kind",
                     "mcp_server_url", "status_changed_at", "merged_into_id"}  # fmt: skip


def _connector_fields() -> list[str]:
    # Model.from_db takes the values in the model's own field order.
    return [f.attname for f in Connector._meta.concrete_fields if f.attname in _CONNECTOR_WANTED]


def _connector_rows(ids: set[int], urls: set[str]) -> list[Connector]:
    """The connectors named by id or MCP server URL, as model instances, in one hand-written statement."""
    where, params = [], []
    for column, values in (("id", ids), ("mcp_server_url", urls)):
        if values:
            clause, more = _in(column, values)
            where.append(clause)
            params += more
    fields = _connector_fields()
    columns = ", ".join(fields)
    sql = f"SELECT {columns} FROM connectors_connector WHERE {' OR '.join(where)} ORDER BY id"  # noqa: S608
    moment = Connector._meta.get_field("status_changed_at")
    column = moment.get_col(Connector._meta.db_table)
    converters = connection.ops.get_db_converters(column) + moment.get_db_converters(connection)
    at = fields.index("status_changed_at")
    found = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            values = list(row)
            for convert in converters:
                values[at] = convert(values[at], column, connection)
            found.append(Connector.from_db(connection.alias, fields, values))
    merged = {c.merged_into_id for c in found if c.merged_into_id}
    if merged:  # rare: a connector IAM folded into another one
        targets = Connector.objects.in_bulk(merged)
        for c in found:
            if c.merged_into_id:
                c.merged_into = targets.get(c.merged_into_id)
    return found


def _connectors(asks: list[Ask]) -> None:
    live = [a for a in asks if not a.error]
    ids = {int(a.connector_ref["id"]) for a in live if "id" in a.connector_ref}
    urls = {a.connector_ref["url"] for a in live if "url" in a.connector_ref}
    client_ids = {a.connector_ref["client_id"] for a in live if "client_id" in a.connector_ref}
    apps: dict[str, list[ConnectorApp]] = defaultdict(list)
    if client_ids:
        for app in (
            ConnectorApp.objects.filter(values_in("client_id", client_ids))
            .select_related("source")
            .order_by("pk")
        ):
            apps[app.client_id].append(app)
            ids.add(app.connector_id)
    if not ids and not urls:
        return
    connectors = _connector_rows(ids, urls)
    by_pk = {c.pk: c for c in connectors}
    by_url: dict[str, Connector] = {}
    for c in connectors:
        by_url.setdefault(c.mcp_server_url, c)
    for ask in live:
        ref = ask.connector_ref
        connector = None
        if "id" in ref:
            connector = by_pk.get(int(ref["id"]))
        if connector is None and "client_id" in ref:
            candidates = apps.get(ref["client_id"], [])
            if ref.get("source"):
                candidates = [a for a in candidates if ref["source"] in (a.source.name, a.source.kind)]
            if candidates:
                ask.app = candidates[0]
                connector = by_pk.get(ask.app.connector_id)
        if connector is None and "url" in ref:
            connector = by_url.get(ref["url"])
        if connector is not None and connector.merged_into_id:
            connector = connector.merged_into or connector
        ask.connector = connector


def _holdings(asks: list[Ask]) -> tuple[dict, dict, dict]:
    """(identity pk, connector pk) → best live grant; → provisioned; → attestation says revoke."""
    pairs = [(a.identity, a.connector) for a in asks if a.identity and a.connector]
    if not pairs:
        return {}, {}, {}
    identity_ids = {s["pk"] for i, _ in pairs for s in i["siblings"]}
    source_ids = {s["source_id"] for i, _ in pairs for s in i["siblings"] if s["source_id"]}
    connector_ids = {c.pk for _, c in pairs}
    now = timezone.now()
    ids_sql, params = _in("g.identity_id", identity_ids)
    mine = ids_sql
    if source_ids:  # a tenant-wide consent (Entra's AllPrincipals) covers everyone in that tenant
        src_sql, src = _in("g.source_id", source_ids)
        mine = f"({ids_sql} OR (g.consent_type = %s AND {src_sql}))"
        params += [Grant.ConsentType.ALL_PRINCIPALS, *src]
    con_sql, con = _in("g.connector_id", connector_ids)
    stamp = connection.ops.adapt_datetimefield_value(now)
    running, revoke = AttestationCampaign.Status.RUNNING, AttestationCampaign.Policy.REVOKE
    columns = ("pk", "identity_id", "source_id", "connector_id", "kind", "status", "scopes", "consent_type",
               "att_revoke")  # fmt: skip
    # A running review answered "revoke" for the grant, or left it pending past a revoke-policy deadline.
    grants = _rows(
        "SELECT g.id, g.identity_id, g.source_id, g.connector_id, g.kind, g.status, g.scopes, "  # noqa: S608
        "g.consent_type, "
        "EXISTS (SELECT 1 FROM governance_attestation a JOIN governance_attestationcampaign c "
        "ON c.id = a.campaign_id WHERE a.grant_id = g.id AND c.status = %s AND (a.decision = %s "
        "OR (a.decision = %s AND c.policy = %s AND c.deadline < %s))) "
        f"FROM connectors_grant g WHERE {mine} AND {con_sql} AND g.status = %s AND g.held_at IS NULL "
        "AND (g.expires_at IS NULL OR g.expires_at > %s) ORDER BY g.id",
        [running, Attestation.Decision.REVOKE, Attestation.Decision.PENDING, revoke, stamp, *params, *con,
         Grant.Status.ACTIVE, stamp],
        columns,
    )  # fmt: skip
    for g in grants:
        g["att_revoke"] = bool(g["att_revoke"])
        if isinstance(g["scopes"], str):  # SQLite hands JSON back as text
            g["scopes"] = json.loads(g["scopes"] or "[]")
    by_identity: dict[int, list[dict]] = defaultdict(list)
    tenant: dict[int, list[dict]] = defaultdict(list)
    for g in grants:
        if g["identity_id"] is not None:
            by_identity[g["identity_id"]].append(g)
        if g["consent_type"] == Grant.ConsentType.ALL_PRINCIPALS and g["source_id"]:
            tenant[g["source_id"]].append(g)
    user_ids = {s["user_id"] for i, _ in pairs for s in i["siblings"] if s["user_id"]}
    provisioned: set[tuple[int, int]] = set()
    if user_ids:
        for connector_id, requester, behalf in ConnectorRequest.objects.filter(
            Q(requester_id__in=user_ids) | Q(on_behalf_of_id__in=user_ids),
            connector_id__in=connector_ids,
            status=ConnectorRequest.Status.PROVISIONED,
        ).values_list("connector_id", "requester_id", "on_behalf_of_id"):
            # On behalf of someone else: it is theirs, not the requester's.
            provisioned.add((connector_id, behalf or requester))
    best: dict = {}
    prov: dict = {}
    revoked: dict = {}
    for identity, connector in pairs:
        key = (identity["pk"], connector.pk)
        own = [
            g
            for s in identity["siblings"]
            for g in by_identity.get(s["pk"], [])
            if g["connector_id"] == connector.pk
        ]
        wide = [
            g
            for s in identity["siblings"]
            if s["source_id"]
            for g in tenant.get(s["source_id"], [])
            if g["connector_id"] == connector.pk
        ]
        candidates = own + [g for g in wide if g not in own]
        fine = [g for g in candidates if not g["att_revoke"]]
        best[key] = (fine or candidates or [None])[0]
        revoked[key] = any(g["att_revoke"] for g in candidates)
        users = {s["user_id"] for s in identity["siblings"] if s["user_id"]}
        prov[key] = any((connector.pk, u) in provisioned for u in users)
    return best, prov, revoked


def _devices(asks: list[Ask]) -> None:
    names = {a.device_id for a in asks if a.device_id and a.identity}
    if not names:
        return
    clause, params = _in("d.external_id", names)
    columns = (
        "pk",
        "external_id",
        "managed",
        "compliant",
        "platform",
        "owner_id",
        "owner__person_id",
        "name",
    )
    rows = _rows(
        "SELECT d.id, d.external_id, d.managed, d.compliant, d.platform, d.owner_id, o.person_id, d.name "  # noqa: S608
        f"FROM connectors_device d LEFT JOIN connectors_identity o ON o.id = d.owner_id WHERE {clause} "
        "ORDER BY d.id",
        params,
        columns,
    )
    for r in rows:
        r["managed"], r["compliant"] = bool(r["managed"]), bool(r["compliant"])
    by_name: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_name[r["external_id"]].append(r)
    for ask in asks:
        if not ask.device_id or not ask.identity:
            continue
        found = list(by_name.get(ask.device_id, ()))
        mine = {s["pk"] for s in ask.identity.get("siblings", [])}
        found.sort(key=lambda r: (r["owner_id"] not in mine, not r["compliant"], r["pk"]))
        ask.device = found[0] if found else None


def load(asks: list[Ask]) -> tuple[dict, dict, dict]:
    """Resolve every question of the batch against the register; return its holdings."""
    kindred = _identities(asks)
    _people(asks, kindred)
    _connectors(asks)
    holdings = _holdings(asks)
    _devices(asks)
    return holdings


# --- Cedar ---------------------------------------------------------------------------------------


def uid(kind: str, id_: Any) -> dict[str, str]:
    return {"type": f"{NAMESPACE}::{kind}", "id": str(id_)}


def ref(kind: str, id_: Any) -> dict[str, dict[str, str]]:
    return {"__entity": uid(kind, id_)}


def person_id(identity: dict[str, Any]) -> str:
    return f"p{identity['person_id']}" if identity.get("person_id") else f"i{identity['pk']}"


def connector_entity(c: Connector) -> dict[str, Any]:
    return {
        "uid": uid("Connector", c.pk),
        "attrs": {
            "name": c.name,
            "status": c.status,
            "sanctioned": c.status in Connector.SANCTIONED,
            "has_owner": c.business_owner_id is not None,
            "risk": c.risk,
            "risk_score": int(c.risk_score or 0),
            "kind": c.kind,
        },
        "parents": [],
    }


def entities_for(ask: Ask, holdings: tuple[dict, dict, dict], pep: dict[str, Any]) -> tuple[dict, list[dict]]:
    """The Cedar request and entities for one resolved question (identity and connector known)."""
    best, prov, revoked = holdings
    identity, connector = ask.identity, ask.connector
    assert identity is not None and connector is not None
    key = (identity["pk"], connector.pk)
    status = identity["standing"]
    grant = ask.grant = best.get(key)
    entities: list[dict] = [
        {
            "uid": uid("Person", person_id(identity)),
            "attrs": {"name": identity["name"] or identity["email"]},
            "parents": [],
        },
        {
            "uid": uid("Identity", identity["pk"]),
            "attrs": {
                "email": identity["email"],
                "source": identity["source__name"] or "",
                "department": identity["department"] or "",
                "status": status,
                "active": status == Identity.Status.ACTIVE,
                "offboarding": status != Identity.Status.ACTIVE,
                "is_service": bool(identity["is_service"]),
                "live_grants": [ref("Connector", connector.pk)] if grant and not grant["att_revoke"] else [],
                "provisioned": [ref("Connector", connector.pk)] if prov.get(key) else [],
                "attestation_revoked": [ref("Connector", connector.pk)] if revoked.get(key) else [],
            },
            "parents": [uid("Person", person_id(identity))],
        },
        connector_entity(connector),
    ]
    context: dict[str, Any] = {"connector": ref("Connector", connector.pk), "pep": pep}
    if ask.tool:
        tool_kind, name = ask.tool
        tool_id = f"{connector.pk}/{tool_kind}/{name}"
        entities.append(
            {
                "uid": uid("Tool", tool_id),
                "attrs": {"name": name, "kind": tool_kind, "connector": ref("Connector", connector.pk)},
                "parents": [uid("Connector", connector.pk)],
            }
        )
        resource = uid("Tool", tool_id)
    else:
        resource = uid("Connector", connector.pk)
    if ask.device_id:
        d = ask.device
        if d is not None:
            owner = (
                f"p{d['owner__person_id']}"
                if d["owner__person_id"]
                else (f"i{d['owner_id']}" if d["owner_id"] else NOBODY)
            )
            device_uid = str(d["pk"])
            attrs = {
                "known": True,
                "managed": d["managed"],
                "compliant": d["compliant"],
                "platform": d["platform"] or "",
                "owner": ref("Person", owner),
            }
        else:
            owner, device_uid = NOBODY, f"unknown:{ask.device_id}"
            attrs = {
                "known": False,
                "managed": False,
                "compliant": False,
                "platform": "",
                "owner": ref("Person", NOBODY),
            }
        if owner != person_id(identity):
            entities.append({"uid": uid("Person", owner), "attrs": {"name": ""}, "parents": []})
        entities.append({"uid": uid("Device", device_uid), "attrs": attrs, "parents": []})
        context["device"] = ref("Device", device_uid)
    if grant is not None:
        entities.append(
            {
                "uid": uid("Grant", grant["pk"]),
                "attrs": {
                    "kind": grant["kind"],
                    "status": grant["status"],
                    "scopes": [str(s) for s in (grant["scopes"] or [])],
                    "tenant_wide": grant["consent_type"] == Grant.ConsentType.ALL_PRINCIPALS,
                    "connector": ref("Connector", connector.pk),
                    "identity": ref("Identity", grant["identity_id"] or identity["pk"]),
                },
                "parents": [],
            }
        )
        context["grant"] = ref("Grant", grant["pk"])
    if ask.app is not None:
        app = ask.app
        entities.append(
            {
                "uid": uid("ConnectorApp", app.pk),
                "attrs": {
                    "client_id": app.client_id,
                    "source": app.source.name,
                    "verified": app.verified,
                    "connector": ref("Connector", connector.pk),
                },
                "parents": [],
            }
        )
        context["app"] = ref("ConnectorApp", app.pk)
    request = {
        "principal": uid("Identity", identity["pk"]),
        "action": uid("Action", ask.action),
        "resource": resource,
        "context": context,
    }
    return request, entities
