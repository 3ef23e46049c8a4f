"""Streamed exports of filtered audit events: CSV, JSON Lines, and OCSF-shaped JSON Lines for SIEMs.

Rows are read with ``.values().iterator(chunk_size=EXPORT_CHUNK_SIZE)`` (a server-side cursor on
PostgreSQL) and written out chunk by chunk, so memory stays flat whatever the number of rows.

OCSF mapping (schema 1.3.0, one JSON object per line):

================================  =========================================================
OCSF attribute                    Lanyard source
================================  =========================================================
class_uid / category_uid          ``signin``, ``signout`` and ``token.*`` → 3002 Authentication
                                  in 3 Identity & Access Management; everything else (``ai.*``
                                  and governance changes) → 6003 API Activity in 6 Application
                                  Activity
activity_id / activity_name       Authentication: signin → 1 Logon, signout → 2 Logoff,
                                  token.* → 99 Other. API Activity, from ``data.operation`` or
                                  the action's last segment: create/add/request → 1 Create,
                                  read/get/list/search/query/tool_call/view → 2 Read,
                                  update/change/approve/provision/… → 3 Update,
                                  delete/revoke/remove → 4 Delete, anything else → 99 Other
type_uid                          class_uid × 100 + activity_id
time                              ``occurred_at`` as epoch milliseconds
severity_id                       1 Informational (denied and failed events: 3 Medium)
status / status_id                success → Success/1, failure → Failure/2,
                                  denied → Failure/2 with status_detail "denied",
                                  unknown → Unknown/0
actor.user                        email_addr ← the identity's email, else the Django user's
                                  email, else ``actor_label``; uid ← identity external id or
                                  user id; name ← identity name
device                            uid ← device external id, name, os.name ← platform with
                                  os.type_id (Windows 100, Linux 200, Android 201, macOS 300,
                                  iOS 301, other 99, unknown 0), type_id 0
src_endpoint.ip                   ``ip``
http_request.user_agent           ``user_agent``
api.operation                     ``data.operation`` or ``data.tool`` or the action;
                                  api.request.uid ← ``correlation_id``
resources                         the connector (type "ai_connector"), ``data.resource``
                                  (type "resource"), and the target (its model label)
metadata                          product.name "Lanyard", product.vendor_name "Lanyard",
                                  version "1.3.0", uid ← sequence, correlation_uid,
                                  logged_time ← ``recorded_at`` (epoch ms), original_uid ←
                                  ``external_id``
unmapped                          action, sequence, hash, prev_hash and the remaining ``data``
================================  =========================================================

CSV cells that start with ``= + - @`` (or a tab/carriage return) get a leading apostrophe so
spreadsheet programs do not evaluate gateway-supplied text as formulas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from .models import AuditEvent

EXPORT_CHUNK_SIZE = 2000
OCSF_VERSION = "1.3.0"
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "ocsf": ("application/x-ndjson", "ocsf.jsonl"),
}

EXPORT_VALUES = (
    "sequence",
    "occurred_at",
    "recorded_at",
    "action",
    "outcome",
    "actor_label",
    "actor_user_id",
    "actor_user__email",
    "actor_identity_id",
    "actor_identity__email",
    "actor_identity__name",
    "actor_identity__external_id",
    # The person behind the identity (the register links one human's identities across sources).
    "actor_identity__person_id",
    "actor_identity__person__email",
    "device_id",
    "device__external_id",
    "device__name",
    "device__platform",
    "device__managed",
    "connector_id",
    "connector__name",
    "connector__status",
    "grant_id",
    "source_id",
    "target_type",
    "target_id",
    "target_label",
    "ip",
    "user_agent",
    "correlation_id",
    "external_id",
    "data",
    "prev_hash",
    "hash",
)
CSV_COLUMNS = (
    "sequence",
    "occurred_at",
    "recorded_at",
    "action",
    "outcome",
    "actor_label",
    "actor_user_id",
    "actor_identity_id",
    "actor_email",
    "actor_person_id",
    "actor_person_email",
    "device_id",
    "device_name",
    "device_platform",
    "device_managed",
    "connector_id",
    "connector_name",
    "grant_id",
    "source_id",
    "target_type",
    "target_id",
    "target_label",
    "ip",
    "user_agent",
    "correlation_id",
    "external_id",
    "data",
    "prev_hash",
    "hash",
)
# Spreadsheets run a cell that starts with one of these as a formula; exported evidence stays inert text.
_FORMULA_START = frozenset("=+-@\t\r")


def spreadsheet_safe(text: str) -> str:
    """Return ``text`` with a leading apostrophe if a spreadsheet would run it as a formula."""
    return "'" + text if text and text[0] in _FORMULA_START else text


def export_rows(queryset: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    """Yield the filtered events as plain dicts, in chain order, streamed from the database."""
    return queryset.order_by("sequence").values(*EXPORT_VALUES).iterator(chunk_size=EXPORT_CHUNK_SIZE)


def _email(row: dict[str, Any]) -> str:
    return row["actor_identity__email"] or row["actor_user__email"] or row["actor_label"] or ""


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def csv_row(row: dict[str, Any]) -> list[Any]:
    """Return one CSV line's cells for an exported row (see CSV_COLUMNS)."""
    values = [
        row["sequence"],
        _iso(row["occurred_at"]),
        _iso(row["recorded_at"]),
        row["action"],
        row["outcome"],
        row["actor_label"],
        row["actor_user_id"] or "",
        row["actor_identity_id"] or "",
        _email(row),
        row["actor_identity__person_id"] or "",
        row["actor_identity__person__email"] or "",
        row["device_id"] or "",
        row["device__name"] or "",
        row["device__platform"] or "",
        "" if row["device__managed"] is None else str(row["device__managed"]).lower(),
        row["connector_id"] or "",
        row["connector__name"] or "",
        row["grant_id"] or "",
        row["source_id"] or "",
        row["target_type"],
        row["target_id"],
        row["target_label"],
        row["ip"] or "",
        row["user_agent"],
        row["correlation_id"],
        row["external_id"] or "",
        json.dumps(row["data"], sort_keys=True, cls=DjangoJSONEncoder),
        row["prev_hash"],
        row["hash"],
    ]
    # Inline rather than a helper call per cell: this runs ~29 times per exported row.
    return [("'" + v) if v.__class__ is str and v and v[0] in _FORMULA_START else v for v in values]


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return the Lanyard-native JSON object for an exported row."""
    return {
        "sequence": row["sequence"],
        "occurred_at": _iso(row["occurred_at"]),
        "recorded_at": _iso(row["recorded_at"]),
        "action": row["action"],
        "outcome": row["outcome"],
        "actor": {
            "label": row["actor_label"],
            "user_id": row["actor_user_id"],
            "identity_id": row["actor_identity_id"],
            "email": _email(row) or None,
            "person": None
            if row["actor_identity__person_id"] is None
            else {"id": row["actor_identity__person_id"], "email": row["actor_identity__person__email"]},
        },
        "device": None
        if row["device_id"] is None
        else {
            "id": row["device_id"],
            "external_id": row["device__external_id"],
            "name": row["device__name"],
            "platform": row["device__platform"],
            "managed": row["device__managed"],
        },
        "connector": None
        if row["connector_id"] is None
        else {"id": row["connector_id"], "name": row["connector__name"], "status": row["connector__status"]},
        "grant_id": row["grant_id"],
        "source_id": row["source_id"],
        "target": {"type": row["target_type"], "id": row["target_id"], "label": row["target_label"]}
        if row["target_type"]
        else None,
        "ip": row["ip"],
        "user_agent": row["user_agent"],
        "correlation_id": row["correlation_id"],
        "external_id": row["external_id"],
        "data": row["data"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


_AUTH_ACTIVITIES = {"signin": (1, "Logon"), "signout": (2, "Logoff")}
_API_VERBS = {
    1: ("Create", {"create", "created", "add", "added", "insert", "post", "request", "requested", "write"}),
    2: (
        "Read",
        {
            "read",
            "get",
            "list",
            "search",
            "query",
            "view",
            "viewed",
            "fetch",
            "tool_call",
            "download",
            "exported",
            "prompt",
            "completion",
            "chat",
        },
    ),
    3: (
        "Update",
        {
            "update",
            "updated",
            "change",
            "changed",
            "edit",
            "patch",
            "put",
            "approve",
            "approved",
            "provision",
            "provisioned",
            "suspend",
            "suspended",
            "resume",
            "resumed",
            "transfer",
            "transferred",
            "attested",
            "kept",
            "decided",
        },
    ),
    4: ("Delete", {"delete", "deleted", "remove", "removed", "revoke", "revoked", "expired"}),
}
_OS_TYPES = {
    "windows": 100,
    "linux": 200,
    "android": 201,
    "macos": 300,
    "mac": 300,
    "ios": 301,
    "ipados": 302,
}
_STATUS = {
    AuditEvent.Outcome.SUCCESS: ("Success", 1),
    AuditEvent.Outcome.FAILURE: ("Failure", 2),
    AuditEvent.Outcome.DENIED: ("Failure", 2),
    AuditEvent.Outcome.UNKNOWN: ("Unknown", 0),
}


def _api_activity(operation: str) -> tuple[int, str]:
    verb = operation.rsplit(".", 1)[-1].lower()
    for activity_id, (name, verbs) in _API_VERBS.items():
        if verb in verbs:
            return activity_id, name
    return 99, "Other"


def ocsf_event(row: dict[str, Any]) -> dict[str, Any]:
    """Return an OCSF API Activity (6003) or Authentication (3002) event for an exported row."""
    action: str = row["action"]
    data = row["data"] if isinstance(row["data"], dict) else {"value": row["data"]}
    if action in _AUTH_ACTIVITIES or action.startswith("token."):
        class_uid, class_name, category_uid, category_name = (
            3002,
            "Authentication",
            3,
            "Identity & Access Management",
        )
        activity_id, activity_name = _AUTH_ACTIVITIES.get(action, (99, "Other"))
    else:
        class_uid, class_name, category_uid, category_name = 6003, "API Activity", 6, "Application Activity"
        activity_id, activity_name = _api_activity(str(data.get("operation") or action))
    status, status_id = _STATUS.get(row["outcome"], ("Other", 99))
    failed = status_id == 2
    user: dict[str, Any] = {"email_addr": _email(row) or None}
    if row["actor_identity_id"]:
        user |= {"uid": row["actor_identity__external_id"], "name": row["actor_identity__name"] or None}
    elif row["actor_user_id"]:
        user |= {"uid": str(row["actor_user_id"])}
    else:
        user |= {"name": row["actor_label"] or None}
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": _ms(row["occurred_at"]),
        "severity_id": 3 if failed else 1,
        "severity": "Medium" if failed else "Informational",
        "status": status,
        "status_id": status_id,
        "actor": {"user": user},
        "api": {"operation": str(data.get("operation") or data.get("tool") or action)},
        "metadata": {
            "product": {"name": "Lanyard", "vendor_name": "Lanyard"},
            "version": OCSF_VERSION,
            "uid": str(row["sequence"]),
            "logged_time": _ms(row["recorded_at"]),
        },
        "unmapped": {
            "action": action,
            "sequence": row["sequence"],
            "hash": row["hash"],
            "prev_hash": row["prev_hash"],
            "data": {k: v for k, v in data.items() if k not in ("resource", "operation")},
        },
    }
    if row["outcome"] == AuditEvent.Outcome.DENIED:
        event["status_detail"] = "denied"
    if row["correlation_id"]:
        event["api"]["request"] = {"uid": row["correlation_id"]}
        event["metadata"]["correlation_uid"] = row["correlation_id"]
    if row["external_id"]:
        event["metadata"]["original_uid"] = row["external_id"]
    if row["device_id"] is not None:
        platform = row["device__platform"] or ""
        os_type = _OS_TYPES.get(platform.lower().replace(" ", ""), 99 if platform else 0)
        event["device"] = {
            "uid": row["device__external_id"],
            "name": row["device__name"] or None,
            "type_id": 0,
            "os": {"name": platform or "Unknown", "type_id": os_type},
        }
    if row["ip"]:
        event["src_endpoint"] = {"ip": row["ip"]}
    if row["user_agent"]:
        event["http_request"] = {"user_agent": row["user_agent"]}
    resources = []
    if row["connector_id"] is not None:
        resources.append(
            {"uid": str(row["connector_id"]), "name": row["connector__name"], "type": "ai_connector"}
        )
    if data.get("resource"):
        resources.append({"name": str(data["resource"]), "type": "resource"})
    if row["target_type"]:
        resources.append({"uid": row["target_id"], "name": row["target_label"], "type": row["target_type"]})
    if resources:
        event["resources"] = resources
    return event


def _batches(rows: Iterable[dict[str, Any]], size: int = 500) -> Iterator[list[dict[str, Any]]]:
    # A few hundred rows per chunk keeps per-yield overhead low without holding much in memory.
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue().encode()
    for batch in _batches(rows):
        out = io.StringIO()
        csv.writer(out).writerows([csv_row(row) for row in batch])
        yield out.getvalue().encode()


def _jsonl_chunks(rows: Iterable[dict[str, Any]], shape) -> Iterator[bytes]:
    dumps = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
    for batch in _batches(rows):
        yield "".join([dumps(shape(row)) + "\n" for row in batch]).encode()


def stream(queryset: QuerySet[AuditEvent], fmt: str) -> Iterator[bytes]:
    """Yield the export of ``queryset`` in ``fmt`` (csv, jsonl, ocsf) as byte chunks."""
    rows = export_rows(queryset)
    if fmt == "csv":
        return _csv_chunks(rows)
    return _jsonl_chunks(rows, ocsf_event if fmt == "ocsf" else json_row)


def streaming_response(queryset: QuerySet[AuditEvent], fmt: str, *, scope: str) -> StreamingHttpResponse:
    """Return a streamed download of ``queryset`` in ``fmt``, named after ``scope`` and now."""
    content_type, extension = FORMATS[fmt]
    response = StreamingHttpResponse(stream(queryset, fmt), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="lanyard-audit-{scope}-{stamp}.{extension}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- the verifiable bundle (for ``python -m audit.offline``) --------------------------------------


def chain_event(values: tuple, names: tuple[str, ...]) -> dict[str, Any]:
    """Return one event as the offline verifier reads it: every hashed field by name, and its hash.

    Times are ISO 8601 in UTC with microseconds (exact: the verifier turns them back into the
    epoch microseconds the hash covers); ``data`` is the stored JSON as read back.
    """
    from .chain import encode_datetime

    row = dict(zip(names, values, strict=True))
    for name in ("occurred_at", "recorded_at"):
        row[name] = encode_datetime(row[name])
    return row


def write_bundle(directory, *, using: str = "default") -> dict[str, int]:
    """Write events.jsonl, checkpoints.jsonl, audit-signing-keys.jsonl and audit-public-key.pem.

    The events are the whole chain in order, streamed; the checkpoints are the database's, in
    the witness record format (``audit.witness.record_line``); the signing keys every key that
    ever signed, in the order they took over, each with its predecessor's endorsement (the
    offline verifier's ``--signing-keys``). Returns the counts written.
    """
    from pathlib import Path

    from .chain import HASHED_FIELDS
    from .checkpoints import key_id, public_key, public_key_pem, registered_keys
    from .models import AuditCheckpoint
    from .witness import record_line

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = (*HASHED_FIELDS, "hash")
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode
    events = 0
    rows = (
        AuditEvent.objects.using(using)
        .order_by("sequence")
        .values_list(*names)
        .iterator(chunk_size=EXPORT_CHUNK_SIZE)
    )
    with (directory / "events.jsonl").open("w", encoding="ascii") as fh:
        for values in rows:
            fh.write(dumps(chain_event(values, names)) + "\n")
            events += 1
    checkpoints = 0
    with (directory / "checkpoints.jsonl").open("wb") as fh:
        for checkpoint in AuditCheckpoint.objects.using(using).order_by("id").iterator():
            fh.write(record_line(checkpoint))
            checkpoints += 1
    from .chain import encode_datetime

    keys = registered_keys(using)
    with (directory / "audit-signing-keys.jsonl").open("w", encoding="ascii") as fh:
        for row in keys:
            fh.write(dumps({**row, "created_at": encode_datetime(row["created_at"])}) + "\n")
    key = public_key()
    (directory / "audit-public-key.pem").write_text(public_key_pem(key))
    (directory / "audit-public-key.id").write_text(key_id(key) + "\n")
    return {"events": events, "checkpoints": checkpoints, "signing_keys": len(keys)}
