"""The hash chain: canonical encoding of an event, the locked chain head, the maintenance flag.

An event's hash is SHA-256 over a canonical JSON array: a format version, then every field that
matters in a fixed order, then the previous event's hash. Values are encoded so that what is read
back from SQLite or PostgreSQL hashes exactly like what was written: times as integer
microseconds since the epoch, ids as integers, ``data`` with sorted keys and normalised before it
is stored (see ``jsonable``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import ipaddress
import json
import operator
import struct
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

GENESIS_HASH = "0" * 64
CHAIN_VERSION = 1

# The order is part of the format: changing it (or adding a field) needs a new CHAIN_VERSION.
HASHED_FIELDS: tuple[str, ...] = (
    "sequence",
    "occurred_at",
    "recorded_at",
    "action",
    "outcome",
    "actor_user_id",
    "actor_identity_id",
    "actor_label",
    "device_id",
    "connector_id",
    "grant_id",
    "source_id",
    "target_type",
    "target_id",
    "target_label",
    "ip",
    "user_agent",
    "correlation_id",
    "external_id",
    "ingest_key_id",
    "data",
    "prev_hash",
)
# Positions in the canonical row, which starts with CHAIN_VERSION.
_OCCURRED = 1 + HASHED_FIELDS.index("occurred_at")
_RECORDED = 1 + HASHED_FIELDS.index("recorded_at")
_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _refuse(value: Any) -> Any:
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


# The C encoder built once (json.dumps builds one per call, which dominates on short rows):
# compact separators, sorted keys, ASCII only, NaN refused.
if c_make_encoder is not None:
    _encode = c_make_encoder(None, _refuse, encode_basestring_ascii, None, ":", ",", True, False, False)
else:  # pragma: no cover - CPython ships the C encoder
    _slow = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False, default=_refuse)

    def _encode(value: Any, _level: int) -> list[str]:
        return [_slow.encode(value)]


def dumps(value: Any) -> str:
    """Return ``value`` as compact JSON with sorted keys (what ``data`` is stored as)."""
    return "".join(_encode(value, 0))


def _micros(value: dt.datetime | int) -> int:
    if type(value) is int:  # already microseconds (the verifier's PostgreSQL path)
        return value
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return (value - _EPOCH) // _MICROSECOND


def encode_datetime(value: dt.datetime) -> str:
    """Return ``value`` as ISO 8601 in UTC, always with microseconds."""
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(_UTC).isoformat(timespec="microseconds")


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON that reads back from either database unchanged."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("audit data cannot hold NaN or infinity")
        # PostgreSQL's jsonb may print a large integral float as an integer: store it as one.
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, dt.datetime):
        return encode_datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"audit data cannot hold {type(value).__name__}")


def normalise_ip(value: str | None) -> str | None:
    """Return the address as PostgreSQL's inet prints it back (compressed IPv6), or None."""
    if not value:
        return None
    return _normalise_ip(str(value).strip())


@functools.lru_cache(maxsize=65536)  # the same gateway and client addresses recur in every batch
def _normalise_ip(value: str) -> str:
    address = ipaddress.ip_address(value)
    if address.version == 6 and not address.scope_id:
        # PostgreSQL prints an IPv6 address that encapsulates an IPv4 one (the first 80 bits zero,
        # then ffff or, IPv4-compatible, 16 more zero bits before a non-zero word) with a dotted
        # tail, as inet_net_ntop does; Python prints the compatible form in hex, and 3.12 the mapped
        # one too. The hash must cover the text the database gives back, or the chain cannot verify.
        words = struct.unpack("!8H", address.packed)
        if not any(words[:5]) and (words[5] == 0xFFFF or (words[5] == 0 and words[6] != 0)):
            tail = ipaddress.IPv4Address(address.packed[12:])
            return f"::ffff:{tail}" if words[5] else f"::{tail}"
    return str(address)


