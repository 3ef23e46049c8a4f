"""Access decisions: resolve a batch of AuthZEN questions against the register, ask Cedar, explain.

``decide(questions, key=...)`` is the decision point. For each question:

- a question Lanyard cannot put (unknown subject type, resource type or action) is an error, which
  the API answers 400 (one evaluation) or as that item's error (a batch);
- an identity Lanyard does not know, or a connector it does not know, is denied before Cedar, with a
  reason; an unknown connector named by URL (or client id and source) is *discovered*: recorded as
  a shadow connector, as the ingest API does, at most ``LANYARD_PDP_MAX_DISCOVERIES_PER_HOUR`` per key;
- everything else goes to Cedar (``access.policies``) in one ``is_authorized_batch`` call; a deny
  names the forbidding policies and their reasons, or, when no permit matched, what is missing.

Each decision is recorded by ``access.recording``: a deny on the audit chain in this request, a
permit in the counts and the usage roll-up.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import cedarpy
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from connectors.models import Connector, ConnectorApp, IdentitySource

from . import entities, recording
from .entities import Ask, Question, QuestionError
from .policies import PolicyBook, current, for_engine, request_for_engine

log = logging.getLogger(__name__)

UNKNOWN_IDENTITY = "lanyard/unknown-identity"
UNKNOWN_CONNECTOR = "lanyard/unknown-connector"
NOT_PERMITTED = "lanyard/no-permit"


@dataclass
class Result:
    decision: bool
    reason: str = ""
    policies: list[str] = field(default_factory=list)
    error: str = ""
    id: str = ""
    connector_id: int | None = None

    def context(self) -> dict[str, Any]:
        """The AuthZEN decision context: an id, the reason for people and the policies that decided."""
        if self.error:
            return {"id": self.id, "error": {"status": 400, "message": self.error}}
        body: dict[str, Any] = {"id": self.id, "policies": self.policies}
        if self.reason:
            body["reason"] = self.reason
            body["reason_user"] = {"en": self.reason}
        return body


def portal_link(connector: Connector | None) -> str:
    base = settings.LANYARD_BASE_URL.rstrip("/")
    if connector is None:
        return f"{base}/requests/new/"
    return f"{base}/requests/new/?connector={connector.pk}"


def _when(moment) -> str:
    return f" on {timezone.localtime(moment):%d %b %Y}" if moment else ""


def _fill(template: str, ask: Ask) -> str:
    c, i, d = ask.connector, ask.identity or {}, ask.device
    values = {
        "connector": c.name if c else "this connector",
        "status_label": c.get_status_display().lower() if c else "",
        "since": _when(c.status_changed_at) if c else "",
        "portal": portal_link(c),
        "person": i.get("name") or i.get("email") or "this person",
        "identity_status": i.get("standing", ""),
        "source": i.get("standing_source", ""),
        "risk": c.risk if c else "",
        "device_note": (
            f" ({d['name'] or d['external_id']} is not compliant)"
            if d
            else " (the gateway named no device)"
            if not ask.device_id
            else f" ({ask.device_id} is not a device Lanyard knows)"
        ),
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):  # an IAM policy with its own braces: shown as written
        return template


def _missing(ask: Ask, holdings, pep: dict[str, Any]) -> str:
    """Why no permit matched, in the order the default permit checks, for the person to act on."""
    best, prov, _ = holdings
    i, c = ask.identity, ask.connector
    assert i is not None and c is not None
    if i["standing"] != "active":
        return _fill("{person}'s account is {identity_status} at {source}.", ask)
    if c.status != Connector.Status.ACTIVE:
        return _fill("{connector} is {status_label}, not active: it may not be used yet.", ask)
    key = (i["pk"], c.pk)
    if best.get(key) is None and not prov.get(key):
        return _fill("No approved grant for {connector}: request it at {portal}.", ask)
    if pep["reports_devices"]:
        if not ask.device_id:
            return "The gateway named no device; Lanyard permits AI use only from a known device."
        if ask.device is None:
            return f"Device {ask.device_id} is not in Lanyard's register."
        return _fill(f"Device {ask.device_id} is not registered to {{person}}.", ask)
    return "No policy permits this."


def _discovery_allowed(key) -> bool:
    """Count one discovery against the key's hourly budget; False once it is spent."""
    cap = settings.LANYARD_PDP_MAX_DISCOVERIES_PER_HOUR
    hour = int(timezone.now().timestamp() // 3600)
    name = f"lanyard:pdp-discoveries:{getattr(key, 'prefix', '-')}:{hour}"
    cache.add(name, 0, timeout=3700)
    try:
        count = cache.incr(name)
    except ValueError:
        cache.set(name, 1, timeout=3700)
        count = 1
    return count <= cap


def _discover(ask: Ask, key) -> Connector | None:
    """Record an unknown connector as discovered (shadow AI), as the ingest API does; None when it can't."""
    ref = ask.connector_ref
    source = None
    if "client_id" in ref:
        if not ref.get("source"):
            return None  # a client id means nothing without its IdP
        source = (
            IdentitySource.objects.filter(name=ref["source"]).first()
            or IdentitySource.objects.filter(kind=ref["source"]).first()
        )
        if source is None:
            return None
    elif "url" not in ref:
        return None
    if not _discovery_allowed(key):
        log.warning("PDP discovery cap reached for key %s", getattr(key, "prefix", "?"))
        return None
    now = timezone.now()
    url = ref.get("url", "") if source is None else ""
    with transaction.atomic():
        if url:
            existing = Connector.objects.filter(mcp_server_url=url).first()
            if existing:
                return existing
        connector = Connector.objects.create(
            name=(f"MCP server {url.split('//')[-1].split('/')[0]}" if url else ref["client_id"])[:200],
            kind=Connector.Kind.MCP_SERVER if url else Connector.Kind.OAUTH_APP,
            status=Connector.Status.DISCOVERED,
            mcp_server_url=url[:500],
            discovered_at=now,
        )
        if source is not None:
            ConnectorApp.objects.get_or_create(
                source=source, client_id=ref["client_id"][:255], defaults={"connector": connector}
            )
        audit.record(
            "connector.discovered",
            actor_label=f"PEP {getattr(key, 'name', '')}".strip(),
            connector=connector,
            target=connector,
            source=source,
            ingest_key=key,
            data={
                "via": "access decision",
                "client_id": ref.get("client_id", "") if source else "",
                "mcp_server_url": url,
            },
        )
    return connector


def pep_context(key) -> dict[str, Any]:
    return {"name": getattr(key, "name", ""), "reports_devices": bool(getattr(key, "reports_devices", True))}


def _explain(book: PolicyBook, ask: Ask, holdings, pep, answer) -> Result:
    cedar_ids = list(answer.diagnostics.reasons)
    ids = book.ids(cedar_ids)
    if answer.allowed:
        return Result(True, "", ids)
    forbids = [book.info[i] for i in cedar_ids if i in book.info and book.info[i].effect == "forbid"]
    if forbids:
        reason = " ".join(_fill(p.reason, ask) for p in forbids if p.reason) or (
            f"Forbidden by {', '.join(p.id for p in forbids)}."
        )
        return Result(False, reason, [p.id for p in forbids])
    errors = list(answer.diagnostics.errors)
    if errors:  # a policy that failed to evaluate (IAM's, on an attribute this request lacks)
        log.warning("Cedar evaluation errors: %s", errors)
    return Result(False, _missing(ask, holdings, pep), [NOT_PERMITTED])


def decide(
    questions: list[Question],
    *,
    key=None,
    stop_on: bool | None = None,
    record: bool = True,
    generation: tuple | None = None,
) -> list[Result]:
    """Decide every question, in order (``stop_on``: stop after the first result with that decision).

    ``generation``: the policy set generation already read in this request (``policies.generation``);
    None reads it.
    """
    asks = [Ask(q) for q in questions]
    for ask in asks:
        try:
            entities.parse(ask)
        except QuestionError as exc:
            ask.error = str(exc)
    holdings = entities.load(asks)
    pep = pep_context(key)
    book = current(generation)

    results: list[Result | None] = [None] * len(asks)
    cedar: list[tuple[int, dict]] = []
    all_entities: dict[tuple[str, str], dict] = {}
    for n, ask in enumerate(asks):
        if ask.error:
            results[n] = Result(False, error=ask.error)
        elif ask.identity is None:
            results[n] = Result(
                False,
                f"{ask.subject_key} is not a person Lanyard knows at any identity provider.",
                [UNKNOWN_IDENTITY],
            )
        elif ask.connector is None:
            results[n] = None  # discovered below, after the cheap answers
        else:
            request, ents = entities.entities_for(ask, holdings, pep)
            for e in ents:
                # One entity set for the batch: an identity asked about twice holds the union.
                k = (e["uid"]["type"], e["uid"]["id"])
                if k in all_entities and e["uid"]["type"].endswith("Identity"):
                    for attr in ("live_grants", "provisioned", "attestation_revoked"):
                        merged = all_entities[k]["attrs"][attr] + e["attrs"][attr]
                        all_entities[k]["attrs"][attr] = list({str(x): x for x in merged}.values())
                else:
                    all_entities.setdefault(k, e)
            cedar.append((n, request))

    if cedar:
        entity_list = list(all_entities.values())
        answers = cedarpy.is_authorized_batch(
            [request_for_engine(book, r) for _, r in cedar], book.policies, for_engine(book, entity_list)
        )
        for (n, _request), answer in zip(cedar, answers, strict=True):
            results[n] = _explain(book, asks[n], holdings, pep, answer)
    samples = {n: (r, entity_list) for n, r in cedar} if cedar else {}

    final: list[Result] = []
    for n, ask in enumerate(asks):
        result = results[n]
        if result is None:  # an unknown connector: discovered, denied
            connector = _discover(ask, key) if record else None
            ask.connector = connector
            named = (
                ask.connector_ref.get("url")
                or ask.connector_ref.get("client_id")
                or ask.connector_ref.get("id")
            )
            if connector is not None:
                reason = (
                    f"{named} is not a connector IAM has sanctioned; Lanyard recorded it as shadow AI. "
                    f"Request it at {portal_link(connector)}."
                )
            else:
                reason = f"{named} is not a connector Lanyard knows. Request it at {portal_link(None)}."
            result = Result(False, reason, [UNKNOWN_CONNECTOR])
        result.id = secrets.token_hex(8)
        result.connector_id = ask.connector.pk if ask.connector else None
        final.append(result)
        if record:
            sample = samples.get(n)
            recording.record(ask, result, key=key, sample=sample)
        if stop_on is not None and not result.error and result.decision is stop_on:
            break
    return final


def rate_limited(key) -> int:
    """Count one request in the key's decision budget for this minute; seconds to wait, or 0."""
    now = timezone.now().timestamp()
    window = int(now // 60)
    name = f"lanyard:pdp-rate:{key.pk}:{key.prefix}:{window}"
    cache.add(name, 0, timeout=120)
    try:
        count = cache.incr(name)
    except ValueError:
        cache.set(name, 1, timeout=120)
        count = 1
    if count > key.decisions_per_minute:
        return max(1, math.ceil((window + 1) * 60 - now))
    return 0
