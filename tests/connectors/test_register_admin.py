"""The admin's merge, split, link/unlink and catalog upload: one service call each, audited."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from connectors import catalog, people
from connectors.models import CatalogEntry, Connector
from tests.factories import ConnectorAppFactory, ConnectorFactory, IdentityFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db


def test_iam_merges_connectors_from_the_admin(client, iam):
    survivor, merged = (
        ConnectorFactory(name="Claude"),
        ConnectorFactory(name="Claude (Okta)", discovered=True),
    )
    ConnectorAppFactory(connector=merged)
    client.force_login(iam)
    url = reverse("admin:connectors_connector_changelist")
    picked = {"action": "merge", ACTION_CHECKBOX_NAME: [survivor.pk, merged.pk]}

    assert client.post(url, picked).status_code == 200  # asks which one survives
    client.post(url, {**picked, "apply": "1", "survivor": survivor.pk})

    merged.refresh_from_db()
    assert merged.status == Connector.Status.MERGED and survivor.apps.count() == 1
    assert AuditEvent.objects.filter(action="connector.merged", actor_user=iam).count() == 1


def test_iam_splits_a_path_from_the_admin(client, iam):
    connector = ConnectorFactory()
    a, b = ConnectorAppFactory(connector=connector), ConnectorAppFactory(connector=connector)
    client.force_login(iam)
    client.post(
        reverse("admin:connectors_connectorapp_changelist"), {"action": "split", ACTION_CHECKBOX_NAME: [b.pk]}
    )
    b.refresh_from_db()
    assert b.connector_id != connector.pk and a.connector_id == connector.pk
    assert AuditEvent.objects.filter(action="connector.split").count() == 1


def test_iam_links_and_unlinks_identities_from_the_admin(client, iam):
    google = IdentityFactory(source=IdentitySourceFactory(name="g"), email="a@acme.com")
    github = IdentityFactory(source=IdentitySourceFactory(name="gh", kind="github"), email="")
    people.link_people()
    google.refresh_from_db()
    client.force_login(iam)
    url = reverse("admin:connectors_identity_changelist")

    client.post(
        url,
        {
            "action": "link_to_person",
            ACTION_CHECKBOX_NAME: [github.pk],
            "apply": "1",
            "person": google.person_id,
        },
    )
    github.refresh_from_db()
    assert github.person_id == google.person_id
    client.post(url, {"action": "unlink_from_person", ACTION_CHECKBOX_NAME: [github.pk]})
    github.refresh_from_db()
    assert github.person_id != google.person_id
    assert AuditEvent.objects.filter(action__startswith="person.identity_").count() == 2


def test_iam_uploads_a_catalog_file(client, iam):
    client.force_login(iam)
    doc = {
        "format": catalog.FORMAT,
        "apps": [{"slug": "new-ai", "name": "New AI", "ids": {"okta": ["0oaX"]}}],
    }
    upload = SimpleUploadedFile("catalog.json", json.dumps(doc).encode(), content_type="application/json")

    response = client.post(reverse("admin:connectors_catalogentry_upload"), {"file": upload})

    assert response.status_code == 302
    assert CatalogEntry.objects.get(slug="new-ai").ids == {"okta": ["0oaX"]}
    bad = SimpleUploadedFile("catalog.json", b"{not json", content_type="application/json")
    response = client.post(reverse("admin:connectors_catalogentry_upload"), {"file": bad})
    assert response.status_code == 200 and b"Not valid JSON" in response.content


def test_an_outsider_cannot_upload_a_catalog(client, outsider):
    client.force_login(outsider)
    response = client.get(reverse("admin:connectors_catalogentry_upload"))
    assert response.status_code in (302, 403)