def canonical(values: Sequence[Any]) -> bytes:
    """Return the canonical bytes of one event given its values in ``HASHED_FIELDS`` order.

    Times are integer microseconds since the Unix epoch (UTC): exact, and cheap to encode. They
    may be given as aware datetimes or already as those integers.
    """
    row = [CHAIN_VERSION, *values]
    row[_OCCURRED], row[_RECORDED] = _micros(row[_OCCURRED]), _micros(row[_RECORDED])
    return "".join(_encode(row, 0)).encode("ascii")


def hash_prepared(row: list[Any]) -> str:
    """Return the hash of ``[CHAIN_VERSION, *values]`` whose times are already epoch microseconds."""
    return hashlib.sha256("".join(_encode(row, 0)).encode("ascii")).hexdigest()


def event_hash(values: Sequence[Any]) -> str:
    """Return the hex SHA-256 of one event given its values in ``HASHED_FIELDS`` order."""
    return hashlib.sha256(canonical(values)).hexdigest()


# ``data`` and ``prev_hash`` close the canonical row: a writer that has encoded ``data`` already
# (to store it) splices that text in rather than encoding the object a second time.
if HASHED_FIELDS[-2:] != ("data", "prev_hash"):  # pragma: no cover - a guard for whoever edits the format
    raise RuntimeError("event_hash_encoded expects data and prev_hash to close HASHED_FIELDS")
_BEFORE_DATA = HASHED_FIELDS[:-2]
_before_data = operator.itemgetter(*_BEFORE_DATA)


def event_hash_encoded(values: Mapping[str, Any], data: str) -> str:
    """Return ``event_hash`` of an event given by field name, its ``data`` already ``dumps``-ed.

    The same bytes as ``canonical``: ``[...fields, data, prev_hash]`` with ``data`` in place.
    """
    row = [CHAIN_VERSION, *_before_data(values)]
    row[_OCCURRED], row[_RECORDED] = _micros(row[_OCCURRED]), _micros(row[_RECORDED])
    head = "".join(_encode(row, 0))
    text = f"{head[:-1]},{data},{encode_basestring_ascii(values['prev_hash'])}]"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def values_of(event: Any) -> list[Any]:
    """Return an AuditEvent's values in ``HASHED_FIELDS`` order."""
    return [getattr(event, name) for name in HASHED_FIELDS]


def lock_head(using: str = DEFAULT_DB_ALIAS):
    """Lock and return the chain head row; call inside a transaction.

    On PostgreSQL the row lock serialises writers; SQLite serialises write transactions already.
    The row is created on first use (and again after a test flush), from the last event if any.
    """
    from .models import AuditChainHead, AuditEvent

    head = AuditChainHead.objects.using(using).select_for_update().filter(pk=1).first()
    if head is not None:
        return head
    last = AuditEvent.objects.using(using).order_by("-sequence").values_list("sequence", "hash").first()
    sequence, hash_ = last if last else (0, GENESIS_HASH)
    AuditChainHead.objects.using(using).bulk_create(
        [AuditChainHead(pk=1, sequence=sequence, hash=hash_)], ignore_conflicts=True
    )
    return AuditChainHead.objects.using(using).select_for_update().get(pk=1)


@contextmanager
def maintenance(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Let UPDATE/DELETE through the append-only triggers inside this block's transaction only.

    Test and maintenance use only: the test runner's flush between transactional tests goes
    through it (``audit/management/commands/flush.py``). The flag is transaction-local (a
    ``SET LOCAL``-style GUC on PostgreSQL, a row written in the same transaction on SQLite), so
    no other connection ever sees it, and an exception rolls it back with the savepoint.
    """
    connection = connections[using]
    on, off = (
        (
            "SELECT set_config('lanyard.audit_maintenance', 'on', true)",
            "SELECT set_config('lanyard.audit_maintenance', '', true)",
        )
        if connection.vendor == "postgresql"
        else (
            "INSERT OR REPLACE INTO audit_maintenance (id, enabled) VALUES (1, 1)",
            "DELETE FROM audit_maintenance",
        )
    )
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute(on)
        yield
        with connection.cursor() as cursor:
            cursor.execute(off)
