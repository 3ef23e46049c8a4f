import pytest
from django.urls import reverse

from connectors.models import Connector
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory

pytestmark = pytest.mark.django_db


def test_home_answers_the_three_questions(client, iam):
    ConnectorFactory.create_batch(3, active=True)
    ConnectorFactory(discovered=True)
    device = DeviceFactory()
    GrantFactory(device=device)
    client.force_login(iam)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary.connectors_total == 5
    assert summary.shadow == 1
    assert summary.without_owner == 5
    assert summary.active_identities_30d == 1
    assert summary.active_devices_30d == 1
    assert {s: n for s, _, n in summary.connectors_by_status}[Connector.Status.ACTIVE] == 4


def test_home_sends_anonymous_visitors_to_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_home_refuses_the_outsider(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("home")).status_code == 403
