"""Validating a gateway's batch: every bad field reported by event index, or the events.

Two paths give the same answer. ``decode`` first reads the body straight into the typed structs
of ``wire`` (msgspec checks types and lengths in C, several times faster than ``json.loads`` and a walk in
Python), then applies the rules that need Python (times, emails, URLs, addresses). Anything that
path does not accept as it stands goes to ``validate``, which walks the parsed JSON and lists
every problem by event index; tests hold the two to the same verdicts.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.chain import normalise_ip

from . import wire

MAX_ERRORS = 100
_ACTION = wire.ACTION
_validate_url = URLValidator(schemes=["http", "https"])
OUTCOMES = wire.OUTCOMES


class BatchTooLarge(Exception):
    """More events in one request than LANYARD_INGEST_MAX_EVENTS."""


class IngestRejected(Exception):
    """The batch is invalid; nothing was written."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


@dataclass(slots=True)
class Event:
    """One validated event, still unresolved."""

    index: int
    id: str
    time: dt.datetime
    action: str
    outcome: str
    email: str = ""
    actor_source: str = ""
    actor_external_id: str = ""
    actor_name: str = ""
    device_id: str = ""
    device: dict[str, Any] = field(default_factory=dict)
    connector_source: str = ""
    client_id: str = ""
    mcp_server_url: str = ""
    connector_name: str = ""
    resource: str = ""
    ip: str | None = None
    user_agent: str = ""
    # In-process writers only (the gateway): extra facts kept in the event's data, e.g. latency.
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def _email_domain_ok(domain: str) -> bool:
    return domain in validate_email.domain_allowlist or validate_email.validate_domain_part(domain)


@functools.lru_cache(maxsize=65536)  # the same people post again and again
def _email_ok(value: str) -> bool:
    """Django's ``validate_email``, step for step, with the domain check remembered.

    Everyone at acme.com shares a domain, and the domain pattern is most of the cost: a first
    address at a known domain then costs a tenth of a full check.
    """
    if not value or "@" not in value or len(value) > 320:
        return False
    user, domain = value.rsplit("@", 1)
    return bool(validate_email.user_regex.match(user)) and _email_domain_ok(domain)


def _time(value: str) -> dt.datetime | None:
    """Return an RFC 3339 date-time with its zone, as the same instant in UTC, or None."""
    try:
        when = parse_datetime(value)
        # In UTC: PostgreSQL refuses an offset beyond 15:59 that Python accepts (e.g. -17:15), and
        # an instant outside years 1 to 9999 (0001-01-01T00:00:00+05:00) is no datetime at all.
        return when.astimezone(dt.UTC) if when is not None and when.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=4096)
def _url_ok(value: str) -> bool:
    try:
        _validate_url(value)
    except ValidationError:
        return False
    return True


class ErrorList:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field_: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({"index": index, "field": field_, "message": message})


def _text_limits(struct: type, prefix: str = "") -> dict[str, tuple[int, bool]]:
    """Return each text field's (max length, required) by dotted path, as the wire structs declare it.

    The one definition: the decoder enforces these ``msgspec.Meta`` limits, the schema publishes
    them, and the field-by-field validator reads them from here instead of repeating them.
    """
    limits: dict[str, tuple[int, bool]] = {}
    for f in msgspec.inspect.type_info(struct).fields:
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        for kind in kinds:
            inner = kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind
            if isinstance(inner, msgspec.inspect.StrType):
                limits[prefix + f.name] = (inner.max_length, bool(inner.min_length))
            elif isinstance(inner, msgspec.inspect.StructType):
                limits.update(_text_limits(inner.cls, f"{prefix}{f.name}."))
            elif isinstance(inner, msgspec.inspect.LiteralType):
                # Any text is read (to say "One of: ..." for a wrong value), but not an essay.
                limits[prefix + f.name] = (64, False)
    return limits


TEXT_LIMITS = _text_limits(wire.Event)


def _field(obj: Mapping, key: str, errors: ErrorList, i: int, path: str) -> str:
    """Read one text field with the length and presence the wire structs give it."""
    max_length, required = TEXT_LIMITS[path]
    return _string(obj, key, errors, i, path, required=required, max_length=max_length)


def _string(
    obj: Mapping, key: str, errors: ErrorList, i: int, path: str, *, required=False, max_length=254
) -> str:
    value = obj.get(key)
    # The common case first, in one test: plain ASCII text within the limit.
    if type(value) is str and value and len(value) <= max_length and value.isascii() and "\x00" not in value:
        return value
    if value is None or value == "":
        if required:
            errors.add(i, path, "This field is required.")
        return ""
    if not isinstance(value, str):
        errors.add(i, path, "Must be a string.")
        return ""
    if len(value) > max_length:
        errors.add(i, path, f"At most {max_length} characters.")
        return ""
    if "\x00" in value:
        errors.add(i, path, "Must not contain NUL characters.")
        return ""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: no database stores it
            errors.add(i, path, "Must be valid Unicode text.")
            return ""
    return value


