"""The Admin SDK's schemas, as examples, fed to the Google adapter's parsers: records, documented reads.

The discovery documents (tests/contracts/google.json, see SOURCES.md) have no examples: each one
here was synthesized from the schema (every documented property, placeholder values) by
scripts/regen-contracts. Where a test sets a value, it is one Google documents for that property.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from connectors.idp import google
from tests.contracts import contract
from tests.contracts.reads import tracked, undocumented_reads


def body(operation_id: str) -> dict:
    ex = contract.find("google", operation_id).examples[0]
    assert ex["origin"].startswith("synthesized from the schema")
    return copy.deepcopy(ex["value"])


def test_a_directory_user():
    page = body("directory.users.list")
    u = page["users"][0]
    u.update(archived=False, suspended=True, deletionTime=None)
    # relations and organizations are typed "any" in the discovery document (open); these are the
    # shapes https://developers.google.com/admin-sdk/directory/reference/rest/v1/users documents
    u["relations"] = [{"type": "manager", "value": "boss@example.com"}]
    u["organizations"] = [
        {"primary": False, "department": "Sales"},
        {"primary": True, "department": "Research"},
    ]
    page, reads = tracked(page)
    user, manager = google.parse_user(page["users"][0])
    assert (user.external_id, user.email, user.name, user.department) == (
        "<id>",
        "<primaryEmail>",
        "<fullName>",
        "Research",
    )
    assert user.status == "suspended" and manager == "boss@example.com"
    assert undocumented_reads("google", "directory.users.list", reads) == []


def test_an_archived_user_is_deprovisioned_and_the_org_unit_names_the_department():
    u = body("directory.users.get")
    u.update(archived=True, organizations=[], orgUnitPath="/Engineering/Platform")
    user, _ = google.parse_user(u)
    assert user.status == "deprovisioned" and user.department == "Platform"


def test_a_users_token_is_a_consent():
    page, reads = tracked(body("directory.tokens.list"))
    (grant,) = [google.parse_token("fallback", t) for t in page["items"]]
    assert (grant.external_id, grant.client_id, grant.app_name) == (
        "<userKey>:<clientId>",
        "<clientId>",
        "<displayText>",
    )
    assert grant.scopes == ["<scopes>"] and grant.user_external_id == "<userKey>"
    assert grant.extra["native_app"] and grant.extra["anonymous"]
    assert undocumented_reads("google", "directory.tokens.list", reads) == []


def test_a_mobile_device_and_its_owner():
    page = body("directory.mobiledevices.list")
    page["mobiledevices"][0].update(
        type="IOS_SYNC",
        status="APPROVED",
        deviceCompromisedStatus="No compromise detected",
        email=["a@example.com"],
    )
    page, reads = tracked(page)
    device = google.parse_mobile_device(page["mobiledevices"][0], {"a@example.com": "u-1"})
    assert (device.external_id, device.name, device.platform) == ("<deviceId>", "<model>", "iOS")
    assert device.managed and device.compliant and device.owner_external_id == "u-1"
    assert device.last_seen == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert undocumented_reads("google", "directory.mobiledevices.list", reads) == []


def test_a_token_activity():
    page = body("reports.activities.list")
    activity = page["items"][0]
    activity["id"].update(time="2024-05-01T12:00:00.000Z", uniqueQualifier="-123")
    activity["events"][0].update(
        name="authorize",
        parameters=[
            {"name": "client_id", "value": "1234.apps.googleusercontent.com"},
            {"name": "app_name", "value": "Otter.ai"},
            {"name": "scope", "multiValue": ["openid", "https://www.googleapis.com/auth/calendar"]},
            {"name": "client_type", "value": "WEB"},
        ],
    )
    page, reads = tracked(page)
    (event,) = google.parse_activity(page["items"][0])
    assert event.external_id == "2024-05-01T12:00:00.000Z:-123:0" and event.action == "token.authorize"
    assert event.client_id == "1234.apps.googleusercontent.com" and event.user_external_id == "<profileId>"
    assert event.user_email == "<email>" and event.ip == "<ipAddress>"
    assert event.data["scopes"] == ["openid", "https://www.googleapis.com/auth/calendar"]
    assert event.data["grant_external_id"] == "<profileId>:1234.apps.googleusercontent.com"
    assert undocumented_reads("google", "reports.activities.list", reads) == []
