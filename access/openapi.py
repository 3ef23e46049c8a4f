"""The AuthZEN decision point's operations for the project's OpenAPI document (see ``httpapi.openapi``).

AuthZEN fixes its own paths (``/access/v1/...``, ``/.well-known/authzen-configuration``): they are
documented with the site root as their server, beside the ``/api/v1`` operations.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from httpapi.openapi import Header, Operation, RequestBody, Response, SecurityScheme, Tag

from . import wire

PEP_KEY = SecurityScheme(
    "pepKey",
    {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A gateway key with the `access:evaluate` scope (`access:search` for the search APIs): "
            "`manage.py pep_key create NAME`, or the admin (Gateway keys). Shown once at creation."
        ),
    },
)

TAGS = [
    Tag(
        "access",
        "The OpenID AuthZEN Authorization API 1.0: a policy enforcement point (a gateway, an MCP proxy) asks "
        "before each AI action whether this person, on this device, may do this on this connector. Lanyard "
        "answers from its register with Cedar policies: the shipped defaults (the connector active, "
        "sanctioned "
        "and owned; the person active at their IdP, holding a live grant or a provisioned request; "
        "the device "
        "theirs, and compliant for high-risk connectors) and IAM's own. Every deny carries a reason to show "
        "the person and the ids of the policies that decided, and is recorded on the audit chain. Unknown "
        "properties are ignored.",
    )
]

ANN = {"type": "identity", "id": "ann@example.com", "properties": {"device": "DEV-ANN-1"}}
NOTES = {"type": "connector", "id": "1", "properties": {"tool": "search"}}
EVALUATION = {"subject": ANN, "action": {"name": "tools/call"}, "resource": NOTES, "context": {}}
BY_URL = {
    "subject": ANN,
    "action": {"name": "tools/call"},
    "resource": {
        "type": "mcp_tool",
        "properties": {"server": "https://mcp.notes.example/mcp", "tool": "search"},
    },
}
BATCH = {
    "subject": ANN,
    "action": {"name": "tools/call"},
    "evaluations": [
        {"resource": {"type": "connector", "id": "1", "properties": {"tool": "search"}}},
        {"resource": {"type": "connector", "id": "1", "properties": {"tool": "delete_note"}}},
        {
            "action": {"name": "resources/read"},
            "resource": {"type": "connector", "id": "1", "properties": {"resource": "notes://today"}},
        },
    ],
    "options": {"evaluations_semantic": "execute_all"},
}
PERMIT = wire.Decision(
    True, wire.DecisionContext(id="5f0c2a9e1b7d4c3a", policies=["lanyard/permit-register"])
)
SUSPENDED = "Notes AI is suspended by IAM on 07 Dec 2026."
DENY = wire.Decision(
    False,
    wire.DecisionContext(
        id="9a1b2c3d4e5f6a7b",
        policies=["lanyard/forbid-connector-suspended"],
        reason=SUSPENDED,
        reason_user={"en": SUSPENDED},
    ),
)
NO_GRANT = (
    "No approved grant for Notes AI: request it at https://lanyard.example.com/requests/new/?connector=1."
)
DENY_NO_GRANT = wire.Decision(
    False,
    wire.DecisionContext(
        id="0b1c2d3e4f5a6b7c", policies=["lanyard/no-permit"], reason=NO_GRANT, reason_user={"en": NO_GRANT}
    ),
)
ITEM_ERROR = wire.Decision(
    False,
    wire.DecisionContext(id="", error=wire.ErrorDetail(400, "Unknown action 'launch'; one of use, ...")),
)

RETRY_AFTER = Header("Seconds to wait before retrying.", Annotated[int, msgspec.Meta(ge=1)])
REQUEST_ID = Header("The request's X-Request-ID, echoed (every answer echoes it when sent).")


def _errors(scope: str) -> dict[int, Response]:
    return {
        400: Response(
            "A malformed request: invalid JSON or UTF-8, a wrong type, an unknown subject or resource type "
            "or action, a connector not named.",
            wire.AccessError,
            examples={
                "malformed": wire.AccessError("Malformed JSON."),
                "type": wire.AccessError("Unknown subject type 'robot'; Lanyard decides for 'identity'."),
            },
        ),
        401: Response(
            "No key, a wrong key, or a revoked one.",
            wire.AccessError,
            examples={"refused": wire.AccessError("Send a valid gateway key: Authorization: Bearer <key>.")},
            headers={"WWW-Authenticate": Header('`Bearer realm="lanyard"`.')},
        ),
        403: Response(
            f"The key lacks the {scope} scope.",
            wire.AccessError,
            examples={"scope": wire.AccessError(f"This key lacks the {scope} scope.")},
        ),
        405: Response("Only POST.", headers={"Allow": Header("POST.")}),
        413: Response(
            "Body over LANYARD_PDP_MAX_BYTES (default 512 KiB), or more evaluations than "
            "LANYARD_PDP_MAX_EVALUATIONS (default 1000).",
            wire.AccessError,
            examples={"batch": wire.AccessError("At most 1000 evaluations per request.")},
        ),
        415: Response(
            "Not sent as JSON.",
            wire.AccessError,
            examples={"form": wire.AccessError("Send the body as application/json; got text/plain.")},
        ),
        429: Response(
            "The key's decisions per minute are spent.",
            wire.AccessError,
            examples={"limited": wire.AccessError("Rate limit of 120000 decisions per minute exceeded.")},
            headers={"Retry-After": RETRY_AFTER},
        ),
    }


EVALUATE = "access:evaluate"
SEARCH = "access:search"

OPERATIONS = [
    Operation(
        "post",
        "/access/v1/evaluation",
        "accessEvaluation",
        "Decide one access request",
        description=(
            "subject: `identity` (id: e-mail or the IdP's id; properties.device). resource: "
            "`connector` (id, or "
            "properties.client_id with properties.source, or properties.url; "
            "properties.tool/resource/prompt for one "
            "of its MCP tools), `mcp_server` (id: URL) or `mcp_tool` (properties.server, "
            "properties.tool). action: "
            "use, connect, tools/list, tools/call, resources/read, prompts/get. An unknown MCP "
            "server (or client id "
            "with its source) is recorded as a discovered shadow connector and denied."
        ),
        tag="access",
        security=(PEP_KEY,),
        server="/",
        request=RequestBody(
            wire.EvaluationRequest, examples={"a tool call": EVALUATION, "by MCP server URL": BY_URL}
        ),
        responses={
            200: Response(
                "The decision, with its id, the policies that decided and, for a deny, the reason.",
                wire.Decision,
                examples={"permit": PERMIT, "deny: suspended": DENY, "deny: no grant": DENY_NO_GRANT},
                headers={"X-Request-ID": REQUEST_ID},
            ),
            **_errors(EVALUATE),
        },
    ),
    Operation(
        "post",
        "/access/v1/evaluations",
        "accessEvaluations",
        "Decide a batch of access requests",
        description=(
            "Top-level subject, action, resource and context are defaults each item of `evaluations` "
            "may override "
            "(each part whole). Results come back in request order. options.evaluations_semantic: "
            "execute_all "
            "(default); deny_on_first_deny and permit_on_first_permit stop after the first deny or "
            "permit. An item "
            "that cannot be asked has decision false and context.error; without `evaluations` the "
            "request is one "
            "evaluation, answered as one."
        ),
        tag="access",
        security=(PEP_KEY,),
        server="/",
        request=RequestBody(wire.EvaluationsRequest, examples={"three tools": BATCH}),
        responses={
            200: Response(
                "One decision per item, in order.",
                wire.Decisions,
                examples={"mixed": wire.Decisions([PERMIT, DENY, ITEM_ERROR])},
                headers={"X-Request-ID": REQUEST_ID},
            ),
            **_errors(EVALUATE),
        },
    ),
    Operation(
        "post",
        "/access/v1/search/subject",
        "accessSearchSubject",
        "Who may take this action on this connector",
        description="People holding the connector whose decision permits (with their best device). Paged.",
        tag="access",
        security=(PEP_KEY,),
        server="/",
        request=RequestBody(
            wire.SearchSubjectRequest,
            examples={
                "who": {
                    "subject": {"type": "identity"},
                    "action": {"name": "use"},
                    "resource": {"type": "connector", "id": "1"},
                    "page": {"limit": 50},
                }
            },
        ),
        responses={
            200: Response(
                "A page of identities (by e-mail); page.next_token is empty on the last page.",
                wire.SearchResults,
                examples={
                    "page": wire.SearchResults([wire.Found("identity", "ann@example.com")], wire.Page("", 1))
                },
            ),
            **_errors(SEARCH),
        },
    ),
    Operation(
        "post",
        "/access/v1/search/resource",
        "accessSearchResource",
        "Which connectors this person may use",
        description="Active connectors the person holds that the decision permits (connector or mcp_server).",
        tag="access",
        security=(PEP_KEY,),
        server="/",
        request=RequestBody(
            wire.SearchResourceRequest,
            examples={
                "servers": {
                    "subject": ANN,
                    "action": {"name": "tools/call"},
                    "resource": {"type": "mcp_server"},
                }
            },
        ),
        responses={
            200: Response(
                "A page of connectors or MCP servers.",
                wire.SearchResults,
                examples={
                    "servers": wire.SearchResults(
                        [
                            wire.Found(
                                "mcp_server",
                                "https://mcp.notes.example/mcp",
                                {"connector": "1", "name": "Notes AI"},
                            )
                        ],
                        wire.Page("", 1),
                    )
                },
            ),
            **_errors(SEARCH),
        },
    ),
    Operation(
        "post",
        "/access/v1/search/action",
        "accessSearchAction",
        "Which actions this person may take on this connector",
        tag="access",
        security=(PEP_KEY,),
        server="/",
        request=RequestBody(
            wire.SearchActionRequest, examples={"actions": {"subject": ANN, "resource": NOTES}}
        ),
        responses={
            200: Response(
                "The permitted actions.",
                wire.ActionResults,
                examples={
                    "all": wire.ActionResults(
                        [wire.FoundAction("use"), wire.FoundAction("tools/call")], wire.Page("", 2, 2)
                    )
                },
            ),
            **_errors(SEARCH),
        },
    ),
    Operation(
        "get",
        "/.well-known/authzen-configuration",
        "authzenConfiguration",
        "The decision point's metadata",
        tag="access",
        server="/",
        responses={
            200: Response(
                "Where each endpoint is (AuthZEN 1.0 §9).",
                wire.Metadata,
                examples={
                    "lanyard": wire.Metadata(
                        "https://lanyard.example.com",
                        "https://lanyard.example.com/access/v1/evaluation",
                        "https://lanyard.example.com/access/v1/evaluations",
                        "https://lanyard.example.com/access/v1/search/subject",
                        "https://lanyard.example.com/access/v1/search/resource",
                        "https://lanyard.example.com/access/v1/search/action",
                    )
                },
            )
        },
    ),
]
