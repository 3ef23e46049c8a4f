"""The AuthZEN operations in /api/v1/openapi.json: each documented request is answered as documented."""

from __future__ import annotations

import json

import pytest

from lanyard.openapi import document
from tests.activity.test_openapi import assert_documented, errors, request_examples

ACCESS = [e for e in request_examples(document()) if e[0].startswith("/access/v1/")]


def test_every_access_endpoint_has_an_example():
    assert {e[0] for e in ACCESS} == {
        "/access/v1/evaluation",
        "/access/v1/evaluations",
        "/access/v1/search/subject",
        "/access/v1/search/resource",
        "/access/v1/search/action",
    }


def test_access_operations_are_served_from_the_site_root():
    doc = document()
    assert doc["paths"]["/access/v1/evaluation"]["post"]["servers"] == [{"url": "/"}]
    assert doc["paths"]["/access/v1/evaluation"]["post"]["security"] == [{"pepKey": []}]


@pytest.mark.parametrize(("path", "name"), [(e[0], e[2]) for e in ACCESS])
def test_each_documented_request_is_answered_as_documented(ask, world, path, name):
    doc = document()
    [example] = [v for p, _m, n, v in ACCESS if (p, n) == (path, name)]
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert errors(doc, schema, example) == []
    text = json.dumps(example).replace('"id": "1"', f'"id": "{world.connector.pk}"')
    response = ask(path.removeprefix("/access/v1/"), text, HTTP_X_REQUEST_ID="doc-1")
    assert response.status_code == 200, response.content
    assert_documented(doc, path, "post", response)
    body = response.json()
    decisions = body.get("evaluations", [body]) if "results" not in body else []
    assert all(d["decision"] in (True, False) for d in decisions)
    if path.endswith("/evaluation"):
        assert body["decision"] is True  # Ann holds Notes AI and is on her laptop


def test_documented_errors_are_the_ones_answered(ask, world, client):
    doc = document()
    assert_documented(doc, "/access/v1/evaluation", "post", ask("evaluation", b"{"))
    assert_documented(
        doc, "/access/v1/evaluation", "post", ask("evaluation", world.question(), raw="lny_x_y")
    )
    metadata = client.get("/.well-known/authzen-configuration")
    assert_documented(doc, "/.well-known/authzen-configuration", "get", metadata)
