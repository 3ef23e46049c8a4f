"""The request body of ``POST /api/v1/events`` as typed structs: what the decoder reads and the document says.

These structs are the one source for the batch's shape. ``validation.decode`` decodes bodies
with them, and the OpenAPI document (``activity.openapi``) is generated from them with
``msgspec.json.schema_components``: limits are ``msgspec.Meta`` constraints that the decoder
enforces, descriptions and examples are ``Meta`` too, and ``extra_json_schema`` carries only what
JSON Schema can say but a type cannot (formats, "either these fields or those"), which the rules in
``validation`` enforce. Absent, ``null`` and ``""`` all mean "not given".
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from django.conf import settings

from audit.models import AuditEvent

ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
OUTCOMES = set(AuditEvent.Outcome.values)


# No database stores NUL: validation refuses it (decode leaves a \u0000 escape to the field-by-field
# path). Said in the schema only, since a pattern on every field would slow the decoder.
NO_NUL = "^[^\u0000]*$"


def _text(
    max_length: int, *, required: bool = False, extra_json_schema: dict | None = None, **meta: Any
) -> Any:
    schema = {"pattern": NO_NUL, **(extra_json_schema or {})}
    return Annotated[
        str,
        msgspec.Meta(
            min_length=1 if required else 0, max_length=max_length, extra_json_schema=schema, **meta
        ),
    ]


_SOURCE = "An identity source's name, or its kind when only one source has it."


class Actor(msgspec.Struct):
    """The person: by email, or by identity source and the id the source gives them."""

    email: (
        _text(
            254,
            description="Checked with Django's email validator, stricter than the `email` format.",
            extra_json_schema={"anyOf": [{"maxLength": 0}, {"format": "email"}]},
        )
        | None
    ) = None
    source: _text(100, description=_SOURCE) | None = None
    external_id: _text(200, description="The person's id in that source.") | None = None
    name: _text(200, description="Display name, kept for a person no source knows.") | None = None


class Device(msgspec.Struct):
    """The device the action came from; an unknown device is kept as given and flagged unverified."""

    id: _text(200, required=True, description="The device's id in its source (e.g. the MDM's).")
    name: _text(200) | None = None
    platform: _text(50, examples=["macOS", "Windows", "Linux"]) | None = None
    managed: bool = False


class Connector(msgspec.Struct):
    """The AI client: an OAuth client in an identity source, or an MCP server by URL."""

    source: _text(100, description=_SOURCE) | None = None
    client_id: _text(255, description="The OAuth client id (app id) in that source.") | None = None
    mcp_server_url: (
        _text(
            500,
            description="An http(s) URL, checked with Django's URL validator (stricter than `uri`).",
            extra_json_schema={
                "anyOf": [
                    {"maxLength": 0},
                    {"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+"},
                ]
            },
        )
        | None
    ) = None
    name: _text(200, description="Name for a newly discovered connector.") | None = None


# A person is named by email or by source and external id; a connector by source and client id,
# or by MCP server URL. The rules enforce it (validation._check_actor, _check_connector).
_GIVEN = {"type": "string", "minLength": 1}
_ACTOR_NAMED = msgspec.Meta(
    extra_json_schema={
        "anyOf": [
            {"required": ["email"], "properties": {"email": _GIVEN}},
            {"required": ["source", "external_id"], "properties": {"source": _GIVEN, "external_id": _GIVEN}},
        ]
    }
)
_CONNECTOR_NAMED = msgspec.Meta(
    extra_json_schema={
        "anyOf": [
            {"required": ["source", "client_id"], "properties": {"source": _GIVEN, "client_id": _GIVEN}},
            {"required": ["mcp_server_url"], "properties": {"mcp_server_url": _GIVEN}},
        ],
        # A client id needs its source, even beside an MCP server URL.
        "if": {"required": ["client_id"], "properties": {"client_id": _GIVEN}},
        "then": {"required": ["source"], "properties": {"source": _GIVEN}},
    }
)
# "" is "not given" like null, so it is a valid outcome on the wire.
Outcome = Literal[("", *sorted(OUTCOMES))]  # type: ignore[valid-type]


class Event(msgspec.Struct):
    """One AI action by one person through one connector."""

    id: _text(
        128,
        required=True,
        description="Unique per ingest key (and so within the batch): the idempotency key.",
    )
    time: _text(
        64,
        required=True,
        description="When it happened: RFC 3339 with a time zone, within years 1 to 9999 in UTC.",
        examples=["2026-11-29T10:15:00Z"],
        extra_json_schema={"format": "date-time"},
    )
    action: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=61,
            pattern=ACTION.pattern,
            description="Recorded as `ai.<action>` (an action already starting with `ai.` is kept).",
            examples=["tool_call", "file.read"],
        ),
    ]
    actor: Annotated[Actor, _ACTOR_NAMED]
    connector: Annotated[Connector, _CONNECTOR_NAMED]
    outcome: Annotated[Outcome, msgspec.Meta(description="Absent, null or empty: success.")] | None = None
    device: Device | None = None
    resource: _text(1000, description="What the action touched, e.g. drive:file/1AbC.") | None = None
    user_agent: _text(500) | None = None
    ip: (
        _text(
            64,
            description=(
                "The client's IPv4 or IPv6 address: without a zone (%eth0), and not in the deprecated "
                "IPv4-compatible form (::a.b.c.d)."
            ),
            examples=["203.0.113.7", "2001:db8::7"],
            extra_json_schema={
                "anyOf": [{"maxLength": 0}, {"format": "ipv4"}, {"format": "ipv6"}],
                "not": {"pattern": "%"},
            },
        )
        | None
    ) = None


class EventBatch(msgspec.Struct):
    """A batch of events: all recorded, or (when one is invalid) none."""

    events: Annotated[
        list[Event],
        msgspec.Meta(
            min_length=1,
            description=("At most LANYARD_INGEST_MAX_EVENTS events (default 1000); a longer batch gets 413."),
            # Not a decoder limit: the setting is read per request, and too many is a 413, not a 400.
            extra_json_schema={"maxItems": settings.LANYARD_INGEST_MAX_EVENTS},
        ),
    ]


decoder = msgspec.json.Decoder(EventBatch)
