"""The AuthZEN 1.0 wire types: what the decision point decodes and encodes (and documents in OpenAPI).

Unknown properties anywhere are ignored, as the specification asks; ``subject``, ``action`` and
``resource`` keep their ``properties`` as free objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(max_length=500)]


class Subject(msgspec.Struct):
    """Who asks: ``type`` identity; ``id`` the person's e-mail or the IdP's id."""

    type: Annotated[str, msgspec.Meta(description="`identity`.", examples=["identity"])]
    id: Annotated[Text, msgspec.Meta(description="E-mail, or the identity provider's user id.")]
    properties: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="`device`: the device id as the gateway sees it; `source`: the identity source's "
            "name or kind when the id is the IdP's."
        ),
    ] = {}


class Action(msgspec.Struct):
    name: Annotated[
        Text,
        msgspec.Meta(
            description="`use`, `connect`, `tools/list`, `tools/call`, `resources/read`, `prompts/get`."
        ),
    ]
    properties: dict[str, Any] = {}


class Resource(msgspec.Struct):
    """What is used: a ``connector`` (by Lanyard id, client id or URL), an ``mcp_server`` or ``mcp_tool``."""

    type: Annotated[str, msgspec.Meta(description="`connector`, `mcp_server` or `mcp_tool`.")]
    id: Annotated[Text, msgspec.Meta(description="Connector id; MCP server URL; tool name.")] = ""
    properties: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="connector: `client_id` (with `source`) or `url`, and optionally `tool`, `resource` "
            "or `prompt` to ask about one of its MCP tools; mcp_tool: `server` (URL or connector id) "
            "and `tool`."
        ),
    ] = {}


class EvaluationRequest(msgspec.Struct):
    subject: Subject
    action: Action
    resource: Resource
    context: dict[str, Any] = {}


class EvaluationItem(msgspec.Struct):
    """One question of a batch; what it leaves out comes from the request's top-level defaults."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None


class Options(msgspec.Struct):
    evaluations_semantic: Annotated[
        Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"],
        msgspec.Meta(description="execute_all (default); or stop after the first deny / first permit."),
    ] = "execute_all"


class EvaluationsRequest(msgspec.Struct):
    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None
    evaluations: list[EvaluationItem] = []
    options: Options | None = None


class ErrorDetail(msgspec.Struct):
    status: int
    message: str


class DecisionContext(msgspec.Struct, omit_defaults=True):
    id: Annotated[str, msgspec.Meta(description="The decision's id (the audit event's correlation id).")]
    policies: Annotated[
        list[str],
        msgspec.Meta(description="The @id of each Cedar policy that decided (or Lanyard's reason code)."),
    ] = []
    reason: Annotated[str, msgspec.Meta(description="Why, in a sentence a gateway can show the person.")] = ""
    reason_user: dict[str, str] = {}
    error: ErrorDetail | None = None


class Decision(msgspec.Struct):
    decision: bool
    context: DecisionContext


class Decisions(msgspec.Struct):
    evaluations: list[Decision]


class PageRequest(msgspec.Struct):
    token: str = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class SubjectFilter(msgspec.Struct):
    type: str
    id: Text = ""
    properties: dict[str, Any] = {}


class ResourceFilter(msgspec.Struct):
    type: str
    id: Text = ""
    properties: dict[str, Any] = {}


class SearchSubjectRequest(msgspec.Struct):
    subject: SubjectFilter
    action: Action
    resource: Resource
    context: dict[str, Any] = {}
    page: PageRequest | None = None


class SearchResourceRequest(msgspec.Struct):
    subject: Subject
    action: Action
    resource: ResourceFilter
    context: dict[str, Any] = {}
    page: PageRequest | None = None


class SearchActionRequest(msgspec.Struct):
    subject: Subject
    resource: Resource
    context: dict[str, Any] = {}
    page: PageRequest | None = None


class Page(msgspec.Struct, omit_defaults=True):
    next_token: Annotated[str, msgspec.Meta(description="Empty on the last page.")]
    count: int
    total: Annotated[
        int | None, msgspec.Meta(description="Given when known without deciding every candidate.")
    ] = None


class Found(msgspec.Struct, omit_defaults=True):
    type: str
    id: str
    properties: dict[str, Any] = {}


class FoundAction(msgspec.Struct):
    name: str


class SearchResults(msgspec.Struct):
    results: list[Found]
    page: Page


class ActionResults(msgspec.Struct):
    results: list[FoundAction]
    page: Page


class AccessError(msgspec.Struct):
    error: Annotated[str, msgspec.Meta(description="What went wrong, in a sentence.")]


class Metadata(msgspec.Struct):
    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str
    search_subject_endpoint: str
    search_resource_endpoint: str
    search_action_endpoint: str
