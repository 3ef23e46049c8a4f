"""Connector activity, identity view, event search and connector list: numbers, filters, permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from activity import selectors
from audit.models import AuditEvent
from audit.services import record
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(owned_connector, iam):
    """Activity on the owner's connector by two people from two devices, plus noise elsewhere."""
    now = timezone.now()
    notes = owned_connector
    other = ConnectorFactory(name="Other AI")
    alice = IdentityFactory(email="alice@example.com", name="Alice A")
    bob = IdentityFactory(email="bob@example.com", name="Bob B")
    mac = DeviceFactory(name="MAC-ALICE", managed=True, owner=alice)
    byod = DeviceFactory(name="BOB-HOME-PC", managed=False, platform="Windows")
    GrantFactory(connector=notes, identity=alice, device=mac)
    GrantFactory(connector=notes, identity=bob, revoked=True)
    GrantFactory(connector=other, identity=alice)
    events = {
        "alice_call": record(
            "ai.tool_call",
            actor=alice,
            connector=notes,
            device=mac,
            data={"resource": "drive:/q3.xlsx"},
            occurred_at=now - timedelta(days=2),
        ),
        "bob_call": record(
            "ai.tool_call", actor=bob, connector=notes, device=byod, occurred_at=now - timedelta(days=1)
        ),
        "bob_signin": record(
            "signin",
            actor=bob,
            connector=notes,
            device=byod,
            outcome=AuditEvent.Outcome.DENIED,
            ip="203.0.113.9",
            occurred_at=now - timedelta(hours=1),
        ),
        "approved": record("connector.approved", actor=iam, connector=notes, target=notes),
        "old": record(
            "ai.tool_call", actor=alice, connector=notes, device=mac, occurred_at=now - timedelta(days=40)
        ),
        "elsewhere": record("ai.tool_call", actor=alice, connector=other, device=mac),
    }
    return {"notes": notes, "other": other, "alice": alice, "bob": bob, "mac": mac, "byod": byod} | events


def activity_url(connector, **params) -> str:
    from urllib.parse import urlencode

    base = reverse("audit:connector_activity", args=[connector.pk])
    return f"{base}?{urlencode(params)}" if params else base


def records(table) -> list:
    return [row.record for row in table.page.object_list]


def rows(response) -> list[AuditEvent]:
    return records(response.context["table"])


# Connector activity -------------------------------------------------------------------------------


def test_connector_activity_summarises_who_used_it_from_which_devices_and_when(client, iam, trail):
    client.force_login(iam)
    response = client.get(activity_url(trail["notes"]))

    assert response.status_code == 200
    summary = response.context["summary"]
    # Default window is the last 30 days: the 40-day-old call and the other connector are out.
    assert (summary.events, summary.identities, summary.devices) == (4, 2, 2)
    assert summary.last_used_at == trail["bob_signin"].occurred_at  # governance events are not "use"
    assert [r["email"] for r in summary.top_identities] == [
        "bob@example.com",
        "alice@example.com",
    ]
    assert {r["name"] for r in summary.top_devices} == {"MAC-ALICE", "BOB-HOME-PC"}
    grants = response.context["grants"]
    assert (grants["active"], grants["total"], grants["holders"]) == (1, 2, 1)
    body = response.content.decode()
    assert "drive:/q3.xlsx" in body and "BOB-HOME-PC" in body and "unmanaged" in body


def test_connector_activity_lists_newest_events_first(client, iam, trail):
    client.force_login(iam)
    response = client.get(activity_url(trail["notes"]))
    assert [e.action for e in rows(response)] == [
        "connector.approved",
        "signin",
        "ai.tool_call",
        "ai.tool_call",
    ]


def test_connector_activity_sorts_by_a_column(client, iam, trail):
    client.force_login(iam)
    response = client.get(activity_url(trail["notes"], sort="action"))
    assert [e.action for e in rows(response)] == [
        "ai.tool_call",
        "ai.tool_call",
        "connector.approved",
        "signin",
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"period": "all"}, {"alice_call", "bob_call", "bob_signin", "approved", "old"}),
        ({"period": "24h"}, {"bob_signin", "approved"}),
        ({"identity": "alice@example.com", "period": "all"}, {"alice_call", "old"}),
        ({"identity": "ALICE@example.com"}, {"alice_call"}),
        ({"device": "BOB-HOME-PC"}, {"bob_call", "bob_signin"}),
        ({"action": "ai."}, {"alice_call", "bob_call"}),
        ({"action": "signin"}, {"bob_signin"}),
        ({"kind": "governance"}, {"approved"}),
        ({"kind": "activity"}, {"alice_call", "bob_call", "bob_signin"}),
        ({"outcome": "denied"}, {"bob_signin"}),
    ],
)
def test_connector_activity_filters(client, iam, trail, params, expected):
    client.force_login(iam)
    response = client.get(activity_url(trail["notes"], **params))
    assert {e.pk for e in rows(response)} == {trail[name].pk for name in expected}


