"""The project's OpenAPI builder: apps' operations merged into one document, clashes refused."""

from __future__ import annotations

import msgspec
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from httpapi.openapi import (
    Header,
    OpenAPIError,
    Operation,
    RequestBody,
    Response,
    SecurityScheme,
    Tag,
    build,
)
from lanyard.openapi import declared

KEY = SecurityScheme("pepKey", {"type": "http", "scheme": "bearer"})


class Question(msgspec.Struct):
    """Is it allowed?"""

    subject: str


class Answer(msgspec.Struct):
    decision: bool


def operation(**overrides) -> Operation:
    fields = {
        "method": "post",
        "path": "/access/v1/evaluation",
        "operation_id": "postEvaluation",
        "summary": "Evaluate",
        "request": RequestBody(Question, examples={"one": {"subject": "emma"}}),
        "responses": {200: Response("The decision.", Answer, examples={"yes": Answer(decision=True)})},
        "security": (KEY,),
        "tag": "access",
    }
    return Operation(**{**fields, **overrides})


def test_an_apps_operation_becomes_a_valid_document_with_its_schemas_and_scheme():
    doc = build([operation()], [Tag("access", "Decisions.")])

    OpenAPIV31SpecValidator(doc).validate()
    entry = doc["paths"]["/access/v1/evaluation"]["post"]
    assert entry["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Question"
    }
    assert entry["responses"]["200"]["content"]["application/json"]["examples"]["yes"] == {
        "value": {"decision": True}
    }
    assert doc["components"]["schemas"]["Question"]["description"] == "Is it allowed?"
    assert doc["components"]["securitySchemes"] == {"pepKey": {"type": "http", "scheme": "bearer"}}
    assert entry["security"] == [{"pepKey": []}]
    assert doc["tags"] == [{"name": "access", "description": "Decisions."}]


def test_a_response_header_gets_the_schema_of_its_type():
    doc = build(
        [operation(responses={429: Response("Slow down.", headers={"Retry-After": Header("s", int)})})]
    )

    assert doc["paths"]["/access/v1/evaluation"]["post"]["responses"]["429"] == {
        "description": "Slow down.",
        "headers": {"Retry-After": {"description": "s", "schema": {"type": "integer"}}},
    }


def test_two_apps_declaring_one_method_and_path_are_refused():
    with pytest.raises(OpenAPIError, match="declared twice"):
        build([operation(), operation(operation_id="other")])


def test_one_operation_id_twice_is_refused():
    with pytest.raises(OpenAPIError, match="declared twice"):
        build([operation(), operation(path="/elsewhere")])


def test_two_types_with_one_component_name_are_refused():
    other_question = msgspec.defstruct("Question", [("other", int)])

    with pytest.raises(OpenAPIError, match="Two types named Question"):
        build([operation(), operation(path="/x", operation_id="x", request=RequestBody(other_question))])


def test_two_schemes_with_one_name_are_refused():
    other = SecurityScheme("pepKey", {"type": "apiKey", "in": "header", "name": "X-Key"})

    with pytest.raises(OpenAPIError, match="Two security schemes"):
        build([operation(), operation(path="/x", operation_id="x", security=(other,))])


def test_the_installed_apps_declare_the_gateway_api_and_this_document():
    operations, tags = declared()

    assert {(op.method, op.path) for op in operations} >= {("post", "/events"), ("get", "/openapi.json")}
    assert "activity" in {t.name for t in tags}
