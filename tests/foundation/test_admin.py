"""The admin for IAM staff: every changelist renders with a constant number of queries."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit import services as audit
from audit.models import AuditCheckpoint, AuditEvent, IngestKey
from connectors.models import (
    CatalogEntry,
    Connector,
    ConnectorApp,
    Device,
    Grant,
    Identity,
    IdentitySource,
    Person,
    SyncRun,
)
from governance.models import (
    Attestation,
    AttestationCampaign,
    ConnectorRequest,
    Decision,
    ManagerReview,
    OwnershipTransfer,
    User,
)
from tests.factories import (
    CatalogEntryFactory,
    ConnectorAppFactory,
    ConnectorFactory,
    ConnectorRequestFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
    PersonFactory,
    SyncRunFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _attestations(n: int) -> None:
    campaign = AttestationCampaign.objects.create(name="Q4", deadline=timezone.now())
    manager = IdentityFactory()
    for _ in range(n):
        grant = GrantFactory()
        Attestation.objects.create(campaign=campaign, grant=grant, identity=grant.identity, manager=manager)


def _reviews(n: int) -> None:
    campaign = AttestationCampaign.objects.create(name="Q1", deadline=timezone.now())
    for _ in range(n):
        ManagerReview.objects.create(
            campaign=campaign, manager=IdentityFactory(), escalated_to=IdentityFactory()
        )


def _decisions(n: int) -> None:
    for _ in range(n):
        Decision.objects.create(
            request=ConnectorRequestFactory(), step="owner", outcome="approve", decided_by=UserFactory()
        )


def _transfers(n: int) -> None:
    for _ in range(n):
        OwnershipTransfer.objects.create(
            connector=ConnectorFactory(), from_user=UserFactory(), to_user=UserFactory(), reason="handover"
        )


def _events(n: int) -> None:
    device, connector = DeviceFactory(), ConnectorFactory()
    for i in range(n):
        audit.record("ai.tool_call", actor="gateway", device=device, connector=connector, data={"i": i})


def _checkpoints(n: int) -> None:
    start = AuditCheckpoint.objects.count()
    for i in range(start, start + n):
        AuditCheckpoint.objects.create(sequence=i, head_hash="0" * 64, signature="sig", key_id="k")


def _keys(n: int) -> None:
    start = IngestKey.objects.count()
    for i in range(start, start + n):
        IngestKey.objects.create(
            name=f"gateway-{i}", prefix=f"lk{i:06d}", key_hash="0" * 64, scopes=["events:write"]
        )


BUILDERS = {
    IdentitySource: lambda n: IdentitySourceFactory.create_batch(n),
    Identity: lambda n: [IdentityFactory(manager=IdentityFactory()) for _ in range(n)],
    Device: lambda n: [DeviceFactory(owner=IdentityFactory()) for _ in range(n)],
    Connector: lambda n: [
        GrantFactory(connector=ConnectorFactory(business_owner=UserFactory())) for _ in range(n)
    ],
    ConnectorApp: lambda n: ConnectorAppFactory.create_batch(n),
    Grant: lambda n: GrantFactory.create_batch(n),
    SyncRun: lambda n: SyncRunFactory.create_batch(n),
    Person: lambda n: [
        PersonFactory(manager=PersonFactory(), primary_identity=IdentityFactory()) for _ in range(n)
    ],
    CatalogEntry: lambda n: CatalogEntryFactory.create_batch(n),
    User: lambda n: UserFactory.create_batch(n),
    ConnectorRequest: lambda n: ConnectorRequestFactory.create_batch(n),
    Decision: _decisions,
    AttestationCampaign: lambda n: [
        AttestationCampaign.objects.create(name=f"C{i}", deadline=timezone.now()) for i in range(n)
    ],
    Attestation: _attestations,
    ManagerReview: _reviews,
    OwnershipTransfer: _transfers,
    AuditEvent: _events,
    AuditCheckpoint: _checkpoints,
    IngestKey: _keys,
}


def _changelist_queries(client, model) -> tuple[int, bytes]:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (model, response.status_code)
    return len(ctx.captured_queries), response.content


@pytest.mark.parametrize("model", list(BUILDERS), ids=lambda m: m._meta.label)
def test_changelist_runs_a_constant_number_of_queries(client, iam, model):
    client.force_login(iam)
    BUILDERS[model](1)
    one, _ = _changelist_queries(client, model)
    BUILDERS[model](49)
    fifty, content = _changelist_queries(client, model)
    assert fifty == one, f"{model._meta.label}: {one} queries for 1 row, {fifty} for 50"
    assert content.count(b"<tr") >= 50


def test_every_lanyard_model_is_registered():
    for model in BUILDERS:
        assert admin.site.is_registered(model), model


@pytest.mark.parametrize("model", [m for m in BUILDERS if m not in (AuditEvent, AuditCheckpoint)], ids=str)
def test_iam_staff_can_open_the_add_or_change_page(client, iam, model):
    client.force_login(iam)
    BUILDERS[model](1)
    obj = model._default_manager.order_by("pk").last()
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
    assert client.get(url).status_code == 200


def test_audit_events_are_read_only_in_the_admin(client, iam):
    client.force_login(iam)
    event = audit.record("connector.registered", actor=iam)
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    response = client.get(change)
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_identity_source_credentials_are_write_only(client, iam):
    client.force_login(iam)
    response = client.post(
        reverse("admin:connectors_identitysource_add"),
        {
            "kind": "microsoft_entra",
            "name": "Contoso Entra",
            "base_url": "https://graph.microsoft.com",
            "token_url": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
            "enabled": "on",
            "sync_interval": "01:00:00",
            "new_credentials": '{"tenant_id": "t", "client_id": "c", "client_secret": "very-secret-value"}',
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = IdentitySource.objects.get(name="Contoso Entra")
    assert source.credentials["client_secret"] == "very-secret-value"
    assert "very-secret-value" not in source.credentials_encrypted

    page = client.get(reverse("admin:connectors_identitysource_change", args=[source.pk])).content.decode()
    assert "very-secret-value" not in page
    assert source.credentials_encrypted not in page

    # Saving without new credentials keeps the stored ones.
    client.post(
        reverse("admin:connectors_identitysource_change", args=[source.pk]),
        {
            "kind": "microsoft_entra",
            "name": "Contoso Entra",
            "base_url": "https://graph.microsoft.com",
            "token_url": "",
            "sync_interval": "02:00:00",
            "new_credentials": "",
        },
    )
    source.refresh_from_db()
    assert source.credentials["client_secret"] == "very-secret-value"
    assert source.enabled is False


def test_malformed_credentials_get_a_clear_error_and_change_nothing(client, iam):
    client.force_login(iam)
    response = client.post(
        reverse("admin:connectors_identitysource_add"),
        {
            "kind": "okta",
            "name": "Okta",
            "base_url": "https://example.okta.com",
            "sync_interval": "01:00:00",
            "new_credentials": "{not json",
        },
    )
    assert response.status_code == 200
    assert b"Not valid JSON" in response.content
    assert not IdentitySource.objects.filter(name="Okta").exists()


def test_iam_staff_group_holds_the_register_permissions(iam):
    assert iam.has_perm("connectors.view_connector")
    assert iam.has_perm("connectors.decide_connector")
    assert iam.has_perm("audit.view_auditevent")
    assert not iam.has_perm("audit.change_auditevent")
    assert not iam.has_perm("audit.delete_auditevent")
