"""The generated OpenAPI document is valid, and its examples and schemas hold against the real endpoint."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from django.db import OperationalError
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import OpenAPIV31SpecValidator

from activity import ingest
from activity.ingest import wire
from audit.models import AuditEvent
from audit.services import ingest_key_create
from lanyard.openapi import SERVER, document
from tests.factories import ConnectorAppFactory, IdentityFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db
EVENTS = ("/events", "post")


@pytest.fixture
def doc(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


@pytest.fixture
def raw_key(iam) -> str:
    return ingest_key_create(name="docs", actor=iam)[1]


@pytest.fixture
def register():
    """The people and clients the documented examples name."""
    google = IdentitySourceFactory(name="Acme Google", kind="google_workspace")
    IdentitySourceFactory(name="Acme Okta", kind="okta")
    IdentityFactory(source=google, email="emma.employee@example.com")
    ConnectorAppFactory(source=google, client_id="1234567890-notes.apps.googleusercontent.com")


def post(client, raw_key: str | None, body: Any, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"} if raw_key else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/v1/events", data, content_type="application/json", **headers, **extra)


def documented_batch(doc: dict, name: str = "two events") -> dict:
    """A copy of one of the documented request examples of POST /events."""
    examples = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    return copy.deepcopy(examples[name]["value"])


def validator(doc: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A JSON Schema 2020-12 validator for ``schema``, resolving refs into the document's components."""
    return jsonschema.Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def errors(doc: dict, schema: dict, value: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator(doc, schema).iter_errors(value)]


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def request_examples(doc: dict) -> list[tuple[str, str, str, Any]]:
    return [
        (path, method, name, example["value"])
        for path, method, op in operations(doc)
        for name, example in op.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("examples", {})
        .items()
    ]


def response_examples(doc: dict) -> list[tuple[str, str, str, str, dict, Any]]:
    return [
        (path, method, status, name, media["schema"], example["value"])
        for path, method, op in operations(doc)
        for status, response in op["responses"].items()
        for media in response.get("content", {}).values()
        for name, example in media.get("examples", {}).items()
    ]


def assert_documented(doc: dict, path: str, method: str, response) -> None:
    """The real answer has a documented status, content type, headers and a body its schema accepts."""
    documented = doc["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{status} is not documented for {method.upper()} {path}"
    answer = documented[status]
    for header in answer.get("headers", {}):
        assert response.has_header(header), f"{status} lacks the documented {header} header"
        if (schema := answer["headers"][header]["schema"]).get("type") == "integer":
            assert errors(doc, schema, int(response[header])) == []
    if "content" not in answer:
        return
    content_type = response["Content-Type"].split(";")[0]
    assert content_type in answer["content"], f"{status} answered {content_type}"
    schema = answer["content"][content_type]["schema"]
    assert errors(doc, schema, response.json()) == [], response.content


# --- the document -----------------------------------------------------------------------------


def test_the_served_document_is_the_generated_one(doc):
    assert doc == document()


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()


def test_every_component_schema_is_valid_json_schema(doc):
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_request_body_schema_is_the_decoders_struct(doc):
    body = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EventBatch"}
    assert set(doc["components"]["schemas"]) >= {"EventBatch", "Event", "Actor", "Device", "Connector"}
    assert doc["components"]["schemas"]["Event"]["title"] == wire.Event.__name__


def _api_routes(patterns, prefix: str = ""):
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _api_routes(p.url_patterns, route)
        elif isinstance(p, URLPattern) and route.startswith(SERVER.strip("/") + "/"):
            yield "/" + route.removeprefix(SERVER.strip("/") + "/")
        elif isinstance(p, URLPattern) and route.startswith(("access/v1/", ".well-known/authzen")):
            yield "/" + route  # AuthZEN's own paths, documented with the site root as their server


def test_every_api_route_is_documented_and_every_documented_path_is_routed(doc):
    assert sorted(_api_routes(get_resolver().url_patterns)) == sorted(doc["paths"])


def test_the_events_endpoint_documents_its_answers_and_key(doc):
    operation = doc["paths"]["/events"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "405", "413", "415", "429", "503"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert operation["security"] == [{"ingestKey": []}]
    assert doc["components"]["securitySchemes"]["ingestKey"]["scheme"] == "bearer"
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []


# --- documented examples ----------------------------------------------------------------------


def test_there_are_examples_to_check():
    doc = document()
    assert len(request_examples(doc)) >= 2
    assert len(response_examples(doc)) >= 10


@pytest.mark.parametrize("name", [e[2] for e in request_examples(document()) if e[0] == "/events"])
def test_each_request_example_decodes_and_is_accepted_by_the_endpoint(client, doc, raw_key, register, name):
    [(path, method, example)] = [
        (p, m, v) for p, m, n, v in request_examples(doc) if n == name and p == "/events"
    ]
    schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    assert errors(doc, schema, example) == []
    body = json.dumps(example).encode()
    # The typed decoder takes it as it stands (not the field-by-field fallback), and so do the rules.
    assert len(wire.decoder.decode(body).events) == len(example["events"])
    assert len(ingest.decode(body, max_events=1000)) == len(example["events"])
    before = AuditEvent.objects.count()

    response = post(client, raw_key, example)

    assert response.status_code == 200, response.content
    assert_documented(doc, path, method, response)
    assert response.json()["accepted"] == len(example["events"])
    assert AuditEvent.objects.filter(action__startswith="ai.").count() == len(example["events"])
    assert AuditEvent.objects.count() > before


@pytest.mark.parametrize(("path", "method", "status", "name"), [e[:4] for e in response_examples(document())])
def test_each_response_example_matches_its_schema(doc, path, method, status, name):
    [(schema, value)] = [
        (s, v)
        for p, m, st, n, s, v in response_examples(doc)
        if (p, m, st, n) == (path, method, status, name)
    ]
    assert errors(doc, schema, value) == []


# --- real answers against the documented schemas ---------------------------------------------


def test_an_accepted_batch_answers_as_documented(client, doc, raw_key, register):
    assert_documented(doc, *EVENTS, post(client, raw_key, documented_batch(doc)))
    # The same batch again: all duplicates, still a documented 200.
    response = post(client, raw_key, documented_batch(doc))
    assert response.json()["duplicates"] == 2
    assert_documented(doc, *EVENTS, response)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[" * 100_000,
        b'{"events": [{"id": "\xff"}]}',
        {"events": []},
        {"events": [1]},
        {"events": [{"id": "x"}]},
        {"events": [{"id": "", "time": "yesterday", "action": "Bad Action", "actor": {}, "connector": {}}]},
    ],
)
def test_a_bad_batch_answers_400_as_documented(client, doc, raw_key, body):
    response = post(client, raw_key, body)

    assert response.status_code == 400
    assert_documented(doc, *EVENTS, response)


def test_a_body_not_sent_as_json_answers_415_as_documented(client, doc, raw_key, register):
    body = json.dumps(documented_batch(doc))
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/api/v1/events", body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {raw_key}"
        )
        assert response.status_code == 415
        assert_documented(doc, *EVENTS, response)


