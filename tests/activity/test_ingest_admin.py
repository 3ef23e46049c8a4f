"""Ingest keys in the admin: the full key is shown once, only its hash is kept; revoke by action."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent, IngestKey
from audit.services import ingest_key_create

pytestmark = pytest.mark.django_db


def test_iam_creates_a_key_and_sees_it_once(client, iam):
    client.force_login(iam)

    response = client.post(
        reverse("admin:audit_ingestkey_add"),
        {"name": "Claude gateway", "scopes": ["events:write"], "rate_limit_per_minute": "120"},
    )

    assert response.status_code == 200, response.content[:500]
    assert "no-store" in response["Cache-Control"]
    raw = re.search(rb'value="(lny_[^"]+)" data-ingest-key', response.content).group(1).decode()
    key = IngestKey.objects.get(name="Claude gateway")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert (key.prefix, key.scopes, key.rate_limit_per_minute, key.created_by) == (
        raw.split("_")[1],
        ["events:write"],
        120,
        iam,
    )
    change = client.get(reverse("admin:audit_ingestkey_change", args=[key.pk]))
    assert change.status_code == 200
    assert raw.encode() not in change.content
    assert AuditEvent.objects.filter(action="ingest_key.created", actor_user=iam).count() == 1
    assert (
        client.post(
            "/api/v1/events", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
        ).status_code
        == 400
    )  # authenticated; the body is what is wrong


def test_iam_revokes_keys_with_the_admin_action(client, iam):
    client.force_login(iam)
    key, raw = ingest_key_create(name="old gateway", actor=iam)

    client.post(
        reverse("admin:audit_ingestkey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="ingest_key.revoked").count() == 1
    assert (
        client.post(
            "/api/v1/events", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
        ).status_code
        == 401
    )


def test_the_outsider_cannot_open_the_ingest_key_admin(client, outsider):
    client.force_login(outsider)
    key, _ = ingest_key_create(name="gw", actor=None)

    for url in (
        reverse("admin:audit_ingestkey_changelist"),
        reverse("admin:audit_ingestkey_add"),
        reverse("admin:audit_ingestkey_change", args=[key.pk]),
    ):
        response = client.get(url)
        assert response.status_code in (302, 403, 404)
        assert response.status_code != 200
