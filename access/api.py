"""The AuthZEN Authorization API 1.0: ``/access/v1/evaluation``, ``/evaluations``, ``/search/*`` and metadata.

Policy enforcement points (gateways, MCP proxies, Lanyard's own gateway) authenticate with a gateway
key (``audit.IngestKey``) that has the ``access:evaluate`` scope (``access:search`` for the search
APIs): ``manage.py pep_key create NAME``. Every answer echoes ``X-Request-ID``. Errors follow the
specification: 400 for a malformed request (with a message), 401 without a valid key, 403 for a key
without the scope, 413 for a body or a batch over the limits, 415 for a body not sent as JSON, 429
past the key's decisions per minute.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import msgspec
from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from audit.models import IngestKey
from audit.services import INGEST_KEY_PREFIX, hash_ingest_key
from connectors.models import Connector, Device, Grant, Identity
from governance.models import ConnectorRequest
from httpapi.body import BodyError, decode_json, read_body
from telemetry import metrics

from . import entities, policies, services, wire
from .entities import Ask, Question, QuestionError
from .schema import ACTIONS

REQUEST_ID_MAX = 200
_decoders: dict[type, msgspec.json.Decoder] = {}
_encoder = msgspec.json.Encoder()


def _decoder(type_: type) -> msgspec.json.Decoder:
    if type_ not in _decoders:
        _decoders[type_] = msgspec.json.Decoder(type_)
    return _decoders[type_]


def _json(status: int, body: Any, request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_encoder.encode(body), status=status, content_type="application/json")
    request_id = request.headers.get("X-Request-ID", "")
    if request_id:
        response["X-Request-ID"] = request_id[:REQUEST_ID_MAX]
    return response


def _error(status: int, message: str, request: HttpRequest) -> HttpResponse:
    return _json(status, wire.AccessError(error=message), request)


_DUMMY_HASH = hash_ingest_key("lanyard-no-such-key")
_KEY_SQL = (
    f"SELECT k.*, ({policies.NEWEST_VERSION_SQL}) AS newest_policy_version "  # noqa: S608
    f"FROM {IngestKey._meta.db_table} k WHERE k.prefix = %s ORDER BY k.id LIMIT 1"
)


def authenticate(header: str) -> tuple[IngestKey | None, tuple | None]:
    """The active key an ``Authorization: Bearer`` header names, and the policy set generation.

    ``activity.api.authenticate``'s rules (a wrong prefix and a wrong secret take the same time), in
    one statement that also reads the newest policy version, so a decision costs one round trip less.
    """
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        return None, None
    parts = raw.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == INGEST_KEY_PREFIX else ""
    key = next(iter(IngestKey.objects.raw(_KEY_SQL, [prefix])), None) if prefix else None
    matches = hmac.compare_digest(hash_ingest_key(raw), key.key_hash if key else _DUMMY_HASH)
    if key is None or not matches or key.revoked_at is not None:
        return None, None
    return key, policies.generation_of(key.newest_policy_version)


def _guarded(
    scope: str,
    body_type: type,
    handler: Callable[[HttpRequest, Any, IngestKey, tuple], HttpResponse],
    name: str,
):
    """Authenticate, check the scope and the rate, decode the body; then
    ``handler(request, body, key, generation)`` (the policy set generation read with the key)."""

    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        try:
            return _view(request)
        finally:
            metrics.PDP_LATENCY.labels(name).observe(time.perf_counter() - started)

    def _view(request: HttpRequest) -> HttpResponse:
        key, generation = authenticate(request.headers.get("Authorization", ""))
        if key is None:
            response = _error(401, "Send a valid gateway key: Authorization: Bearer <key>.", request)
            response["WWW-Authenticate"] = 'Bearer realm="lanyard"'
            return response
        if scope not in key.scopes:
            return _error(403, f"This key lacks the {scope} scope.", request)
        wait = services.rate_limited(key)
        if wait:
            response = _error(
                429, f"Rate limit of {key.decisions_per_minute} decisions per minute exceeded.", request
            )
            response["Retry-After"] = str(wait)
            return response
        try:
            raw = read_body(request, max_bytes=settings.LANYARD_PDP_MAX_BYTES)
            body = decode_json(raw, body_type, decoder=_decoder(body_type))
        except BodyError as exc:
            return _error(exc.status, exc.message, request)
        try:
            return handler(request, body, key, generation)
        except QuestionError as exc:
            return _error(400, str(exc), request)

    view.__name__ = view.__qualname__ = name
    view.__doc__ = handler.__doc__
    return view


def _builtin(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None


def _decision(result: services.Result) -> wire.Decision:
    return wire.Decision(
        decision=result.decision, context=msgspec.convert(result.context(), wire.DecisionContext)
    )


def _evaluation(
    request: HttpRequest, body: wire.EvaluationRequest, key: IngestKey, generation: tuple
) -> HttpResponse:
    """Decide one question."""
    question = Question(_builtin(body.subject), _builtin(body.action), _builtin(body.resource), body.context)
    (result,) = services.decide([question], key=key, generation=generation)
    if result.error:
        return _error(400, result.error, request)
    return _json(200, _decision(result), request)


def _evaluations(
    request: HttpRequest, body: wire.EvaluationsRequest, key: IngestKey, generation: tuple
) -> HttpResponse:
    """Decide a batch; each item overrides the top-level defaults; results in request order."""
    if len(body.evaluations) > settings.LANYARD_PDP_MAX_EVALUATIONS:
        return _error(
            413, f"At most {settings.LANYARD_PDP_MAX_EVALUATIONS} evaluations per request.", request
        )
    items = body.evaluations or [wire.EvaluationItem()]
    questions, missing = [], {}
    for n, item in enumerate(items):
        subject, action, resource = (
            item.subject or body.subject,
            item.action or body.action,
            item.resource or body.resource,
        )
        context = item.context if item.context is not None else (body.context or {})
        absent = [
            name
            for name, part in (("subject", subject), ("action", action), ("resource", resource))
            if part is None
        ]
        if absent:
            missing[n] = f"Evaluation {n} has no {', '.join(absent)} and the request gives no default."
            questions.append(None)
        else:
            questions.append(Question(_builtin(subject), _builtin(action), _builtin(resource), context))
    semantic = body.options.evaluations_semantic if body.options else "execute_all"
    stop_on = {"deny_on_first_deny": False, "permit_on_first_permit": True}.get(semantic)
    if not body.evaluations:  # no array: a single evaluation, answered as one (AuthZEN 1.0 §7.1)
        if missing:
            return _error(400, missing[0].replace("Evaluation 0 has", "The request has"), request)
        (result,) = services.decide(questions, key=key, generation=generation)
        if result.error:
            return _error(400, result.error, request)
        return _json(200, _decision(result), request)
    decisions: list[wire.Decision] = []
    # Decide in runs between the items that cannot be asked, so the order and the stop are kept.
    run: list[Question] = []

    def flush_run() -> bool:
        if not run:
            return False
        results = services.decide(run, key=key, stop_on=stop_on, generation=generation)
        decisions.extend(_decision(r) for r in results)
        stopped = stop_on is not None and any(not r.error and r.decision is stop_on for r in results)
        run.clear()
        return stopped

    for n, question in enumerate(questions):
        if question is None:
            if flush_run():
                break
            decisions.append(
                wire.Decision(False, wire.DecisionContext(id="", error=wire.ErrorDetail(400, missing[n])))
            )
            continue
        run.append(question)
    else:
        flush_run()
    return _json(200, wire.Decisions(evaluations=decisions), request)


# --- search ----------------------------------------------------------------------------------------

_SALT = "lanyard.access.search"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:16]


def _cursor(page: wire.PageRequest | None, fingerprint: str) -> int:
    """The last id a previous page ended on; a token altered, or from another query, is refused."""
    if page is None or not page.token:
        return 0
    try:
        value = signing.loads(page.token, salt=_SALT)
    except signing.BadSignature:
        raise QuestionError("page.token is not a token this search returned.") from None
    if (
        not isinstance(value, dict)
        or value.get("q") != fingerprint
        or not isinstance(value.get("after"), int)
    ):
        raise QuestionError("page.token belongs to a different search.")
    return value["after"]


def _next_token(after: int, fingerprint: str) -> str:
    return signing.dumps({"q": fingerprint, "after": after}, salt=_SALT)


def _best_devices(identity_ids: set[int]) -> dict[int, str]:
    """Each identity's best device in the register (compliant, managed, most recently seen)."""
    best: dict[int, str] = {}
    rows = (
        Device.objects.filter(owner_id__in=identity_ids)
        .order_by("owner_id", "-compliant", "-managed", "-last_seen", "pk")
        .values_list("owner_id", "external_id")
    )
    for owner_id, external_id in rows:
        best.setdefault(owner_id, external_id)
    return best


