"""The gateway API's operations for the project's OpenAPI document (see ``httpapi.openapi``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from httpapi.openapi import Header, Operation, RequestBody, Response, SecurityScheme, Tag

from .api import UNAUTHORIZED, Error, FieldError, InvalidBatch
from .ingest import IngestResult
from .ingest.wire import EventBatch

INGEST_KEY = SecurityScheme(
    "ingestKey",
    {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An ingest key created by IAM in the admin (`lny_<prefix>_<secret>`); shown once at creation."
        ),
    },
)

TAGS = [
    Tag(
        "activity",
        "AI gateways and MCP proxies post AI activity events. Each event is resolved to an identity, "
        "device, connector and grant and appended to Lanyard's tamper-evident audit chain. A batch is "
        "all-or-nothing: one invalid event rejects the whole batch and nothing is recorded. Event ids "
        "are idempotency keys scoped to the ingest key: a retried batch never duplicates. Unknown "
        "clients become discovered (shadow) connectors; unknown people and devices are kept as given "
        "and flagged unverified.",
    )
]

TWO_EVENTS = {
    "events": [
        {
            "id": "evt-0001",
            "time": "2026-11-29T10:15:00Z",
            "actor": {"email": "emma.employee@example.com"},
            "device": {"id": "LAPTOP-0042", "name": "Emma's MacBook", "platform": "macOS", "managed": True},
            "connector": {
                "source": "google_workspace",
                "client_id": "1234567890-notes.apps.googleusercontent.com",
            },
            "action": "tool_call",
            "resource": "drive:file/1AbC",
            "outcome": "success",
            "ip": "203.0.113.7",
            "user_agent": "ai-gateway/2.3",
        },
        {
            "id": "evt-0002",
            "time": "2026-11-29T10:15:02.250+01:00",
            "actor": {"source": "okta", "external_id": "00u1abcd"},
            "connector": {"mcp_server_url": "https://mcp.example.net/sse", "name": "Example MCP"},
            "action": "file.read",
            "outcome": "denied",
        },
    ]
}
SMALLEST = {
    "events": [
        {
            "id": "evt-0003",
            "time": "2026-11-29T10:16:00Z",
            "actor": {"email": "emma.employee@example.com"},
            "connector": {"mcp_server_url": "https://mcp.example.net/sse"},
            "action": "tool_call",
        }
    ]
}

RETRY_AFTER = Header("Seconds to wait before retrying.", Annotated[int, msgspec.Meta(ge=1)])

OPERATIONS = [
    Operation(
        "post",
        "/events",
        "postEvents",
        "Record a batch of AI activity events",
        description=(
            "Needs the `events:write` scope. Rate-limited per key (requests per minute). The body is "
            "at most LANYARD_INGEST_MAX_BYTES (default 5 MiB)."
        ),
        tag="activity",
        security=(INGEST_KEY,),
        request=RequestBody(
            EventBatch,
            examples={"two events": TWO_EVENTS, "the fewest fields": SMALLEST},
        ),
        responses={
            200: Response(
                "Recorded (synchronously: the events are in the chain when this returns).",
                IngestResult,
                examples={
                    "recorded": IngestResult(
                        received=2,
                        accepted=2,
                        duplicates=0,
                        unverified_identities=0,
                        unverified_devices=1,
                        discovered_connectors=1,
                    ),
                    "retried": IngestResult(received=2, accepted=0, duplicates=2),
                },
            ),
            400: Response(
                "Malformed JSON, or invalid events (each error names the event's index and field). "
                "Nothing was recorded.",
                InvalidBatch,
                examples={
                    "malformed": InvalidBatch(error="Malformed JSON."),
                    "invalid events": InvalidBatch(
                        error="Invalid events; nothing was recorded.",
                        errors=[
                            FieldError(index=0, field="actor.email", message="Enter a valid email address."),
                            FieldError(index=1, field="time", message="This field is required."),
                        ],
                    ),
                    "no events": InvalidBatch(
                        error="Invalid events; nothing was recorded.",
                        errors=[FieldError(index=None, field="events", message='Send {"events": [...]}.')],
                    ),
                },
            ),
            401: Response(
                "Missing, wrong or revoked ingest key.",
                Error,
                examples={"refused": Error(error=UNAUTHORIZED)},
                headers={"WWW-Authenticate": Header('The scheme to use: `Bearer realm="lanyard"`.')},
            ),
            403: Response(
                "The key lacks the events:write scope.",
                Error,
                examples={"scope": Error(error="This key lacks the events:write scope.")},
            ),
            405: Response("Only POST.", headers={"Allow": Header("The methods allowed: POST.")}),
            413: Response(
                "Body over the size limit, or more events than LANYARD_INGEST_MAX_EVENTS (default 1000).",
                Error,
                examples={
                    "bytes": Error(error="Request body over 5242880 bytes."),
                    "events": Error(error="At most 1000 events per request."),
                },
            ),
            415: Response(
                "The body is not sent as JSON (`Content-Type: application/json`).",
                Error,
                examples={"form": Error(error="Send the body as application/json; got text/plain.")},
            ),
            429: Response(
                "The key's rate limit is exhausted for this minute, or the batch would discover more new "
                "connectors than the key may in an hour (LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR): "
                "nothing was recorded.",
                Error,
                examples={
                    "limited": Error(error="Rate limit of 600 requests per minute exceeded."),
                    "discoveries": Error(
                        error="This ingest key may discover at most 100 new connectors per hour (98 so far, "
                        "this batch adds 3); nothing was recorded."
                    ),
                },
                headers={"Retry-After": RETRY_AFTER},
            ),
            503: Response(
                "The database was busy (a lock conflict with a concurrent writer): nothing was "
                "recorded, and a retry of the same batch is safe.",
                Error,
                examples={"busy": Error(error="Database busy; nothing was recorded. Retry the same batch.")},
                headers={"Retry-After": RETRY_AFTER},
            ),
        },
    )
]
