"""Streamed exports: CSV, JSON Lines and OCSF; each export audited; permissions."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from audit.exports import CSV_COLUMNS, OCSF_VERSION
from audit.models import AuditEvent
from audit.services import record
from tests.factories import ConnectorFactory, DeviceFactory, IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(owned_connector, iam):
    now = timezone.now()
    alice = IdentityFactory(email="alice@example.com", name="Alice A", external_id="okta-alice")
    laptop = DeviceFactory(name="MAC-ALICE", platform="macOS", external_id="dev-mac-1", managed=False)
    other = ConnectorFactory(name="Other AI")
    call = record(
        "ai.tool_call",
        actor=alice,
        connector=owned_connector,
        device=laptop,
        data={"resource": "drive:/q3.xlsx", "tool": "search_files"},
        ip="203.0.113.9",
        user_agent="Claude/1.0 (gateway)",
        correlation_id="req-42",
        occurred_at=now - timedelta(hours=2),
    )
    signin = record(
        "signin",
        actor=alice,
        connector=owned_connector,
        device=laptop,
        outcome=AuditEvent.Outcome.DENIED,
        occurred_at=now - timedelta(hours=1),
    )
    approved = record("connector.approved", actor=iam, connector=owned_connector, target=owned_connector)
    elsewhere = record("ai.tool_call", actor=alice, connector=other)
    return {
        "notes": owned_connector,
        "other": other,
        "alice": alice,
        "call": call,
        "signin": signin,
        "approved": approved,
        "elsewhere": elsewhere,
    }


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def export_url(connector, fmt: str) -> str:
    return reverse("audit:connector_activity_export", args=[connector.pk, fmt])


def test_csv_export_streams_a_header_and_one_row_per_event_in_chain_order(client, iam, trail):
    client.force_login(iam)
    response = client.get(export_url(trail["notes"], "csv"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    reader = list(csv.DictReader(io.StringIO(body(response))))
    assert tuple(reader[0].keys()) == CSV_COLUMNS
    assert [r["sequence"] for r in reader] == [str(trail[k].sequence) for k in ("call", "signin", "approved")]
    call = reader[0]
    assert call["action"] == "ai.tool_call"
    assert call["actor_email"] == "alice@example.com"
    assert call["device_name"] == "MAC-ALICE" and call["device_managed"] == "false"
    assert call["connector_name"] == "Meeting Notes AI"
    assert call["ip"] == "203.0.113.9"
    assert json.loads(call["data"])["resource"] == "drive:/q3.xlsx"
    assert call["hash"] == trail["call"].hash


def test_csv_export_defuses_spreadsheet_formulas(client, iam, owned_connector):
    record("ai.tool_call", connector=owned_connector, actor_label='=HYPERLINK("http://evil")')
    client.force_login(iam)
    [row] = list(csv.DictReader(io.StringIO(body(client.get(export_url(owned_connector, "csv"))))))
    assert row["actor_label"].startswith("'=")


def test_jsonl_export_writes_one_parseable_object_per_line(client, iam, trail):
    client.force_login(iam)
    response = client.get(export_url(trail["notes"], "jsonl"))

    assert response["Content-Type"] == "application/x-ndjson"
    lines = body(response).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["action"] for e in events] == ["ai.tool_call", "signin", "connector.approved"]
    assert events[0]["actor"]["email"] == "alice@example.com"
    assert events[0]["device"]["name"] == "MAC-ALICE"
    assert events[0]["data"] == {"resource": "drive:/q3.xlsx", "tool": "search_files"}
    assert events[2]["target"] == {
        "type": "connectors.connector",
        "id": str(trail["notes"].pk),
        "label": "Meeting Notes AI",
    }


def test_ocsf_export_maps_ai_activity_to_api_activity(client, iam, trail):
    client.force_login(iam)
    response = client.get(export_url(trail["notes"], "ocsf"), {"action": "ai."})

    [event] = [json.loads(line) for line in body(response).splitlines()]
    assert (event["class_uid"], event["category_uid"]) == (6003, 6)
    assert (event["activity_id"], event["type_uid"]) == (2, 600302)
    assert event["time"] == int(trail["call"].occurred_at.timestamp() * 1000)
    assert event["actor"]["user"] == {
        "email_addr": "alice@example.com",
        "uid": "okta-alice",
        "name": "Alice A",
    }
    assert event["device"]["uid"] == "dev-mac-1"
    assert event["device"]["name"] == "MAC-ALICE"
    assert event["device"]["os"] == {"name": "macOS", "type_id": 300}
    assert event["src_endpoint"] == {"ip": "203.0.113.9"}
    assert event["http_request"] == {"user_agent": "Claude/1.0 (gateway)"}
    assert event["api"] == {"operation": "search_files", "request": {"uid": "req-42"}}
    assert {"uid": str(trail["notes"].pk), "name": "Meeting Notes AI", "type": "ai_connector"} in event[
        "resources"
    ]
    assert {"name": "drive:/q3.xlsx", "type": "resource"} in event["resources"]
    assert (event["status"], event["status_id"]) == ("Success", 1)
    assert event["metadata"]["product"]["name"] == "Lanyard"
    assert event["metadata"]["version"] == OCSF_VERSION
    assert event["metadata"]["uid"] == str(trail["call"].sequence)
    assert event["unmapped"]["hash"] == trail["call"].hash


def test_ocsf_export_maps_sign_ins_to_authentication(client, iam, trail):
    client.force_login(iam)
    response = client.get(export_url(trail["notes"], "ocsf"), {"action": "signin"})

    [event] = [json.loads(line) for line in body(response).splitlines()]
    assert (event["class_uid"], event["category_uid"], event["activity_id"]) == (3002, 3, 1)
    assert (event["status"], event["status_id"], event["status_detail"]) == ("Failure", 2, "denied")
    assert "src_endpoint" not in event


def test_ocsf_export_maps_governance_changes_by_verb(client, iam, trail):
    client.force_login(iam)
    response = client.get(export_url(trail["notes"], "ocsf"), {"kind": "governance"})

    [event] = [json.loads(line) for line in body(response).splitlines()]
    assert (event["class_uid"], event["activity_id"], event["activity_name"]) == (6003, 3, "Update")
    assert event["actor"]["user"]["email_addr"] == "iris.iam@example.com"


def test_an_export_is_recorded_in_the_audit_trail_before_streaming(client, iam, trail):
    client.force_login(iam)
    response = client.get(
        export_url(trail["notes"], "csv"), {"action": "ai.", "page": "2"}, REMOTE_ADDR="198.51.100.7"
    )

    # Nothing has been streamed yet, and the export is already on the record.
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.actor_user == iam
    assert exported.connector == trail["notes"]
    assert exported.ip == "198.51.100.7"
    assert exported.data == {
        "format": "csv",
        "scope": f"connector-{trail['notes'].pk}",
        "filters": {"action": "ai.", "period": "30d"},
    }
    body(response)


def test_an_export_applies_the_pages_filters(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:events_export", args=["jsonl"]), {"connector": trail["other"].pk})
    events = [json.loads(line) for line in body(response).splitlines()]
    assert [e["sequence"] for e in events] == [trail["elsewhere"].sequence]


def test_an_export_is_a_snapshot_up_to_its_own_audit_record(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:events_export", args=["jsonl"]), {"period": "all"})
    record("ai.tool_call", connector=trail["notes"])  # arrives while the export is streaming
    events = [json.loads(line) for line in body(response).splitlines()]
    assert [e["sequence"] for e in events] == [
        trail[k].sequence for k in ("call", "signin", "approved", "elsewhere")
    ]


def test_identity_export_streams_that_persons_activity(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:identity_export", args=[trail["alice"].pk, "csv"]))
    reader = list(csv.DictReader(io.StringIO(body(response))))
    assert {r["sequence"] for r in reader} == {
        str(trail[k].sequence) for k in ("call", "signin", "elsewhere")
    }
    exported = AuditEvent.objects.get(action="audit.exported")
    assert (exported.target_type, exported.target_id) == ("connectors.identity", str(trail["alice"].pk))


def test_export_reads_the_same_number_of_queries_for_one_or_fifty_rows(
    client, iam, owned_connector, django_assert_num_queries
):
    client.force_login(iam)
    url = export_url(owned_connector, "jsonl")
    record("ai.tool_call", connector=owned_connector)
    response = client.get(url)
    with django_assert_num_queries(1):
        assert len(body(response).splitlines()) == 1
    for _ in range(49):
        record("ai.tool_call", connector=owned_connector)
    response = client.get(url)
    with django_assert_num_queries(1):
        assert len(body(response).splitlines()) == 51  # 50 calls and the first export's record


def test_an_unknown_export_format_is_404_and_not_recorded(client, iam, trail):
    client.force_login(iam)
    assert client.get(export_url(trail["notes"], "xlsx")).status_code == 404
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_a_business_owner_can_export_their_connectors_activity(client, owner, trail):
    client.force_login(owner)
    response = client.get(export_url(trail["notes"], "ocsf"))
    assert response.status_code == 200
    assert len(body(response).splitlines()) == 3
    assert AuditEvent.objects.get(action="audit.exported").actor_user == owner


def test_a_business_owner_cannot_export_anything_else(client, owner, trail):
    client.force_login(owner)
    assert client.get(export_url(trail["other"], "csv")).status_code == 403
    assert client.get(reverse("audit:events_export", args=["csv"])).status_code == 403
    assert client.get(reverse("audit:identity_export", args=[trail["alice"].pk, "csv"])).status_code == 403
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_the_outsider_cannot_export(client, outsider, trail):
    client.force_login(outsider)
    for fmt in ("csv", "jsonl", "ocsf"):
        assert client.get(export_url(trail["notes"], fmt)).status_code == 403
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_an_export_records_the_client_behind_the_proxy(client, iam, trail, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    client.force_login(iam)
    response = client.get(
        export_url(trail["notes"], "csv"), REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9"
    )
    body(response)
    assert AuditEvent.objects.filter(action="audit.exported").latest("sequence").ip == "198.51.100.9"
