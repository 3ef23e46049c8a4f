"""Graph's schemas, as examples, fed to the Entra adapter's parsers: the records, and only documented reads.

Graph's CSDL (tests/contracts/entra.json, see SOURCES.md) has no examples: each one here was
synthesized from the schema (every documented property, placeholder values) by
scripts/regen-contracts. Where a test sets a value, it is one Graph documents for that property.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from connectors.idp import entra
from tests.contracts import contract
from tests.contracts.reads import tracked, undocumented_reads

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def item(operation_id: str, **values) -> dict:
    op = contract.find("entra", operation_id)
    ex = op.examples[0]
    assert ex["origin"].startswith("synthesized from the schema")
    body = copy.deepcopy(ex["value"])
    record = body["value"][0] if "value" in body else body
    record.update(values)
    return record


def read_in(operation_id: str, record: dict, parse) -> tuple[object, list[str]]:
    page, reads = tracked({"value": [record]})
    result = parse(page["value"][0])
    return result, undocumented_reads("entra", operation_id, reads)


def test_a_user_with_its_expanded_manager():
    # manager is a navigation property: present with $expand=manager($select=id)
    record = item("user.list", manager={"@odata.type": "#microsoft.graph.user", "id": "m-1"})
    user, undocumented = read_in("user.list", record, lambda u: entra.parse_user(u, NOW))
    assert (user.external_id, user.email, user.name, user.department) == (
        "<id>",
        "<mail>",
        "<displayName>",
        "<department>",
    )
    assert user.manager_external_id == "m-1" and user.status == "active"
    assert undocumented == []


def test_a_disabled_user_past_their_leave_date_is_deprovisioned():
    record = item("user.list", accountEnabled=False, employeeLeaveDateTime="2024-12-31T00:00:00Z", mail=None)
    user, undocumented = read_in("user.list", record, lambda u: entra.parse_user(u, NOW))
    assert user.status == "deprovisioned" and user.email == "<userPrincipalName>"
    record["employeeLeaveDateTime"] = None
    assert entra.parse_user(record, NOW).status == "suspended"
    assert undocumented == []


def test_a_service_principal_is_an_app_with_its_verified_publisher():
    record = item("servicePrincipal.list")
    app, undocumented = read_in("servicePrincipal.list", record, entra.parse_service_principal)
    assert (app.client_id, app.name, app.external_id) == ("<appId>", "<displayName>", "<id>")
    assert app.publisher == "<displayName>" and app.verified  # verifiedPublisher.displayName / Id
    assert undocumented == []
    record["verifiedPublisher"] = {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None}
    app, undocumented = read_in("servicePrincipal.list", record, entra.parse_service_principal)
    assert app.publisher == "" and not app.verified
    assert undocumented == []  # e.g. publisherName: Graph beta only, not in v1.0


def test_a_delegated_permission_grant():
    sp = {"id": "<clientId>", "appId": "app-1", "displayName": "Otter.ai"}
    record = item(
        "oAuth2PermissionGrant.list", consentType="Principal", scope="openid Files.Read offline_access"
    )
    grant, undocumented = read_in(
        "oAuth2PermissionGrant.list", record, lambda g: entra.parse_permission_grant(g, {sp["id"]: sp})
    )
    assert (grant.external_id, grant.client_id, grant.app_name) == ("<id>", "app-1", "Otter.ai")
    assert grant.scopes == ["openid", "Files.Read", "offline_access"]
    assert grant.user_external_id == "<principalId>" and grant.consent_type == "principal"
    assert grant.extra["resource_id"] == "<resourceId>"
    assert undocumented == []


def test_a_tenant_wide_permission_grant_has_no_user():
    record = item("oAuth2PermissionGrant.list", consentType="AllPrincipals", principalId=None)
    grant = entra.parse_permission_grant(record, {})
    assert grant.consent_type == "all_principals" and grant.user_external_id is None
    assert grant.client_id == "<clientId>"  # unknown service principal: its object id


def test_an_application_permission_held_by_an_app():
    resource = {"id": "graph-sp", "displayName": "Microsoft Graph"}
    roles = {"00000000-0000-0000-0000-000000000001": "Files.Read.All"}
    record = item("appRoleAssignment.list", principalType="ServicePrincipal")
    grant, undocumented = read_in(
        "appRoleAssignment.list",
        record,
        lambda a: entra.parse_app_role_assignment(a, resource, roles, {}),
    )
    assert grant is not None and grant.scopes == ["Files.Read.All"]
    assert grant.app_name == "<principalDisplayName>" and grant.consent_type == "all_principals"
    assert grant.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert undocumented == []
    record["principalType"] = "User"
    assert entra.parse_app_role_assignment(record, resource, roles, {}) is None


def test_a_device_with_its_registered_owner():
    # registeredOwners is a navigation property: present with $expand=registeredOwners($select=id)
    record = item("device.list", operatingSystem="MacMDM", registeredOwners=[{"id": "u-1"}])
    device, undocumented = read_in("device.list", record, entra.parse_device)
    assert (device.external_id, device.name, device.platform) == ("<deviceId>", "<displayName>", "macOS")
    assert device.managed and device.compliant and device.owner_external_id == "u-1"
    assert device.last_seen == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert undocumented == []


def test_a_sign_in_with_its_device():
    record = item("signIn.list")
    record["deviceDetail"]["operatingSystem"] = "Windows10"
    record["status"] = {"errorCode": 50126, "failureReason": "Invalid credentials", "additionalDetails": None}
    activity, undocumented = read_in("signIn.list", record, entra.parse_sign_in)
    assert (activity.external_id, activity.client_id, activity.user_external_id) == (
        "<id>",
        "<appId>",
        "<userId>",
    )
    assert activity.occurred_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert activity.outcome == "failure" and activity.ip == "<ipAddress>"
    assert activity.device is not None and activity.device.platform == "Windows"
    assert activity.device.external_id == "<deviceId>" and activity.user_agent == "<browser>"
    assert activity.data == {
        "app_name": "<appDisplayName>",
        "resource": "<resourceDisplayName>",
        "client_app": "<clientAppUsed>",
    }
    assert undocumented == []