def _with_device(subject: dict[str, Any], device: str | None, key: IngestKey) -> dict[str, Any]:
    props = dict(subject.get("properties") or {})
    if key.reports_devices and not props.get("device") and device:
        props["device"] = device
    return subject | {"properties": props}


def _search_subject(
    request: HttpRequest, body: wire.SearchSubjectRequest, key: IngestKey, generation: tuple
) -> HttpResponse:
    """Who may do this action on this connector (people holding it, whose decision permits)."""
    if body.subject.type != "identity":
        raise QuestionError(f"Unknown subject type {body.subject.type!r}; Lanyard searches 'identity'.")
    resource = _builtin(body.resource)
    probe = Ask(Question({"type": "identity", "id": "probe@lanyard"}, _builtin(body.action), resource, {}))
    entities.parse(probe)
    entities._connectors([probe])
    connector = probe.connector
    limit = body.page.limit if body.page else 50
    fingerprint = _fingerprint("subject", resource, body.action.name, body.context)
    after = _cursor(body.page, fingerprint)
    if connector is None:
        return _json(200, wire.SearchResults([], wire.Page("", 0, 0)), request)
    holders = set(
        Grant.objects.filter(
            connector=connector, status=Grant.Status.ACTIVE, identity__isnull=False
        ).values_list("identity_id", flat=True)
    )
    users = ConnectorRequest.objects.filter(connector=connector, status=ConnectorRequest.Status.PROVISIONED)
    user_ids = {b or r for r, b in users.values_list("requester_id", "on_behalf_of_id")}
    candidates = sorted(
        holders | set(Identity.objects.filter(user_id__in=user_ids).values_list("pk", flat=True))
        if user_ids
        else holders
    )
    candidates = [c for c in candidates if c > after]
    found: list[wire.Found] = []
    last, exhausted = after, True
    chunk = max(limit, 50)
    while candidates:
        batch, candidates = candidates[:chunk], candidates[chunk:]
        rows = dict(Identity.objects.filter(pk__in=batch).values_list("pk", "email"))
        ordered = [pk for pk in batch if pk in rows]
        devices = _best_devices(set(ordered))
        questions = [
            Question(
                _with_device({"type": "identity", "id": rows[pk], "properties": {}}, devices.get(pk), key),
                _builtin(body.action),
                resource,
                body.context,
            )
            for pk in ordered
        ]
        results = (
            services.decide(questions, key=key, record=False, generation=generation) if questions else []
        )
        for pk, result in zip(ordered, results, strict=True):
            last = pk
            if result.decision:
                found.append(wire.Found("identity", rows[pk]))
                if len(found) == limit:
                    break
        if len(found) == limit:
            exhausted = not candidates and (not ordered or last == ordered[-1])
            break
    token = "" if exhausted else _next_token(last, fingerprint)
    return _json(200, wire.SearchResults(found, wire.Page(token, len(found))), request)


