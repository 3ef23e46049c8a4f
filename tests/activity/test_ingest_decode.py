"""The fast decoder and the field-by-field validator give the same verdict on every body."""

from __future__ import annotations

import copy
import json

import pytest

from activity import ingest
from activity.ingest import validation

MAX = 50

GOOD = {
    "id": "evt-1",
    "time": "2026-11-29T10:15:00+01:00",
    "actor": {"email": "emma@example.com", "source": "Acme Google", "external_id": "g-1", "name": "Emma"},
    "device": {"id": "LAPTOP-1", "name": "Emma's laptop", "platform": "macOS", "managed": True},
    "connector": {"source": "Acme Google", "client_id": "notes.apps", "name": "Notes"},
    "action": "tool_call",
    "resource": "drive:file/1",
    "outcome": "denied",
    "ip": "2001:db8:0:0:0:0:0:1",
    "user_agent": "gateway/1.0",
}

# Values tried in every field: absent (None here means delete the key), null, empty, the wrong
# types, too long, a NUL, non-ASCII text, and text that is fine.
ODD_VALUES = [None, "null", "", 0, 1.5, True, [], {}, "x" * 1001, "a\x00b", "é😀", "fine"]
FIELDS = [
    ("id",),
    ("time",),
    ("action",),
    ("outcome",),
    ("resource",),
    ("ip",),
    ("user_agent",),
    ("actor",),
    ("actor", "email"),
    ("actor", "source"),
    ("actor", "external_id"),
    ("actor", "name"),
    ("device",),
    ("device", "id"),
    ("device", "name"),
    ("device", "platform"),
    ("device", "managed"),
    ("connector",),
    ("connector", "source"),
    ("connector", "client_id"),
    ("connector", "mcp_server_url"),
    ("connector", "name"),
]
SPECIFIC = [
    (("time",), "2026-11-29T10:15:00"),  # no zone
    (("time",), "2026-13-01T00:00:00Z"),
    (("time",), "2026-11-29T10:15:00.123456Z"),
    (("time",), "0587-11-27T07:30:40-17:15"),  # an offset PostgreSQL refuses: kept as UTC
    (("time",), "0001-01-01T00:00:00+05:00"),  # before year 1 in UTC
    (("time",), "9999-12-31T23:59:59-05:00"),  # after year 9999 in UTC
    (("action",), "Tool Call"),
    (("action",), "ai.file.read"),
    (("outcome",), "maybe"),
    (("ip",), "10.0.0.300"),
    (("ip",), " 10.0.0.1"),
    (("ip",), "fe80::1%eth0"),  # a zone: PostgreSQL's inet refuses it
    (("ip",), "::0.59.192.76"),  # IPv4-compatible: PostgreSQL prints it otherwise than Python
    (("ip",), "::ffff:1.2.3.4"),  # IPv4-mapped: fine
    (("ip",), "::ffff"),
    (("actor", "email"), "not-an-email"),
    (("actor", "email"), "EMMA@Example.COM"),
    (("connector", "mcp_server_url"), "ftp://mcp.example.com"),
    (("connector", "mcp_server_url"), "https://mcp.example.com/sse"),
    (("device", "managed"), "true"),
    (("device", "id"), "x" * 201),
    (("id",), "x" * 129),
]


def _with(path: tuple[str, ...], value) -> dict:
    event = copy.deepcopy(GOOD)
    target = event
    for part in path[:-1]:
        target = target[part]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = None if value == "null" else value
    return event


def _cases():
    for path in FIELDS:
        for value in ODD_VALUES:
            yield f"{'.'.join(path)}={value!r:.20}", [_with(path, value)]
    for path, value in SPECIFIC:
        yield f"{'.'.join(path)}={value!r:.20}", [_with(path, value)]
    no_email = _with(("actor", "email"), None)
    yield "actor by source and external id", [no_email]
    yield "actor with neither", [_with(("actor", "external_id"), None) | {"actor": {"name": "x"}}]
    yield (
        "an mcp server instead of a client",
        [_with(("connector",), {"mcp_server_url": "https://m.example"})],
    )
    yield (
        "a client id without its source beside an mcp server",
        [_with(("connector",), {"client_id": "notes.apps", "mcp_server_url": "https://m.example"})],
    )
    yield "a repeated id", [GOOD, GOOD]
    yield "two good events", [GOOD, _with(("id",), "evt-2")]
    yield "a bad event after a good one", [GOOD, _with(("time",), "yesterday")]


def _verdict(call):
    try:
        return "ok", call()
    except ingest.IngestRejected as exc:
        return "rejected", exc.errors
    except ingest.BatchTooLarge as exc:
        return "too large", str(exc)


@pytest.mark.parametrize(("name", "events"), list(_cases()), ids=[name for name, _ in _cases()])
def test_both_paths_agree(name, events):
    body = json.dumps({"events": events}).encode()

    fast = _verdict(lambda: ingest.decode(body, max_events=MAX))
    slow = _verdict(lambda: ingest.validate(json.loads(body), max_events=MAX))

    assert fast == slow


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": []}',
        b'{"events": {}}',
        b"[]",
        b'{"events": [1, "x", null]}',
        json.dumps({"events": [GOOD] * (MAX + 1)}).encode(),
        b'{"events": [{"id": "\\ud800", "time": "2026-11-29T10:00:00Z"}]}',
        b'{"events": [{"id": "a", "id": "b"}]}',
    ],
)
def test_odd_batches_get_the_slow_paths_answer(body):
    assert _verdict(lambda: ingest.decode(body, max_events=MAX)) == _verdict(
        lambda: ingest.validate(json.loads(body), max_events=MAX)
    )


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b"", b'{"events": [}'])
def test_a_body_that_is_not_json_is_malformed(body):
    with pytest.raises(ingest.MalformedJSON):
        ingest.decode(body, max_events=MAX)


def test_a_good_batch_never_takes_the_slow_path(monkeypatch):
    def slow(*args, **kwargs):
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(validation, "validate", slow)
    third = _with(("device",), None) | {"id": "evt-3"}
    body = json.dumps({"events": [GOOD, _with(("id",), "evt-2"), third]}).encode()

    events = ingest.decode(body, max_events=MAX)

    assert [e.id for e in events] == ["evt-1", "evt-2", "evt-3"]
    assert events[0].ip == "2001:db8::1"
    assert events[0].device == {"name": "Emma's laptop", "platform": "macOS", "managed": True}
    assert events[2].device == {}
    assert events[2].device_id == ""


@pytest.mark.parametrize(
    "email",
    [
        "emma@example.com",
        "Emma.Jones+ai@Acme.example",
        "x@localhost",
        "a@[192.0.2.1]",
        "a@[IPv6:2001:db8::1]",
        "a@[2001:db8::1]",
        '"quoted local"@example.com',
        "a@b",
        "a@-b.com",
        "a@b..com",
        "a@.example.com",
        "@example.com",
        "no-at-sign",
        "a@b@c.com",
        "é@example.com",
        "a@exämple.com",
        "a" * 310 + "@example.com",
        "a b@example.com",
        "",
    ],
)
def test_the_email_check_is_djangos(email):
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    try:
        validate_email(email)
        django_says = True
    except ValidationError:
        django_says = False

    assert validation._email_ok(email) is django_says