@pytest.mark.parametrize("header", [None, "Bearer lny_nope_nope", "Basic abc"])
def test_a_refused_key_answers_401_as_documented(client, doc, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post("/api/v1/events", "{}", content_type="application/json", **extra)

    assert response.status_code == 401
    assert_documented(doc, *EVENTS, response)


def test_a_key_without_the_scope_answers_403_as_documented(client, doc, iam):
    _, raw = ingest_key_create(name="read-only", actor=iam, scopes=[])

    response = post(client, raw, {"events": []})

    assert response.status_code == 403
    assert_documented(doc, *EVENTS, response)


def test_another_method_answers_405_as_documented(client, doc, raw_key):
    response = client.get("/api/v1/events", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    assert response.status_code == 405
    assert_documented(doc, *EVENTS, response)


def test_too_large_answers_413_as_documented(client, doc, raw_key, register, settings):
    body = documented_batch(doc)
    settings.LANYARD_INGEST_MAX_EVENTS = 1
    too_many = post(client, raw_key, body)
    settings.LANYARD_INGEST_MAX_EVENTS = 1000
    settings.LANYARD_INGEST_MAX_BYTES = 100
    too_big = post(client, raw_key, body)

    assert (too_many.status_code, too_big.status_code) == (413, 413)
    assert_documented(doc, *EVENTS, too_many)
    assert_documented(doc, *EVENTS, too_big)


def test_the_rate_limit_answers_429_as_documented(client, doc, iam):
    _, raw = ingest_key_create(name="slow", actor=iam, rate_limit_per_minute=1)
    post(client, raw, {"events": []})

    response = post(client, raw, {"events": []})

    assert response.status_code == 429
    assert_documented(doc, *EVENTS, response)


def test_a_busy_database_answers_503_as_documented(client, doc, raw_key, register, monkeypatch):
    def busy(**kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(ingest, "events_ingest", busy)

    response = post(client, raw_key, documented_batch(doc))

    assert response.status_code == 503
    assert_documented(doc, *EVENTS, response)


def test_the_document_itself_answers_as_documented(client, doc):
    assert_documented(doc, "/openapi.json", "get", client.get("/api/v1/openapi.json"))


# --- the schema and the endpoint agree on what is required -------------------------------------


def test_every_documented_required_field_is_required_by_the_endpoint(client, doc, raw_key, register):
    batch = {"$ref": "#/components/schemas/EventBatch"}
    for field in doc["components"]["schemas"]["Event"]["required"]:
        body = documented_batch(doc)
        del body["events"][0][field]
        assert errors(doc, batch, body) != []

        response = post(client, raw_key, body)

        assert response.status_code == 400, field
        assert_documented(doc, *EVENTS, response)
        assert {"index": 0, "field": field} in [
            {"index": e["index"], "field": e["field"]} for e in response.json()["errors"]
        ]


def test_a_field_the_document_does_not_require_is_optional(client, doc, raw_key, register):
    required = set(doc["components"]["schemas"]["Event"]["required"])
    body = {"events": [{k: v for k, v in documented_batch(doc)["events"][0].items() if k in required}]}

    assert errors(doc, {"$ref": "#/components/schemas/EventBatch"}, body) == []
    assert post(client, raw_key, body).status_code == 200