def test_connector_activity_filters_by_identity_and_device_id(client, iam, trail):
    client.force_login(iam)
    response = client.get(activity_url(trail["notes"], identity=trail["bob"].pk, device=trail["byod"].pk))
    assert {e.pk for e in rows(response)} == {trail["bob_call"].pk, trail["bob_signin"].pk}


def test_connector_activity_filters_by_date_range(client, iam, trail):
    client.force_login(iam)
    day = (timezone.now() - timedelta(days=40)).date()
    response = client.get(activity_url(trail["notes"], after=day.isoformat(), before=day.isoformat()))
    assert [e.pk for e in rows(response)] == [trail["old"].pk]


def test_connector_activity_paginates_without_counting_every_row(client, iam, owned_connector):
    for i in range(60):
        record("ai.tool_call", connector=owned_connector, data={"n": i})
    client.force_login(iam)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(activity_url(owned_connector))
    page = first.context["table"].page
    assert len(page.object_list) == 50 and page.has_next()
    # No COUNT(*) for the paginator: it fetches one row past the page instead.
    assert not [q for q in queries if '"__count"' in q["sql"]]  # what QuerySet.count() would run
    second = client.get(activity_url(owned_connector, page=2))
    assert len(second.context["table"].page.object_list) == 10


def _grow_connector(connector, n: int) -> None:
    for _ in range(n):
        identity = IdentityFactory()
        device = DeviceFactory()
        GrantFactory(connector=connector, identity=identity, device=device)
        record("ai.tool_call", actor=identity, connector=connector, device=device, data={"resource": "x"})


def _page_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_connector_activity_query_count_is_the_same_for_one_or_fifty_events(client, iam, owned_connector):
    client.force_login(iam)
    _grow_connector(owned_connector, 1)
    one = _page_queries(client, activity_url(owned_connector))
    _grow_connector(owned_connector, 49)
    assert _page_queries(client, activity_url(owned_connector)) == one


def test_activity_summary_selector_runs_five_queries(owned_connector, django_assert_num_queries):
    _grow_connector(owned_connector, 1)
    with django_assert_num_queries(5):
        selectors.activity_summary(AuditEvent.objects.filter(connector=owned_connector))
    _grow_connector(owned_connector, 49)
    with django_assert_num_queries(5):
        summary = selectors.activity_summary(AuditEvent.objects.filter(connector=owned_connector))
    assert (summary.identities, summary.devices) == (50, 50)


def test_a_business_owner_sees_their_connectors_activity(client, owner, trail):
    client.force_login(owner)
    response = client.get(activity_url(trail["notes"]))
    assert response.status_code == 200
    assert response.context["summary"].identities == 2
    # Owners are not IAM: no links into other people's identity pages.
    assert reverse("audit:identity", args=[trail["alice"].pk]) not in response.content.decode()


def test_a_business_owner_cannot_see_another_connectors_activity(client, owner, trail):
    client.force_login(owner)
    assert client.get(activity_url(trail["other"])).status_code == 403


def test_connector_activity_of_a_missing_connector_is_404(client, iam):
    client.force_login(iam)
    assert client.get(reverse("audit:connector_activity", args=[999999])).status_code == 404


# Identity view ------------------------------------------------------------------------------------