def _search_resource(
    request: HttpRequest, body: wire.SearchResourceRequest, key: IngestKey, generation: tuple
) -> HttpResponse:
    """Which connectors this person may use for this action (what a gateway filters a list with)."""
    if body.resource.type not in ("connector", "mcp_server"):
        raise QuestionError(f"Unknown resource type {body.resource.type!r}; search connector or mcp_server.")
    subject = _builtin(body.subject)
    probe = Ask(Question(subject, _builtin(body.action), {"type": "connector", "id": "0"}, {}))
    entities.parse(probe)
    entities._people([probe], entities._identities([probe]))
    limit = body.page.limit if body.page else 50
    fingerprint = _fingerprint("resource", subject, body.action.name, body.resource.type, body.context)
    after = _cursor(body.page, fingerprint)
    if probe.identity is None:
        return _json(200, wire.SearchResults([], wire.Page("", 0, 0)), request)
    siblings = {s["pk"] for s in probe.identity["siblings"]}
    users = {s["user_id"] for s in probe.identity["siblings"] if s["user_id"]}
    sources = {s["source_id"] for s in probe.identity["siblings"] if s["source_id"]}
    held = Q(grants__identity_id__in=siblings, grants__status=Grant.Status.ACTIVE)
    held |= Q(
        grants__consent_type=Grant.ConsentType.ALL_PRINCIPALS,
        grants__source_id__in=sources,
        grants__status=Grant.Status.ACTIVE,
    )
    if users:
        held |= Q(requests__status=ConnectorRequest.Status.PROVISIONED, requests__requester_id__in=users)
    qs = Connector.objects.filter(held, status=Connector.Status.ACTIVE, pk__gt=after)
    if body.resource.type == "mcp_server":
        qs = qs.exclude(mcp_server_url="")
    cap = limit + 200
    candidates = list(qs.order_by("pk").distinct().values_list("pk", "mcp_server_url", "name")[:cap])
    device = subject.get("properties", {}).get("device") or _best_devices(siblings).get(probe.identity["pk"])
    subject = _with_device(subject, device, key)
    questions = [
        Question(subject, _builtin(body.action), {"type": "connector", "id": str(pk)}, body.context)
        for pk, _url, _name in candidates
    ]
    results = services.decide(questions, key=key, record=False, generation=generation) if questions else []
    found: list[wire.Found] = []
    last = after
    for (pk, url, name), result in zip(candidates, results, strict=True):
        last = pk
        if result.decision:
            if body.resource.type == "mcp_server":
                found.append(wire.Found("mcp_server", url, {"connector": str(pk), "name": name}))
            else:
                found.append(wire.Found("connector", str(pk), {"name": name}))
            if len(found) == limit:
                break
    more = bool(candidates) and (last != candidates[-1][0] or len(candidates) == cap)
    token = _next_token(last, fingerprint) if more else ""
    return _json(200, wire.SearchResults(found, wire.Page(token, len(found))), request)


