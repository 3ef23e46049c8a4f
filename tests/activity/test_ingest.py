"""POST /api/v1/events: authentication, limits, validation, idempotency and resolution."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from activity.usage import usage_rollup
from audit.chain import lock_head
from audit.models import AuditEvent, IngestKey
from audit.services import ingest_key_create, ingest_key_revoke
from audit.verify import verify
from connectors.models import Connector, ConnectorApp, Device, Grant, Identity
from tests.factories import (
    ConnectorAppFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"


@pytest.fixture
def gateway(iam):
    """An ingest key with the events:write scope; returns (key, the full key string)."""
    return ingest_key_create(name="ai-gateway", actor=iam, rate_limit_per_minute=1000)


@pytest.fixture
def google():
    return IdentitySourceFactory(name="Acme Google", kind="google_workspace")


@pytest.fixture
def known(google):
    """A person, their laptop, a sanctioned connector with its Google client id, and their grant."""
    identity = IdentityFactory(source=google, email="emma@example.com", external_id="g-emma")
    app = ConnectorAppFactory(source=google, client_id="notes.apps.googleusercontent.com")
    device = DeviceFactory(source=google, external_id="LAPTOP-1", owner=identity, last_seen=None)
    grant = GrantFactory(connector=app.connector, source=google, identity=identity, last_used_at=None)
    return identity, app.connector, device, grant


def event(n: int = 1, **overrides) -> dict:
    body = {
        "id": f"evt-{n}",
        "time": "2026-11-29T10:15:00Z",
        "actor": {"email": "emma@example.com"},
        "device": {"id": "LAPTOP-1", "name": "Emma's laptop", "platform": "macOS", "managed": True},
        "connector": {"source": "Acme Google", "client_id": "notes.apps.googleusercontent.com"},
        "action": "tool_call",
        "resource": "drive:file/1",
        "outcome": "success",
        "ip": "203.0.113.7",
        "user_agent": "gateway/1.0",
    }
    body.update(overrides)
    return body


def post(client, raw_key: str | None, body, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"} if raw_key else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers, **extra)


# --- authentication ---------------------------------------------------------------------------


def test_a_request_without_a_key_is_refused(client):
    response = post(client, None, {"events": [event()]})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_and_an_unknown_key_get_the_same_answer(client, gateway):
    key, raw = gateway
    wrong_secret = post(client, raw[:-4] + "AAAA", {"events": [event()]})
    unknown = post(client, "lny_000000000000_secret", {"events": [event()]})
    garbage = post(client, "not-a-key", {"events": [event()]})

    assert wrong_secret.status_code == unknown.status_code == garbage.status_code == 401
    assert wrong_secret.json() == unknown.json() == garbage.json()
    assert AuditEvent.objects.filter(action__startswith="ai.").count() == 0


def test_a_revoked_key_is_refused(client, gateway, iam):
    key, raw = gateway
    ingest_key_revoke(key=key, actor=iam)

    response = post(client, raw, {"events": [event()]})

    assert response.status_code == 401
    assert response.json()["error"] == "Invalid or revoked ingest key."


def test_a_key_without_the_write_scope_is_forbidden(client, iam):
    _, raw = ingest_key_create(name="read-only", actor=iam, scopes=[])

    assert post(client, raw, {"events": [event()]}).status_code == 403


def test_a_logged_in_outsider_without_a_key_is_refused(client, outsider):
    client.force_login(outsider)

    assert post(client, None, {"events": [event()]}).status_code == 401


def test_only_post_is_allowed(client, gateway):
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {gateway[1]}").status_code == 405


def test_only_the_hash_and_prefix_of_a_key_are_stored(gateway):
    key, raw = gateway
    stored = IngestKey.objects.filter(pk=key.pk).values()[0]

    assert raw.startswith(f"lny_{key.prefix}_")
    assert raw not in json.dumps(stored, default=str)
    assert AuditEvent.objects.filter(action="ingest_key.created").exists()
    assert raw not in json.dumps(list(AuditEvent.objects.values("data")), default=str)


# --- recording and resolution -------------------------------------------------------------------


def test_an_event_is_resolved_to_identity_device_connector_and_grant(
    client, gateway, known, django_capture_on_commit_callbacks
):
    identity, connector, device, grant = known
    key, raw = gateway

    # The commit schedules the usage roll-up (run at once by the eager test worker).
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, raw, {"events": [event()]})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "received": 1,
        "accepted": 1,
        "duplicates": 0,
        "unverified_identities": 0,
        "unverified_devices": 0,
        "discovered_connectors": 0,
    }
    recorded = AuditEvent.objects.get(action="ai.tool_call")
    assert recorded.actor_identity == identity
    assert recorded.device == device
    assert recorded.connector == connector
    assert recorded.grant == grant
    assert recorded.ingest_key == key
    assert recorded.external_id == f"{key.prefix}:evt-1"
    assert recorded.occurred_at.isoformat() == "2026-11-29T10:15:00+00:00"
    assert recorded.ip == "203.0.113.7"
    assert recorded.target_label == ""
    assert recorded.data == {"event_id": "evt-1", "resource": "drive:file/1"}
    grant.refresh_from_db()
    device.refresh_from_db()
    key.refresh_from_db()
    assert grant.last_used_at == recorded.occurred_at
    assert device.last_seen == recorded.occurred_at
    assert key.last_used_at is not None
    assert verify().ok


def test_an_actor_is_found_by_source_and_external_id(client, gateway, known):
    identity, *_ = known
    body = event(actor={"source": "google_workspace", "external_id": "g-emma"})

    assert post(client, gateway[1], {"events": [body]}).status_code == 200
    assert AuditEvent.objects.get(action="ai.tool_call").actor_identity == identity


def test_a_retried_batch_is_never_recorded_twice(client, gateway, known):
    batch = {"events": [event(1), event(2), event(3)]}

    first = post(client, gateway[1], batch)
    second = post(client, gateway[1], {"events": [event(3), event(4)]})
    third = post(client, gateway[1], batch)

    assert first.json()["accepted"] == 3
    assert (second.json()["accepted"], second.json()["duplicates"]) == (1, 1)
    assert (third.json()["accepted"], third.json()["duplicates"]) == (0, 3)
    assert AuditEvent.objects.filter(action="ai.tool_call").count() == 4
    assert verify().ok


def test_the_same_event_id_from_two_gateways_is_two_events(client, gateway, known, iam):
    _, other = ingest_key_create(name="mcp-proxy", actor=iam)

    post(client, gateway[1], {"events": [event(1)]})
    post(client, other, {"events": [event(1)]})

    assert AuditEvent.objects.filter(action="ai.tool_call").count() == 2


def test_an_unknown_client_becomes_a_discovered_connector_with_its_app(client, gateway, known, google):
    body = {
        "events": [
            event(
                1, connector={"source": "Acme Google", "client_id": "shadow-notes", "name": "Shadow Notes"}
            ),
            event(2, connector={"source": "Acme Google", "client_id": "shadow-notes"}),
        ]
    }

    response = post(client, gateway[1], body)
    again = post(client, gateway[1], {"events": [event(3, connector=body["events"][1]["connector"])]})

    assert response.json()["discovered_connectors"] == 1
    assert again.json()["discovered_connectors"] == 0
    app = ConnectorApp.objects.get(client_id="shadow-notes")
    assert app.source == google
    assert app.connector.status == Connector.Status.DISCOVERED
    assert app.connector.name == "Shadow Notes"
    discovered = AuditEvent.objects.get(action="connector.discovered")
    assert discovered.connector == app.connector
    assert discovered.actor_label == "gateway:ai-gateway"
    events = AuditEvent.objects.filter(action="ai.tool_call")
    assert {e.connector_id for e in events} == {app.connector.pk}
    assert all("shadow_connector" in e.data["flags"] for e in events)
    assert verify().ok


def test_an_unknown_mcp_server_becomes_a_discovered_connector(client, gateway, known):
    known_mcp = Connector.objects.create(name="Docs MCP", mcp_server_url="https://mcp.example.com/docs")
    body = {
        "events": [
            event(1, connector={"mcp_server_url": "https://mcp.example.com/docs"}),
            event(2, connector={"mcp_server_url": "https://shadow.example.net/sse"}),
        ]
    }

    response = post(client, gateway[1], body)

    assert response.json()["discovered_connectors"] == 1
    shadow = Connector.objects.get(mcp_server_url="https://shadow.example.net/sse")
    assert (shadow.kind, shadow.status) == (Connector.Kind.MCP_SERVER, Connector.Status.DISCOVERED)
    assert not shadow.apps.exists()
    assert AuditEvent.objects.get(external_id__endswith=":evt-1").connector == known_mcp


def test_an_unknown_person_and_device_are_kept_and_flagged(client, gateway, known):
    body = {
        "events": [
            event(1, actor={"email": "Stranger@Example.com"}, device={"id": "BYOD-7", "platform": "Windows"}),
            event(2, actor={"email": "stranger@example.com"}),
            event(3, actor={"source": "Acme Google", "external_id": "ghost-42"}),
        ]
    }

    response = post(client, gateway[1], body)
    again = post(client, gateway[1], {"events": [event(4, actor={"email": "stranger@example.com"})]})

    assert response.status_code == 200
    assert response.json()["accepted"] == 3
    assert (response.json()["unverified_identities"], response.json()["unverified_devices"]) == (2, 1)
    assert again.json()["unverified_identities"] == 0
    stranger = Identity.objects.get(email="stranger@example.com")
    assert (stranger.source, stranger.unverified) == (None, True)
    ghost = Identity.objects.get(external_id="Acme Google:ghost-42")
    assert (ghost.source, ghost.unverified) == (None, True)
    byod = Device.objects.get(external_id="BYOD-7")
    assert (byod.source, byod.unverified, byod.owner) == (None, True, stranger)
    first = AuditEvent.objects.get(external_id__endswith=":evt-1")
    assert first.actor_identity == stranger
    assert {"unverified_identity", "unverified_device", "no_grant"} <= set(first.data["flags"])
    assert first.data["actor_as_given"] == {"email": "Stranger@Example.com"}
    assert AuditEvent.objects.filter(actor_identity=stranger).count() == 3


def test_a_person_is_found_whatever_the_case_of_their_email(client, gateway, google):
    emma = IdentityFactory(source=google, email="Emma.Jones@Acme.example", external_id="g-emma-j")
    ConnectorAppFactory(source=google, client_id="notes.apps.googleusercontent.com")

    response = post(
        client,
        gateway[1],
        {
            "events": [
                event(1, actor={"email": "emma.jones@acme.example"}, device=None),
                event(2, actor={"email": "EMMA.JONES@ACME.EXAMPLE"}, device=None),
            ]
        },
    )

    assert response.json()["unverified_identities"] == 0
    assert set(AuditEvent.objects.filter(action="ai.tool_call").values_list("actor_identity", flat=True)) == {
        emma.pk
    }


def test_an_action_is_recorded_under_ai(client, gateway, known):
    post(client, gateway[1], {"events": [event(1, action="file.read"), event(2, action="ai.prompt")]})

    assert set(AuditEvent.objects.filter(action__startswith="ai.").values_list("action", flat=True)) == {
        "ai.file.read",
        "ai.prompt",
    }


def test_ingest_runs_a_constant_number_of_queries_for_1_and_50_events(
    client, gateway, google, django_assert_num_queries
):
    app = ConnectorAppFactory(source=google, client_id="notes.apps.googleusercontent.com")
    people = []
    for n in range(50):
        identity = IdentityFactory(source=google, email=f"p{n}@example.com")
        DeviceFactory(source=google, external_id=f"DEV-{n}", owner=identity)
        GrantFactory(connector=app.connector, source=google, identity=identity)
        people.append(identity)

    def batch(ns, tag):
        return {
            "events": [
                event(f"{tag}-{n}", actor={"email": f"p{n}@example.com"}, device={"id": f"DEV-{n}"})
                for n in ns
            ]
        }

    post(client, gateway[1], batch([0], "warm"))  # the chain head row exists from here on
    with django_assert_num_queries(12):
        assert post(client, gateway[1], batch([1], "one")).json()["accepted"] == 1
    with django_assert_num_queries(12):
        assert post(client, gateway[1], batch(range(50), "fifty")).json()["accepted"] == 50


# --- validation and limits ------------------------------------------------------------------------


def test_a_client_id_without_its_source_beside_an_mcp_url_is_refused_not_a_server_error(client, gateway):
    # Found by fuzzing: resolution looked the (source, client id) pair up and failed with a KeyError.
    connector = {
        "client_id": "notes.apps.googleusercontent.com",
        "mcp_server_url": "https://mcp.example.net/sse",
    }

    response = post(client, gateway[1], {"events": [event(1, connector=connector)]})

    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "connector.source")]
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()
    assert not Connector.objects.exists()


@pytest.mark.parametrize("ip", ["fe80::1%eth0", "::0.59.192.76", "::1.2.3.4"])
def test_an_address_postgresql_cannot_keep_as_hashed_is_refused(client, gateway, known, ip):
    # Found by fuzzing: a zone made PostgreSQL refuse the row (500); an IPv4-compatible address came
    # back from PostgreSQL in another form than the one hashed, and the chain failed verification.
    response = post(client, gateway[1], {"events": [event(1, ip=ip)]})

    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "ip")]
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()


@pytest.mark.services
@pytest.mark.parametrize("ip", ["::ffff:1.2.3.4", "::ffff", "2001:db8::1.2.3.4", "::1", "203.0.113.7"])
def test_on_postgresql_an_address_with_ipv4_parts_is_recorded_and_the_chain_verifies(
    client, gateway, known, ip
):
    assert connection.vendor == "postgresql"

    assert post(client, gateway[1], {"events": [event(1, ip=ip)]}).status_code == 200

    assert verify().ok


def test_a_bad_event_rejects_the_whole_batch_with_errors_by_index(client, gateway, known):
    body = {
        "events": [
            event(1),
            event(2, time="yesterday"),
            event(3, actor={"email": "not-an-email"}, device={"id": "X", "managed": "yes"}),
            {k: v for k, v in event(4).items() if k != "connector"},
            event(5, actor={"email": "new.person@example.com"}, ip="999.1.1.1"),
        ]
    }

    response = post(client, gateway[1], body)

    assert response.status_code == 400
    errors = {(e["index"], e["field"]) for e in response.json()["errors"]}
    assert errors == {(1, "time"), (2, "actor.email"), (2, "device.managed"), (3, "connector"), (4, "ip")}
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()
    assert not Identity.objects.filter(email="new.person@example.com").exists()


def test_text_no_database_can_store_is_rejected(client, gateway, known):
    surrogate = json.dumps(event(1, resource="x")).replace('"resource": "x"', '"resource": "\\ud800"')
    body = '{"events": [' + surrogate + "]}"
    nul = {"events": [event(2, user_agent="a\x00b")]}

    first, second = post(client, gateway[1], body), post(client, gateway[1], nul)

    assert (first.status_code, first.json()["errors"][0]["field"]) == (400, "resource")
    assert (second.status_code, second.json()["errors"][0]["field"]) == (400, "user_agent")


def test_unicode_text_is_kept_and_hashes_the_same_when_read_back(client, gateway, known):
    post(client, gateway[1], {"events": [event(1, resource="Zürich – 東京 ✓")]})

    assert AuditEvent.objects.get(action="ai.tool_call").data["resource"] == "Zürich – 東京 ✓"
    assert verify().ok


def test_repeated_ids_in_one_batch_are_rejected(client, gateway, known):
    response = post(client, gateway[1], {"events": [event(1), event(1)]})

    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "index": 1,
        "field": "id",
        "message": "Repeats the id of event 0.",
    }


def test_an_unknown_identity_source_is_rejected_and_nothing_written(client, gateway, known):
    body = {"events": [event(1, connector={"source": "Nowhere", "client_id": "x"})]}

    response = post(client, gateway[1], body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "connector.source"
    assert not Connector.objects.filter(name="x").exists()
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()


@pytest.mark.parametrize("body", ["{not json", '"just a string"', '{"events": []}', '{"events": {}}', "\xff"])
def test_malformed_bodies_get_400(client, gateway, body):
    assert post(client, gateway[1], body).status_code == 400


def test_too_many_events_get_413(client, gateway, known, settings):
    settings.LANYARD_INGEST_MAX_EVENTS = 3

    response = post(client, gateway[1], {"events": [event(n) for n in range(4)]})

    assert response.status_code == 413
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()


def test_a_body_over_the_size_limit_gets_413(client, gateway, known, settings):
    settings.LANYARD_INGEST_MAX_BYTES = 200

    assert post(client, gateway[1], {"events": [event(1), event(2)]}).status_code == 413


@pytest.fixture
def clock(monkeypatch):
    """Hold the clock at 10:15:30 (mid-minute), movable by the test."""
    state = {"now": dt.datetime(2026, 11, 29, 10, 15, 30, tzinfo=dt.UTC)}
    monkeypatch.setattr(timezone, "now", lambda: state["now"])
    return state


def test_the_rate_limit_answers_429_with_retry_after(client, iam, known, clock):
    _, raw = ingest_key_create(name="slow", actor=iam, rate_limit_per_minute=2)

    statuses = [post(client, raw, {"events": [event(n)]}).status_code for n in range(3)]
    limited = post(client, raw, {"events": [event(9)]})
    clock["now"] += dt.timedelta(seconds=30)
    next_minute = post(client, raw, {"events": [event(10)]})

    assert statuses == [200, 200, 429]
    assert limited.status_code == 429
    assert limited["Retry-After"] == "30"
    assert next_minute.status_code == 200
    assert AuditEvent.objects.filter(action__startswith="ai.").count() == 3


def test_the_rate_limit_is_per_key(client, iam, known, clock):
    _, slow = ingest_key_create(name="slow", actor=iam, rate_limit_per_minute=1)
    _, other = ingest_key_create(name="other", actor=iam, rate_limit_per_minute=1)

    assert post(client, slow, {"events": [event(1)]}).status_code == 200
    assert post(client, slow, {"events": [event(2)]}).status_code == 429
    assert post(client, other, {"events": [event(3)]}).status_code == 200


def test_a_keys_last_use_is_kept_to_the_minute(client, iam, known, clock):
    key, raw = ingest_key_create(name="gw", actor=iam, rate_limit_per_minute=100)

    post(client, raw, {"events": [event(1)]})
    key.refresh_from_db()
    first = key.last_used_at
    clock["now"] += dt.timedelta(seconds=30)
    post(client, raw, {"events": [event(2)]})
    key.refresh_from_db()
    assert key.last_used_at == first  # no write for every batch
    clock["now"] += dt.timedelta(seconds=31)
    post(client, raw, {"events": [event(3)]})
    key.refresh_from_db()
    assert key.last_used_at == first + dt.timedelta(seconds=61)


def test_grant_last_used_only_moves_forward(client, gateway, known):
    *_, grant = known
    later = timezone.now().replace(microsecond=0)
    Grant.objects.filter(pk=grant.pk).update(last_used_at=later)

    post(client, gateway[1], {"events": [event(1, time="2020-01-01T00:00:00Z")]})
    usage_rollup()

    grant.refresh_from_db()
    assert grant.last_used_at == later


def _times_at_the_edges_are_kept_as_instants_or_refused(client, raw: str) -> None:
    # Found by fuzzing: PostgreSQL refuses an offset beyond 15:59 that RFC 3339 and Python allow.
    response = post(client, raw, {"events": [event(1, time="0587-11-27T07:30:40-17:15")]})

    assert response.status_code == 200, response.content
    recorded = AuditEvent.objects.get(action="ai.tool_call")
    assert recorded.occurred_at == dt.datetime(587, 11, 28, 0, 45, 40, tzinfo=dt.UTC)

    for time in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        response = post(client, raw, {"events": [event(2, time=time)]})
        assert response.status_code == 400
        assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "time")]
    assert AuditEvent.objects.filter(action="ai.tool_call").count() == 1


def test_a_time_with_any_offset_is_recorded_as_its_instant_and_one_outside_the_years_is_refused(
    client, gateway, known
):
    _times_at_the_edges_are_kept_as_instants_or_refused(client, gateway[1])


@pytest.mark.services
def test_on_postgresql_a_time_with_a_large_offset_is_recorded_and_one_outside_the_years_refused(
    client, gateway, known
):
    assert connection.vendor == "postgresql"
    _times_at_the_edges_are_kept_as_instants_or_refused(client, gateway[1])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_batch_blocked_by_a_concurrent_writer_gets_503_and_records_nothing(client, iam, google):
    IdentityFactory(source=google, email="emma@example.com")
    ConnectorAppFactory(source=google, client_id="notes.apps.googleusercontent.com")
    _, raw = ingest_key_create(name="gw", actor=iam)
    locked, release = threading.Event(), threading.Event()

    def hold_the_head() -> None:
        with transaction.atomic():
            lock_head()
            locked.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold_the_head)
    holder.start()
    locked.wait(10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        response = post(client, raw, {"events": [event(1)]})
    finally:
        release.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert not AuditEvent.objects.filter(action__startswith="ai.").exists()
    assert post(client, raw, {"events": [event(1)]}).status_code == 200


def test_a_merged_mcp_servers_events_go_to_the_connector_it_was_merged_into(client, gateway, known, iam):
    from connectors.merging import connector_merge

    survivor = Connector.objects.create(name="Docs (sanctioned)", status=Connector.Status.ACTIVE)
    alias = Connector.objects.create(name="Docs MCP", mcp_server_url="https://mcp.example.com/docs")
    connector_merge(survivor=survivor, merged=alias, actor=iam)

    post(
        client,
        gateway[1],
        {"events": [event(1, connector={"mcp_server_url": "https://mcp.example.com/docs"})]},
    )

    assert AuditEvent.objects.get(external_id__endswith=":evt-1").connector == survivor