def _object(event: Mapping, key: str, errors: ErrorList, i: int, *, required: bool) -> Mapping | None:
    value = event.get(key)
    if value is None:
        if required:
            errors.add(i, key, "This field is required.")
        return None
    if not isinstance(value, Mapping):
        errors.add(i, key, "Must be an object.")
        return None
    return value


# The rules types cannot express, shared by both paths. Each reports a breach as (field, message):
# the validator lists it, the fast path gives the batch up to the validator.
Report = Callable[[str, str], None]


def _check_time(value: str, report: Report) -> dt.datetime | None:
    when = _time(value)
    if when is None:
        report("time", "An RFC 3339 date-time with a time zone, e.g. 2026-11-29T10:00:00Z.")
    return when


def _check_action(action: str, report: Report) -> None:
    if action and not _ACTION.match(action):
        report("action", "Lower-case words separated by dots, e.g. tool_call or file.read.")


def _check_outcome(outcome: str, report: Report) -> None:
    if outcome not in OUTCOMES:
        report("outcome", f"One of: {', '.join(sorted(OUTCOMES))}.")


def _check_actor(event: Event, report: Report) -> None:
    if event.email:
        if not _email_ok(event.email):
            report("actor.email", "Enter a valid email address.")
    elif not (event.actor_source and event.actor_external_id):
        report("actor", "Give either email, or source and external_id.")


def _check_connector(event: Event, report: Report) -> None:
    if event.mcp_server_url:
        if not _url_ok(event.mcp_server_url):
            report("connector.mcp_server_url", "Enter a valid http(s) URL.")
        # A client id means nothing without its source; resolution would look the pair up.
        if event.client_id and not event.connector_source:
            report("connector.source", "Name the identity source of client_id, or leave client_id out.")
    elif not (event.connector_source and event.client_id):
        report("connector", "Give either source and client_id, or mcp_server_url.")


def _ipv4_compatible(ip: str) -> bool:
    """Return whether an address is IPv4-compatible IPv6 (``::1.2.3.4``, deprecated by RFC 4291)."""
    return ip.startswith("::") and 2**16 <= int(ipaddress.IPv6Address(ip)) < 2**32


def _check_ip(value: str, report: Report) -> str | None:
    # The schema's ipv4/ipv6 formats admit no surrounding space; neither does the validator.
    if value != value.strip():
        report("ip", "Enter a valid IPv4 or IPv6 address (no spaces).")
        return None
    try:
        ip = normalise_ip(value)
    except ValueError:
        report("ip", "Enter a valid IPv4 or IPv6 address.")
        return None
    # Both found by fuzzing on PostgreSQL: its inet type refuses a zone (a 500), and prints an
    # IPv4-compatible address dotted (::0.59.192.76) where Python prints ::3b:c04c, so the chain's
    # hash over the latter no longer matched the row (verify failed).
    if "%" in ip:
        report("ip", "An address without a zone (no %...).")
        return None
    if _ipv4_compatible(ip):
        report("ip", "IPv4-compatible addresses (::a.b.c.d) are deprecated: send the IPv4 address.")
        return None
    return ip


