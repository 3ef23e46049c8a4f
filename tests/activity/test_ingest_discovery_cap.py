"""An ingest key cannot fill the register with garbage: discoveries are capped per key per hour,
each remembers the key that made it, and IAM dismisses what one key created in one admin action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import ingest_key_create
from audit.verify import verify
from connectors.models import Connector
from tests.activity.test_ingest import event, google, known, post  # noqa: F401 (fixtures, used by name)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("known")]


@pytest.fixture
def keys(iam):
    return (
        ingest_key_create(name="gw-a", actor=iam, rate_limit_per_minute=1000),
        ingest_key_create(name="gw-b", actor=iam, rate_limit_per_minute=1000),
    )


def _shadow(n: int, start: int = 0) -> dict:
    return {
        "events": [
            event(start + i, connector={"mcp_server_url": f"https://junk{start + i}.example.net/sse"})
            for i in range(n)
        ]
    }


def test_a_discovered_connector_records_the_key_that_found_it(client, keys):
    (key_a, raw_a), _ = keys
    assert post(client, raw_a, _shadow(2)).status_code == 200
    assert set(Connector.objects.filter(status="discovered").values_list("discovered_by_key", flat=True)) == {
        key_a.pk
    }


def test_discoveries_beyond_the_hourly_cap_are_refused_with_nothing_recorded(client, keys, settings):
    settings.LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR = 3
    (key_a, raw_a), (key_b, raw_b) = keys
    assert post(client, raw_a, _shadow(2)).status_code == 200
    before = AuditEvent.objects.count()

    refused = post(client, raw_a, _shadow(2, start=10))

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert "at most 3 new connectors per hour" in refused.json()["error"]
    assert AuditEvent.objects.count() == before
    assert Connector.objects.filter(discovered_by_key=key_a).count() == 2
    # Events naming connectors already known still go through, and so does another key.
    assert post(client, raw_a, {"events": [event(50)]}).status_code == 200
    assert post(client, raw_b, _shadow(3, start=20)).status_code == 200
    assert verify().ok


def test_the_cap_counts_only_the_last_hour(client, keys, settings):
    settings.LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR = 2
    (key_a, raw_a), _ = keys
    assert post(client, raw_a, _shadow(2)).status_code == 200
    Connector.objects.filter(discovered_by_key=key_a).update(
        discovered_at=timezone.now() - dt.timedelta(hours=1, minutes=1)
    )
    assert post(client, raw_a, _shadow(2, start=10)).status_code == 200


def test_iam_dismisses_everything_one_key_discovered_in_one_action(client, keys, iam):
    (key_a, raw_a), (key_b, raw_b) = keys
    post(client, raw_a, _shadow(4))
    post(client, raw_b, _shadow(2, start=10))
    sanctioned = Connector.objects.filter(discovered_by_key=key_a).order_by("pk").first()
    Connector.objects.filter(pk=sanctioned.pk).update(status=Connector.Status.REQUESTED)  # IAM took it up
    one = Connector.objects.filter(discovered_by_key=key_a, status="discovered").first()

    client.force_login(iam)
    url = reverse("admin:connectors_connector_changelist")
    form = client.post(url, {"action": "dismiss_by_ingest_key", "_selected_action": [one.pk]})
    assert form.status_code == 200 and b"reason" in form.content
    done = client.post(
        url,
        {
            "action": "dismiss_by_ingest_key",
            "_selected_action": [one.pk],
            "apply": "1",
            "reason": "junk from gw-a",
        },
    )
    assert done.status_code == 302

    assert Connector.objects.filter(discovered_by_key=key_a, status="rejected").count() == 3
    assert Connector.objects.get(pk=sanctioned.pk).status == Connector.Status.REQUESTED
    assert Connector.objects.filter(discovered_by_key=key_b, status="discovered").count() == 2
    dismissed = AuditEvent.objects.filter(action="connector.dismissed")
    assert dismissed.count() == 3
    assert {e.data["reason"] for e in dismissed} == {"junk from gw-a"}
    assert all(e.actor_user == iam for e in dismissed)
    assert verify().ok


def test_the_dismiss_action_is_refused_to_staff_without_the_permission(client, keys):
    from tests.factories import UserFactory

    (key_a, raw_a), _ = keys
    post(client, raw_a, _shadow(1))
    staff = UserFactory(is_staff=True)
    from tests.conftest import enrol_totp

    enrol_totp(staff)
    client.force_login(staff)
    one = Connector.objects.get(discovered_by_key=key_a)
    response = client.post(
        reverse("admin:connectors_connector_changelist"),
        {"action": "dismiss_by_ingest_key", "_selected_action": [one.pk], "apply": "1", "reason": "x"},
    )
    assert response.status_code in (302, 403)
    assert Connector.objects.get(pk=one.pk).status == Connector.Status.DISCOVERED
