"""The vocabulary of the project's one OpenAPI 3.1 document, and the pure function that builds it.

Every schema in the document comes from a msgspec Struct (or any type msgspec can describe): the
struct that decodes a request body, the struct an endpoint encodes its answer with. Nothing is
written twice, so the document cannot drift from the code; descriptions, limits and examples sit on
the structs as ``msgspec.Meta``.

How an app adds its endpoints (everything under ``/api/v1/``)::

    # <app>/openapi.py
    from httpapi.openapi import Operation, RequestBody, Response, SecurityScheme, Tag

    PEP_KEY = SecurityScheme("pepKey", {"type": "http", "scheme": "bearer", "description": "..."})
    TAGS = [Tag("access", "AuthZEN access decisions.")]
    OPERATIONS = [
        Operation(
            "post", "/access/v1/evaluation", "postEvaluation", "Evaluate one access request",
            tag="access", security=(PEP_KEY,),
            request=RequestBody(EvaluationRequest, examples={"permit": {...}}),
            responses={200: Response("The decision.", EvaluationResponse), 401: Response(...)},
        ),
    ]

``lanyard.openapi.document()`` walks the installed apps in ``INSTALLED_APPS`` order (the way the
admin autodiscovers ``admin.py``), imports each app's ``openapi`` module where there is one, and merges its
``OPERATIONS`` and ``TAGS`` into one document: one JSON Schema component per struct, from
``msgspec.json.schema_components`` over every type any operation names, with the security schemes
the operations use. The app's own ``urls`` still route the requests; the app's tests check its
examples against its endpoints (``tests/activity/test_openapi.py`` shows how). Clashes fail the
build rather than overwrite: two operations on one method and path, one operation id twice, two
different types under one component name, two different schemes under one name.

This package imports no app and sits below them all (the layering in pyproject.toml), so any app may
use its vocabulary; the project package collects the apps' declarations from the top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

SERVER = "/api/v1"
REF = "#/components/schemas/{name}"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class OpenAPIError(Exception):
    """The apps' declarations do not make one consistent document."""


@dataclass(frozen=True)
class SecurityScheme:
    """A named OpenAPI security scheme, e.g. a bearer key."""

    name: str
    scheme: Mapping[str, Any]


@dataclass(frozen=True)
class Tag:
    name: str
    description: str


@dataclass(frozen=True)
class Header:
    """A response header: its description and the type of its value."""

    description: str
    type: Any = str


@dataclass(frozen=True)
class RequestBody:
    """A JSON request body: the type that decodes it, and named examples (plain JSON values)."""

    type: Any
    examples: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Response:
    """One status code's answer. ``type`` None means no body; examples may be JSON or structs."""

    description: str
    type: Any = None
    examples: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Header] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    """One method on one path (relative to ``/api/v1``)."""

    method: str
    path: str
    operation_id: str
    summary: str
    responses: Mapping[int, Response]
    description: str = ""
    tag: str = ""
    request: RequestBody | None = None
    security: tuple[SecurityScheme, ...] = ()
    # A standard that fixes its own paths (AuthZEN's /access/v1/...) is served from the site root.
    server: str = ""


_NAMED = (
    msgspec.inspect.StructType,
    msgspec.inspect.DataclassType,
    msgspec.inspect.TypedDictType,
    msgspec.inspect.NamedTupleType,
    msgspec.inspect.EnumType,
)


def _check_names(types: Iterable[Any]) -> None:
    """Refuse two different types that would share a component name (msgspec names them by class)."""
    found: dict[str, type] = {}
    seen: set[int] = set()

    def walk(info: msgspec.inspect.Type) -> None:
        if id(info) in seen:  # a recursive type refers back to itself
            return
        seen.add(id(info))
        if isinstance(info, _NAMED):
            other = found.setdefault(info.cls.__name__, info.cls)
            if other is not info.cls:
                raise OpenAPIError(
                    f"Two types named {info.cls.__name__}: in {other.__module__} and {info.cls.__module__}."
                )
        for name in ("type", "item_type", "key_type", "value_type"):
            if (inner := getattr(info, name, None)) is not None:
                walk(inner)
        for inner in getattr(info, "types", ()) + getattr(info, "item_types", ()):
            walk(inner)
        for f in getattr(info, "fields", ()):
            walk(f.type)

    for info in msgspec.inspect.multi_type_info(list(types)):
        walk(info)


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _content(type_: Any, examples: Mapping[str, Any], schemas: dict[Any, Any], content_type: str) -> dict:
    media: dict[str, Any] = {"schema": schemas[type_]}
    if examples:
        media["examples"] = {name: {"value": _json(value)} for name, value in examples.items()}
    return {content_type: media}


def build(operations: Iterable[Operation], tags: Iterable[Tag] = ()) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``operations``."""
    operations = list(operations)
    types = [op.request.type for op in operations if op.request] + [
        r.type for op in operations for r in op.responses.values() if r.type is not None
    ]
    types = list(dict.fromkeys(types))
    _check_names(types)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas = dict(zip(types, refs, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    security_schemes: dict[str, Mapping[str, Any]] = {}
    for op in operations:
        if op.method not in METHODS:
            raise OpenAPIError(f"{op.operation_id}: unknown method {op.method!r}.")
        if op.operation_id in operation_ids:
            raise OpenAPIError(f"Operation id {op.operation_id} is declared twice.")
        operation_ids.add(op.operation_id)
        item = paths.setdefault(op.path, {})
        if op.method in item:
            raise OpenAPIError(f"{op.method.upper()} {op.path} is declared twice.")
        for scheme in op.security:
            if security_schemes.setdefault(scheme.name, scheme.scheme) != scheme.scheme:
                raise OpenAPIError(f"Two security schemes are named {scheme.name}.")

        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
        if op.description:
            entry["description"] = op.description
        if op.tag:
            entry["tags"] = [op.tag]
        entry["security"] = [{scheme.name: []} for scheme in op.security]
        if op.server:
            entry["servers"] = [{"url": op.server}]
        if op.request:
            entry["requestBody"] = {
                "required": True,
                "content": _content(op.request.type, op.request.examples, schemas, "application/json"),
            }
            if op.request.description:
                entry["requestBody"]["description"] = op.request.description
        responses: dict[str, Any] = {}
        for status, response in sorted(op.responses.items()):
            answer: dict[str, Any] = {"description": response.description}
            if response.headers:
                answer["headers"] = {
                    name: {"description": h.description, "schema": msgspec.json.schema(h.type)}
                    for name, h in response.headers.items()
                }
            if response.type is not None:
                answer["content"] = _content(response.type, response.examples, schemas, response.content_type)
            responses[str(status)] = answer
        entry["responses"] = responses
        item[op.method] = entry

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Lanyard API",
            "version": "1.0.0",
            "description": (
                "The HTTP API of Lanyard, the governance portal for AI connectors. Machines (AI "
                "gateways, MCP proxies, policy enforcement points) call it with keys that IAM issues "
                "in the admin; each operation names the key it needs. Request and response bodies are "
                "JSON."
            ),
        },
        "servers": [{"url": SERVER}],
        "paths": paths,
        "components": {"schemas": components},
    }
    if tags := list(tags):
        document["tags"] = [{"name": t.name, "description": t.description} for t in tags]
    if security_schemes:
        document["components"]["securitySchemes"] = dict(security_schemes)
    return document
