"""The AuthZEN wire: keys and scopes, bad input, batch semantics, search paging, metadata."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from audit.models import IngestKey
from audit.services import ingest_key_create
from connectors.models import Connector, Grant
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory, IdentityFactory

# --- keys ---------------------------------------------------------------------------------------------


def test_no_key_is_401_with_a_challenge(client, world):
    response = client.post(
        "/access/v1/evaluation", data=json.dumps(world.question()), content_type="application/json"
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="lanyard"'
    assert "gateway key" in response.json()["error"]


def test_wrong_and_revoked_keys_are_401(ask, world):
    assert ask("evaluation", world.question(), raw="lny_nope_nope").status_code == 401
    IngestKey.objects.filter(pk=world.key.pk).update(revoked_at=timezone.now())
    assert ask("evaluation", world.question()).status_code == 401


def test_a_key_without_the_scope_is_403(ask, world):
    _, raw = ingest_key_create(name="reporter", actor=None)  # events:write only
    response = ask("evaluation", world.question(), raw=raw)
    assert response.status_code == 403
    assert "access:evaluate" in response.json()["error"]
    _, evaluate_only = ingest_key_create(
        name="evaluator", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE]
    )
    body = {
        "subject": {"type": "identity"},
        "action": {"name": "use"},
        "resource": world.question()["resource"],
    }
    assert ask("search/subject", body, raw=evaluate_only).status_code == 403


def test_rate_limited_per_key(ask, world):
    IngestKey.objects.filter(pk=world.key.pk).update(decisions_per_minute=2)
    assert ask("evaluation", world.question()).status_code == 200
    assert ask("evaluation", world.question()).status_code == 200
    response = ask("evaluation", world.question())
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


def test_request_id_is_echoed(ask, world):
    response = ask("evaluation", world.question(), HTTP_X_REQUEST_ID="req-42")
    assert response["X-Request-ID"] == "req-42"
    assert ask("evaluation", b"{", HTTP_X_REQUEST_ID="req-43")["X-Request-ID"] == "req-43"


def test_only_post(client, world):
    assert client.get("/access/v1/evaluation").status_code == 405


# --- bad input: a clear 4xx, never a 500 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "Malformed JSON"),
        (b'{"subject": {"type": "identity", "id": "\xff"}}', 400, "UTF-8"),
        (b"", 400, "empty"),
        (b"[]", 400, "Invalid request"),
        (
            json.dumps({"subject": "ann", "action": {"name": "use"}, "resource": {"type": "connector"}}),
            400,
            "subject",
        ),
        (
            json.dumps(
                {
                    "subject": {"type": "identity", "id": 7},
                    "action": {"name": "use"},
                    "resource": {"type": "connector"},
                }
            ),
            400,
            "subject.id",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, ""),
    ],
)
def test_malformed_bodies(ask, world, body, status, words):
    response = ask("evaluation", body)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_wrong_content_type_is_415(ask, world):
    assert ask("evaluation", json.dumps(world.question()), content_type="text/plain").status_code == 415


def test_a_megabyte_is_413(ask, world):
    body = world.question(context={"padding": "x" * 1_048_576})
    assert ask("evaluation", body).status_code == 413


def test_ten_thousand_evaluations_is_413(ask, world):
    body = {
        "subject": world.question()["subject"],
        "action": {"name": "use"},
        "resource": world.question()["resource"],
        "evaluations": [{}] * 10_000,
    }
    response = ask("evaluations", body)
    assert response.status_code == 413
    assert "At most 1000 evaluations" in response.json()["error"]


@pytest.mark.parametrize(
    ("part", "value", "words"),
    [
        ("subject", {"type": "robot", "id": "r2"}, "Unknown subject type 'robot'"),
        ("resource", {"type": "printer", "id": "p"}, "Unknown resource type 'printer'"),
        ("action", {"name": "launch-missiles"}, "Unknown action 'launch-missiles'"),
        ("resource", {"type": "connector"}, "Name the connector"),
        ("resource", {"type": "mcp_tool", "properties": {"tool": "x"}}, "properties.server"),
        ("subject", {"type": "identity", "id": "x" * 501}, "length <= 500"),
    ],
)
def test_unknown_types_are_a_clear_400(ask, world, part, value, words):
    response = ask("evaluation", world.question(**{part: value}))
    assert response.status_code == 400
    assert words in response.json()["error"]


def test_unknown_properties_are_ignored(ask, world):
    body = world.question()
    body["extra"] = {"deep": [1, 2, 3]}
    body["subject"]["properties"]["shoe_size"] = 44
    body["context"] = {"time": "2026-12-07T10:00:00Z", "ip": "10.0.0.1", "nested": {"a": {"b": None}}}
    assert ask("evaluation", body).json()["decision"] is True


# --- evaluations: defaults, overrides, order, semantics ----------------------------------------


@pytest.fixture
def mixed(world):
    """Three connectors: permitted, suspended (deny), permitted."""
    suspended = ConnectorFactory(
        name="Suspended AI", business_owner=world.owner, status=Connector.Status.SUSPENDED
    )
    GrantFactory(connector=suspended, identity=world.identity)
    third = ConnectorFactory(name="Third AI", business_owner=world.owner)
    GrantFactory(connector=third, identity=world.identity)
    return [world.connector, suspended, third]


def _batch(world, connectors, **extra):
    return {
        "subject": world.question()["subject"],
        "action": {"name": "use"},
        "evaluations": [{"resource": {"type": "connector", "id": str(c.pk)}} for c in connectors],
        **extra,
    }


def test_execute_all_answers_every_item_in_order(ask, world, mixed):
    answers = ask("evaluations", _batch(world, mixed)).json()["evaluations"]
    assert [a["decision"] for a in answers] == [True, False, True]
    assert "Suspended AI is suspended" in answers[1]["context"]["reason"]


def test_deny_on_first_deny_stops_after_the_deny(ask, world, mixed):
    body = _batch(world, mixed, options={"evaluations_semantic": "deny_on_first_deny"})
    assert [a["decision"] for a in ask("evaluations", body).json()["evaluations"]] == [True, False]


def test_permit_on_first_permit_stops_after_the_permit(ask, world, mixed):
    body = _batch(
        world, [mixed[1], mixed[0], mixed[2]], options={"evaluations_semantic": "permit_on_first_permit"}
    )
    assert [a["decision"] for a in ask("evaluations", body).json()["evaluations"]] == [False, True]


def test_unknown_semantic_is_400(ask, world, mixed):
    body = _batch(world, mixed, options={"evaluations_semantic": "majority"})
    assert ask("evaluations", body).status_code == 400


def test_items_override_the_defaults(ask, world, mixed):
    bob = IdentityFactory(email="bob@example.com")
    body = _batch(world, [world.connector])
    body["evaluations"].append({"subject": {"type": "identity", "id": bob.email}})  # no resource: no default
    body["resource"] = {"type": "connector", "id": str(world.connector.pk)}
    body["evaluations"].append({"action": {"name": "launch"}})
    answers = ask("evaluations", body).json()["evaluations"]
    assert answers[0]["decision"] is True
    assert answers[1]["decision"] is False and "No approved grant" in answers[1]["context"]["reason"]
    assert answers[2]["context"]["error"]["status"] == 400
    assert "Unknown action 'launch'" in answers[2]["context"]["error"]["message"]


def test_an_item_missing_a_part_with_no_default_is_that_items_error(ask, world, mixed):
    body = {
        "action": {"name": "use"},
        "evaluations": [
            {
                "subject": world.question()["subject"],
                "resource": {"type": "connector", "id": str(world.connector.pk)},
            },
            {"subject": world.question()["subject"]},
            {
                "subject": world.question()["subject"],
                "resource": {"type": "connector", "id": str(mixed[2].pk)},
            },
        ],
    }
    answers = ask("evaluations", body).json()["evaluations"]
    assert [a["decision"] for a in answers] == [True, False, True]
    assert "has no resource" in answers[1]["context"]["error"]["message"]


def test_no_evaluations_array_is_a_single_evaluation(ask, world):
    answer = ask("evaluations", world.question()).json()
    assert answer["decision"] is True
    assert "evaluations" not in answer


def test_context_override_replaces_the_default(ask, world):
    body = _batch(world, [world.connector, world.connector])
    body["context"] = {"a": 1}
    body["evaluations"][1]["context"] = {"b": 2}
    assert [a["decision"] for a in ask("evaluations", body).json()["evaluations"]] == [True, True]


# --- search ---------------------------------------------------------------------------------------


@pytest.fixture
def crowd(world):
    """Seven more people holding the connector (five with a device), one suspended."""
    people = []
    for n in range(7):
        identity = IdentityFactory(email=f"p{n}@example.com")
        GrantFactory(connector=world.connector, identity=identity)
        if n < 5:
            DeviceFactory(owner=identity)
        people.append(identity)
    people[0].status = "suspended"
    people[0].save()
    return people


def test_search_subject_pages_through_who_may_use_a_connector(ask, world, crowd):
    body = {
        "subject": {"type": "identity"},
        "action": {"name": "use"},
        "resource": {"type": "connector", "id": str(world.connector.pk)},
        "page": {"limit": 2},
    }
    seen, pages = [], 0
    while True:
        answer = ask("search/subject", body).json()
        pages += 1
        seen += [r["id"] for r in answer["results"]]
        assert answer["page"]["count"] == len(answer["results"])
        if not answer["page"]["next_token"]:
            break
        body["page"]["token"] = answer["page"]["next_token"]
    # Ann and p1..p4 (with a device, active); p0 suspended; p5, p6 have no device.
    assert sorted(seen) == sorted(
        ["ann@example.com", "p1@example.com", "p2@example.com", "p3@example.com", "p4@example.com"]
    )
    assert pages == 3


def test_a_tampered_page_token_is_400(ask, world, crowd):
    body = {
        "subject": {"type": "identity"},
        "action": {"name": "use"},
        "resource": {"type": "connector", "id": str(world.connector.pk)},
        "page": {"limit": 1},
    }
    token = ask("search/subject", body).json()["page"]["next_token"]
    body["page"]["token"] = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert ask("search/subject", body).status_code == 400
    # A real token, replayed against another search, is refused too.
    body["page"]["token"] = token
    body["action"] = {"name": "tools/call"}
    assert "different search" in ask("search/subject", body).json()["error"]


def test_search_resource_lists_the_connectors_a_person_may_use(ask, world, mixed):
    body = {
        "subject": world.question()["subject"],
        "action": {"name": "tools/call"},
        "resource": {"type": "connector"},
        "page": {"limit": 1},
    }
    first = ask("search/resource", body).json()
    assert first["results"] == [
        {"type": "connector", "id": str(world.connector.pk), "properties": {"name": "Notes AI"}}
    ]
    body["page"]["token"] = first["page"]["next_token"]
    second = ask("search/resource", body).json()
    assert [r["id"] for r in second["results"]] == [str(mixed[2].pk)]  # the suspended one is skipped
    assert second["page"]["next_token"] == ""


def test_search_resource_as_mcp_servers(ask, world):
    body = {
        "subject": world.question()["subject"],
        "action": {"name": "tools/call"},
        "resource": {"type": "mcp_server"},
    }
    results = ask("search/resource", body).json()["results"]
    assert results == [
        {
            "type": "mcp_server",
            "id": world.connector.mcp_server_url,
            "properties": {"connector": str(world.connector.pk), "name": "Notes AI"},
        }
    ]


def test_search_action(ask, world):
    body = {"subject": world.question()["subject"], "resource": world.question()["resource"]}
    names = [r["name"] for r in ask("search/action", body).json()["results"]]
    assert names == ["use", "connect", "tools/list", "tools/call", "resources/read", "prompts/get"]
    Grant.objects.filter(pk=world.grant.pk).delete()
    assert ask("search/action", body).json()["results"] == []


def test_search_records_nothing(ask, world, crowd):
    from audit.models import AuditEvent

    body = {
        "subject": {"type": "identity"},
        "action": {"name": "use"},
        "resource": {"type": "connector", "id": str(world.connector.pk)},
    }
    ask("search/subject", body)
    assert not AuditEvent.objects.filter(action="access.denied").exists()


# --- metadata -----------------------------------------------------------------------------------


def test_metadata(client, settings):
    settings.LANYARD_BASE_URL = "https://lanyard.example.com"
    body = client.get("/.well-known/authzen-configuration").json()
    assert body == {
        "policy_decision_point": "https://lanyard.example.com",
        "access_evaluation_endpoint": "https://lanyard.example.com/access/v1/evaluation",
        "access_evaluations_endpoint": "https://lanyard.example.com/access/v1/evaluations",
        "search_subject_endpoint": "https://lanyard.example.com/access/v1/search/subject",
        "search_resource_endpoint": "https://lanyard.example.com/access/v1/search/resource",
        "search_action_endpoint": "https://lanyard.example.com/access/v1/search/action",
    }