def test_identity_view_shows_their_connectors_devices_and_activity(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:identity", args=[trail["alice"].pk]))

    assert response.status_code == 200
    grants = records(response.context["grants"])
    assert {g.connector.name for g in grants} == {"Meeting Notes AI", "Other AI"}
    devices = records(response.context["devices"])
    assert [d.name for d in devices] == ["MAC-ALICE"]
    assert devices[0].last_activity == trail["elsewhere"].occurred_at
    assert {e.pk for e in rows(response)} == {trail["alice_call"].pk, trail["elsewhere"].pk}


def test_identity_view_lists_devices_seen_in_activity_that_they_do_not_own(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:identity", args=[trail["bob"].pk]))
    assert [d.name for d in records(response.context["devices"])] == ["BOB-HOME-PC"]


def _grow_identity(identity, n: int) -> None:
    for _ in range(n):
        connector = ConnectorFactory()
        device = DeviceFactory(owner=identity)
        GrantFactory(connector=connector, identity=identity, device=device)
        record("ai.tool_call", actor=identity, connector=connector, device=device)


def test_identity_view_query_count_is_the_same_for_one_or_fifty_rows(client, iam):
    identity = IdentityFactory()
    client.force_login(iam)
    url = reverse("audit:identity", args=[identity.pk])
    _grow_identity(identity, 1)
    one = _page_queries(client, url)
    _grow_identity(identity, 49)
    assert _page_queries(client, url) == one


def test_identity_view_refuses_a_business_owner(client, owner, trail):
    client.force_login(owner)
    assert client.get(reverse("audit:identity", args=[trail["alice"].pk])).status_code == 403


# Event search -------------------------------------------------------------------------------------


def test_event_search_filters_by_connector_and_outcome(client, iam, trail):
    client.force_login(iam)
    url = reverse("audit:events")
    response = client.get(url, {"connector": trail["other"].pk})
    assert [e.pk for e in rows(response)] == [trail["elsewhere"].pk]
    response = client.get(url, {"connector": "other ai"})
    assert [e.pk for e in rows(response)] == [trail["elsewhere"].pk]
    response = client.get(url, {"outcome": "denied", "period": "all"})
    assert [e.pk for e in rows(response)] == [trail["bob_signin"].pk]


def test_event_search_ignores_an_invalid_filter_value_rather_than_failing(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:events"), {"outcome": "sideways", "after": "garbage"})
    assert response.status_code == 200
    assert response.context["filter"].errors


def test_event_search_query_count_is_the_same_for_one_or_fifty_events(client, iam):
    client.force_login(iam)
    connector = ConnectorFactory()
    _grow_connector(connector, 1)
    one = _page_queries(client, reverse("audit:events"))
    _grow_connector(connector, 49)
    assert _page_queries(client, reverse("audit:events")) == one


def test_event_search_refuses_a_business_owner(client, owner, trail):
    client.force_login(owner)
    assert client.get(reverse("audit:events")).status_code == 403


# Connector list -----------------------------------------------------------------------------------


def test_connector_list_shows_connectors_without_an_owner(client, iam, trail):
    ConnectorFactory(name="Orphan AI", discovered=True)
    ConnectorFactory(name="Gone AI", revoked=True)
    client.force_login(iam)
    response = client.get(reverse("audit:connectors"), {"owner": "none"})
    names = [c.name for c in records(response.context["table"])]
    assert names == ["Orphan AI", "Other AI"]


def test_connector_list_shows_active_grants_and_last_use(client, iam, trail):
    client.force_login(iam)
    response = client.get(reverse("audit:connectors"), {"name": "meeting"})
    [notes] = records(response.context["table"])
    assert notes.active_grants == 1 and notes.last_used_at is not None


def test_connector_list_query_count_is_the_same_for_one_or_fifty_connectors(client, iam):
    client.force_login(iam)
    _grow_identity(IdentityFactory(), 1)
    one = _page_queries(client, reverse("audit:connectors"))
    _grow_identity(IdentityFactory(), 49)
    assert _page_queries(client, reverse("audit:connectors")) == one


# Everyone else ------------------------------------------------------------------------------------


def _all_urls(trail) -> list[str]:
    notes, alice = trail["notes"].pk, trail["alice"].pk
    urls = [
        reverse("audit:dashboard"),
        reverse("audit:connectors"),
        reverse("audit:events"),
        reverse("audit:connector_activity", args=[notes]),
        reverse("audit:identity", args=[alice]),
    ]
    for fmt in ("csv", "jsonl", "ocsf"):
        urls += [
            reverse("audit:events_export", args=[fmt]),
            reverse("audit:connector_activity_export", args=[notes, fmt]),
            reverse("audit:identity_export", args=[alice, fmt]),
        ]
    return urls


def test_the_outsider_is_refused_on_every_audit_page_and_export(client, outsider, trail):
    client.force_login(outsider)
    before = AuditEvent.objects.count()
    for url in _all_urls(trail):
        assert client.get(url).status_code in (403, 404), url
    assert AuditEvent.objects.count() == before  # and no export was recorded


def test_anonymous_visitors_are_sent_to_login_from_every_audit_url(client, trail):
    for url in _all_urls(trail):
        response = client.get(url)
        assert response.status_code == 302, url
        assert reverse("account_login") in response["Location"]


def test_audit_pages_refuse_writes(client, iam, trail):
    client.force_login(iam)
    assert client.post(reverse("audit:events")).status_code == 405