def _search_action(
    request: HttpRequest, body: wire.SearchActionRequest, key: IngestKey, generation: tuple
) -> HttpResponse:
    """Which actions this person may take on this connector or tool."""
    subject, resource = _builtin(body.subject), _builtin(body.resource)
    questions = [Question(subject, {"name": name}, resource, body.context) for name in ACTIONS]
    results = services.decide(questions, key=key, record=False, generation=generation)
    if results and results[0].error:
        return _error(400, results[0].error, request)
    found = [wire.FoundAction(name) for name, r in zip(ACTIONS, results, strict=True) if r.decision]
    return _json(200, wire.ActionResults(found, wire.Page("", len(found), len(found))), request)


evaluation = _guarded(IngestKey.Scope.ACCESS_EVALUATE, wire.EvaluationRequest, _evaluation, "evaluation")
evaluations = _guarded(IngestKey.Scope.ACCESS_EVALUATE, wire.EvaluationsRequest, _evaluations, "evaluations")
search_subject = _guarded(
    IngestKey.Scope.ACCESS_SEARCH, wire.SearchSubjectRequest, _search_subject, "search_subject"
)
search_resource = _guarded(
    IngestKey.Scope.ACCESS_SEARCH, wire.SearchResourceRequest, _search_resource, "search_resource"
)
search_action = _guarded(
    IngestKey.Scope.ACCESS_SEARCH, wire.SearchActionRequest, _search_action, "search_action"
)


def metadata_for(base: str) -> wire.Metadata:
    base = base.rstrip("/")
    return wire.Metadata(
        policy_decision_point=base,
        access_evaluation_endpoint=f"{base}/access/v1/evaluation",
        access_evaluations_endpoint=f"{base}/access/v1/evaluations",
        search_subject_endpoint=f"{base}/access/v1/search/subject",
        search_resource_endpoint=f"{base}/access/v1/search/resource",
        search_action_endpoint=f"{base}/access/v1/search/action",
    )


@require_GET
def metadata(request: HttpRequest) -> HttpResponse:
    """The PDP metadata (AuthZEN 1.0 §9): where each endpoint is."""
    return _json(200, metadata_for(settings.LANYARD_BASE_URL), request)
