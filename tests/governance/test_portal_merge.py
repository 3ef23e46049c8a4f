"""Shadow triage: IAM merges a shadow connector into the product it is, and splits a path back out."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connectors.models import Connector
from tests.factories import ConnectorAppFactory, ConnectorFactory, GrantFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def claude(db):
    okta = IdentitySourceFactory(name="okta", kind="okta")
    sanctioned = ConnectorFactory(name="Claude", active=True)
    ConnectorAppFactory(connector=sanctioned)
    shadow = ConnectorFactory(name="Claude (via Okta)", discovered=True)
    app = ConnectorAppFactory(connector=shadow, source=okta)
    GrantFactory.create_batch(2, connector=shadow, app=app, source=okta)
    return sanctioned, shadow, app


def test_the_shadow_list_offers_merge(client, iam, claude):
    client.force_login(iam)
    page = client.get(reverse("portal:shadow")).content.decode()
    assert reverse("portal:connector_merge", args=[claude[1].pk]) in page


def test_iam_merges_a_shadow_connector_into_the_sanctioned_one(client, iam, claude):
    sanctioned, shadow, app = claude
    client.force_login(iam)
    url = reverse("portal:connector_merge", args=[shadow.pk])
    assert client.get(url).status_code == 200

    response = client.post(url, {"survivor": sanctioned.pk})

    assert response.status_code == 302
    shadow.refresh_from_db()
    assert shadow.status == Connector.Status.MERGED and shadow.merged_into == sanctioned
    assert sanctioned.grants.count() == 2
    assert AuditEvent.objects.filter(action="connector.merged", actor_user=iam).count() == 1
    detail = client.get(reverse("portal:connector_detail", args=[sanctioned.pk])).content.decode()
    assert 'id="paths"' in detail and app.client_id in detail


def test_iam_splits_the_path_back_out(client, iam, claude):
    sanctioned, shadow, app = claude
    client.force_login(iam)
    client.post(reverse("portal:connector_merge", args=[shadow.pk]), {"survivor": sanctioned.pk})

    response = client.post(reverse("portal:connector_split", args=[app.pk]))

    app.refresh_from_db()
    assert response.status_code == 302 and app.connector_id not in (sanctioned.pk, shadow.pk)
    assert app.connector.grants.count() == 2 and sanctioned.grants.count() == 0
    assert AuditEvent.objects.filter(action="connector.split").count() == 1


def test_owners_and_outsiders_cannot_merge_or_split(client, owner, outsider, claude):
    sanctioned, shadow, app = claude
    for user in (owner, outsider):
        client.force_login(user)
        merge = reverse("portal:connector_merge", args=[shadow.pk])
        assert client.post(merge, {"survivor": sanctioned.pk}).status_code == 403
        assert client.post(reverse("portal:connector_split", args=[app.pk])).status_code == 403
    shadow.refresh_from_db()
    assert shadow.status == Connector.Status.DISCOVERED
