"""The audit dashboard: the three questions from aggregate queries, charts, permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activity import selectors
from audit.services import record
from connectors.models import Connector, Risk
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db

URL = "/audit/"


@pytest.fixture
def register(owned_connector):
    """Three connectors, two people, a managed and an unmanaged device, grants and activity."""
    now = timezone.now()
    notes = owned_connector
    shadow = ConnectorFactory(name="Shadow Summariser", discovered=True, risk=Risk.HIGH)
    ConnectorFactory(name="Old Bot", revoked=True, risk=Risk.LOW)
    alice = IdentityFactory(email="alice@example.com")
    bob = IdentityFactory(email="bob@example.com")
    mac = DeviceFactory(name="MAC-ALICE", managed=True, owner=alice)
    byod = DeviceFactory(name="BOB-HOME-PC", managed=False, platform="Windows", owner=bob)
    GrantFactory(connector=notes, identity=alice, device=mac, last_used_at=now - timedelta(days=1))
    GrantFactory(connector=notes, identity=bob, device=byod, last_used_at=now - timedelta(days=2))
    GrantFactory(connector=shadow, identity=bob, last_used_at=now - timedelta(days=60))
    record("ai.tool_call", actor=alice, connector=notes, device=mac, occurred_at=now - timedelta(days=2))
    record("ai.tool_call", actor=bob, connector=notes, device=byod, occurred_at=now - timedelta(days=1))
    return {"notes": notes, "shadow": shadow, "alice": alice, "bob": bob, "mac": mac, "byod": byod}


def test_dashboard_counts_connectors_by_status_risk_and_ownership(register):
    data = selectors.dashboard()

    by_status = {b.key: b.value for b in data.by_status}
    assert by_status[Connector.Status.ACTIVE] == 1
    assert by_status[Connector.Status.DISCOVERED] == 1
    assert by_status[Connector.Status.REVOKED] == 1
    assert {b.key: b.value for b in data.by_risk} == {"low": 1, "medium": 1, "high": 1, "critical": 0}
    assert (data.total, data.shadow, data.sanctioned) == (3, 1, 1)
    # The revoked bot has no owner either, but nobody needs to answer for it any more.
    assert data.without_owner == 1


def test_dashboard_buckets_shadow_and_sanctioned_connectors_by_week(register):
    now = timezone.now()
    ConnectorFactory(discovered=True, discovered_at=now - timedelta(weeks=3))
    ConnectorFactory(discovered=True, discovered_at=now - timedelta(weeks=30))

    weeks = selectors.dashboard(now=now).weeks

    assert len(weeks) == 12
    assert weeks[-1].start <= now.date() < weeks[-1].start + timedelta(days=7)
    assert weeks[-1].start.weekday() == 0
    assert sum(w.discovered for w in weeks) == 2  # the one 30 weeks ago is out of the window
    assert weeks[-1].discovered == 1
    assert weeks[-1].sanctioned == 1  # the active connector changed status just now
    assert sum(w.sanctioned for w in weeks) == 1


def test_dashboard_ranks_connectors_by_identities_and_devices_from_recent_grant_use(register):
    top = selectors.dashboard().top_connectors

    assert [(c.name, c.identities, c.devices) for c in top] == [("Meeting Notes AI", 2, 2)]
    assert top[0].id == register["notes"].pk


def test_dashboard_finds_unmanaged_devices_seen_in_recent_activity(register):
    now = timezone.now()
    fresh = DeviceFactory(name="NEW-BYOD", managed=False)
    record("signin", connector=register["notes"], device=fresh, occurred_at=now - timedelta(hours=1))
    quiet = DeviceFactory(name="QUIET-BYOD", managed=False)
    GrantFactory(connector=register["notes"], device=quiet, last_used_at=None)
    DeviceFactory(name="UNUSED-BYOD", managed=False)
    old = DeviceFactory(name="OLD-BYOD", managed=False)
    record("ai.tool_call", connector=register["notes"], device=old, occurred_at=now - timedelta(days=45))

    data = selectors.dashboard(now=now)

    assert data.unmanaged_devices_total == 2
    assert [d.name for d in data.unmanaged_devices] == ["NEW-BYOD", "BOB-HOME-PC"]  # latest first
    bob_pc = data.unmanaged_devices[1]
    assert (bob_pc.active_grants, bob_pc.owner_email, bob_pc.platform) == (1, "bob@example.com", "Windows")


def test_dashboard_limits_the_unmanaged_device_list_but_counts_them_all(register):
    for i in range(3):
        record(
            "ai.tool_call", connector=register["notes"], device=DeviceFactory(name=f"B-{i}", managed=False)
        )
    total, devices = selectors.unmanaged_devices_using_ai(limit=2)
    assert total == 4 and len(devices) == 2


def _grow(n: int) -> None:
    now = timezone.now()
    for i in range(n):
        connector = ConnectorFactory(discovered=i % 2 == 0, discovered_at=now - timedelta(days=i % 70))
        identity = IdentityFactory()
        device = DeviceFactory(managed=False)
        GrantFactory(connector=connector, identity=identity, device=device, last_used_at=now)
        record("ai.tool_call", actor=identity, connector=connector, device=device)


def test_dashboard_selector_runs_six_queries_for_one_row_or_fifty(db, django_assert_num_queries):
    _grow(1)
    with django_assert_num_queries(6):
        selectors.dashboard()
    _grow(49)
    with django_assert_num_queries(6):
        data = selectors.dashboard()
    assert data.total == 50 and data.unmanaged_devices_total == 50


def test_dashboard_page_query_count_does_not_grow_with_the_data(client, iam):
    client.force_login(iam)
    _grow(1)
    with CaptureQueriesContext(connection) as one:
        assert client.get(URL).status_code == 200
    _grow(49)
    with CaptureQueriesContext(connection) as fifty:
        assert client.get(URL).status_code == 200
    assert len(one.captured_queries) == len(fifty.captured_queries)


def test_dashboard_shows_accessible_svg_charts_and_links(client, iam, register):
    client.force_login(iam)
    response = client.get(reverse("audit:dashboard"))

    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('role="img"') == 3
    assert "<title id=" in body and "<desc id=" in body
    assert "Connectors by risk" in body and "High: 1" in body
    assert "Meeting Notes AI" in body and "BOB-HOME-PC" in body
    assert reverse("audit:connectors") + "?owner=none" in body
    assert reverse("audit:connector_activity", args=[register["notes"].pk]) in body


def test_dashboard_escapes_connector_names_in_charts_and_tables(client, iam):
    ConnectorFactory(name="<script>alert(1)</script>", discovered=True)
    client.force_login(iam)
    body = client.get(URL).content.decode()
    assert "<script>alert(1)</script>" not in body


def test_dashboard_sends_anonymous_visitors_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_dashboard_refuses_the_outsider(client, outsider):
    client.force_login(outsider)
    assert client.get(URL).status_code == 403


def test_dashboard_refuses_a_business_owner(client, owner, owned_connector):
    client.force_login(owner)
    assert client.get(URL).status_code == 403


def test_nav_links_to_the_audit_pages_only_for_iam(client, iam, owner, owned_connector):
    client.force_login(iam)
    assert 'href="/audit/"' in client.get(URL).content.decode()
    client.force_login(owner)
    response = client.get(reverse("audit:connector_activity", args=[owned_connector.pk]))
    assert response.status_code == 200
    assert 'href="/audit/"' not in response.content.decode()
