"""The OpenAPI document is served and stays true to the endpoint."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from audit.services import ingest_key_create
from tests.factories import ConnectorAppFactory, IdentityFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db

TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": type(None),
}


def check(schema: dict, value: Any, doc: dict, path: str = "$") -> list[str]:
    """A small JSON Schema subset (the keywords the document uses): return the violations."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return check(doc["components"]["schemas"][name], value, doc, path)
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(
            isinstance(value, TYPES[k]) and not (k == "integer" and isinstance(value, bool)) for k in kinds
        ):
            return [f"{path}: expected {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: not one of {schema['enum']}")
    if isinstance(value, dict):
        errors += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += check(sub, value[key], doc, f"{path}.{key}")
        if "anyOf" in schema and all(check(s, value, doc, path) for s in schema["anyOf"]):
            errors.append(f"{path}: matches none of anyOf")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: wrong number of items")
        for i, item in enumerate(value):
            errors += check(schema.get("items", {}), item, doc, f"{path}[{i}]")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{path}: too long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']}")
    return errors


@pytest.fixture
def doc(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def example(doc) -> dict:
    return doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["example"]


@pytest.fixture
def raw_key(iam) -> str:
    return ingest_key_create(name="docs", actor=iam)[1]


@pytest.fixture
def register():
    google = IdentitySourceFactory(name="Acme Google", kind="google_workspace")
    IdentitySourceFactory(name="Acme Okta", kind="okta")
    IdentityFactory(source=google, email="emma.employee@example.com")
    ConnectorAppFactory(source=google, client_id="1234567890-notes.apps.googleusercontent.com")


def post(client, raw_key, body):
    return client.post(
        "/api/v1/events",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )


def test_the_document_is_openapi_3_1_with_the_events_endpoint(doc):
    assert doc["openapi"] == "3.1.0"
    operation = doc["paths"]["/events"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "429"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert doc["components"]["securitySchemes"]["ingestKey"]["scheme"] == "bearer"


def test_the_documented_example_matches_the_schema(doc, example):
    assert check({"$ref": "#/components/schemas/EventBatch"}, example, doc) == []


def test_the_documented_example_is_accepted_and_the_answer_matches_its_schema(
    client, doc, example, raw_key, register
):
    response = post(client, raw_key, example)

    assert response.status_code == 200, response.content
    assert check({"$ref": "#/components/schemas/IngestResult"}, response.json(), doc) == []
    assert response.json()["accepted"] == len(example["events"])


def test_every_documented_required_field_is_required_by_the_endpoint(client, doc, example, raw_key, register):
    required = doc["components"]["schemas"]["Event"]["required"]
    for field in required:
        body = copy.deepcopy(example)
        del body["events"][0][field]
        assert check({"$ref": "#/components/schemas/EventBatch"}, body, doc) != []

        response = post(client, raw_key, body)

        assert response.status_code == 400, field
        assert check({"$ref": "#/components/schemas/ValidationErrors"}, response.json(), doc) == []
        assert {"index": 0, "field": field} in [
            {"index": e["index"], "field": e["field"]} for e in response.json()["errors"]
        ]


def test_a_field_the_document_does_not_require_is_optional(client, doc, example, raw_key, register):
    required = set(doc["components"]["schemas"]["Event"]["required"])
    body = copy.deepcopy(example)
    body["events"] = [{k: v for k, v in body["events"][0].items() if k in required}]

    assert post(client, raw_key, body).status_code == 200