def _validate_one(i: int, raw: Any, errors: ErrorList) -> Event | None:
    if not isinstance(raw, Mapping):
        errors.add(i, "", "Each event must be an object.")
        return None
    before = len(errors.items)
    report = functools.partial(errors.add, i)
    event_id = _field(raw, "id", errors, i, "id")
    when = None
    time_raw = _field(raw, "time", errors, i, "time")
    if time_raw:
        when = _check_time(time_raw, report)
    action = _field(raw, "action", errors, i, "action")
    _check_action(action, report)
    outcome = _field(raw, "outcome", errors, i, "outcome") or "success"
    _check_outcome(outcome, report)

    event = Event(index=i, id=event_id, time=when or timezone.now(), action=action, outcome=outcome)

    actor = _object(raw, "actor", errors, i, required=True)
    if actor is not None:
        event.email = _field(actor, "email", errors, i, "actor.email")
        event.actor_source = _field(actor, "source", errors, i, "actor.source")
        event.actor_external_id = _field(actor, "external_id", errors, i, "actor.external_id")
        event.actor_name = _field(actor, "name", errors, i, "actor.name")
        _check_actor(event, report)

    device = _object(raw, "device", errors, i, required=False)
    if device is not None:
        event.device_id = _field(device, "id", errors, i, "device.id")
        managed = device.get("managed", False)
        if not isinstance(managed, bool):
            errors.add(i, "device.managed", "Must be true or false.")
        event.device = {
            "name": _field(device, "name", errors, i, "device.name"),
            "platform": _field(device, "platform", errors, i, "device.platform"),
            "managed": managed is True,
        }

    connector = _object(raw, "connector", errors, i, required=True)
    if connector is not None:
        event.connector_source = _field(connector, "source", errors, i, "connector.source")
        event.client_id = _field(connector, "client_id", errors, i, "connector.client_id")
        event.mcp_server_url = _field(connector, "mcp_server_url", errors, i, "connector.mcp_server_url")
        event.connector_name = _field(connector, "name", errors, i, "connector.name")
        _check_connector(event, report)

    event.resource = _field(raw, "resource", errors, i, "resource")
    event.user_agent = _field(raw, "user_agent", errors, i, "user_agent")
    ip = _field(raw, "ip", errors, i, "ip")
    if ip:
        event.ip = _check_ip(ip, report)
    return event if len(errors.items) == before else None


def validate(payload: Any, *, max_events: int) -> list[Event]:
    """Return the batch's events, or raise IngestRejected listing every bad field by index."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("events"), list):
        raise IngestRejected([{"index": None, "field": "events", "message": 'Send {"events": [...]}.'}])
    raw_events = payload["events"]
    if not raw_events:
        raise IngestRejected([{"index": None, "field": "events", "message": "At least one event."}])
    if len(raw_events) > max_events:
        raise BatchTooLarge(f"At most {max_events} events per request.")
    errors = ErrorList()
    events: list[Event] = []
    seen_ids: dict[str, int] = {}
    for i, raw in enumerate(raw_events):
        event = _validate_one(i, raw, errors)
        if event is None:
            continue
        if event.id in seen_ids:
            errors.add(i, "id", f"Repeats the id of event {seen_ids[event.id]}.")
            continue
        seen_ids[event.id] = i
        events.append(event)
    if errors.items:
        raise IngestRejected(errors.items)
    return events


# ------------------------------------------------------------------------------------ fast path


class MalformedJSON(Exception):
    """The request body is not JSON."""


class _Unfit(Exception):
    """An event breaks a rule: the field-by-field validator will say which."""


def _unfit(field_: str, message: str) -> None:
    raise _Unfit


def _from_structs(structs: list[wire.Event]) -> list[Event] | None:
    """Apply the rules types cannot express; None at the first event that breaks one."""
    events: list[Event] = []
    seen: set[str] = set()
    try:
        for i, s in enumerate(structs):
            if s.id in seen:
                return None
            seen.add(s.id)
            actor, connector, device = s.actor, s.connector, s.device
            event = Event(
                index=i,
                id=s.id,
                time=_check_time(s.time, _unfit),
                action=s.action,
                outcome=s.outcome or "success",
                email=actor.email or "",
                actor_source=actor.source or "",
                actor_external_id=actor.external_id or "",
                actor_name=actor.name or "",
                device_id=device.id if device else "",
                device=(
                    {"name": device.name or "", "platform": device.platform or "", "managed": device.managed}
                    if device
                    else {}
                ),
                connector_source=connector.source or "",
                client_id=connector.client_id or "",
                mcp_server_url=connector.mcp_server_url or "",
                connector_name=connector.name or "",
                resource=s.resource or "",
                ip=_check_ip(s.ip, _unfit) if s.ip else None,
                user_agent=s.user_agent or "",
            )
            _check_action(event.action, _unfit)
            _check_outcome(event.outcome, _unfit)
            _check_actor(event, _unfit)
            _check_connector(event, _unfit)
            events.append(event)
    except _Unfit:
        return None
    return events


def decode(body: bytes, *, max_events: int) -> list[Event]:
    """Return a request body's events; raise MalformedJSON, IngestRejected or BatchTooLarge."""
    # A NUL escape is left to the slow path, which names the field (no database stores NUL).
    if b"\\u0000" not in body:
        try:
            batch = wire.decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            pass
        else:
            if 0 < len(batch.events) <= max_events and (events := _from_structs(batch.events)) is not None:
                return events
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise MalformedJSON("The request body is not valid UTF-8.") from None
    except ValueError:
        raise MalformedJSON("Malformed JSON.") from None
    except RecursionError:
        raise MalformedJSON("The JSON document is nested too deeply.") from None
    return validate(payload, max_events=max_events)
