"""Counts are of connectors (not paths) and people (not identity records), on every page that counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activity import selectors as activity
from connectors import people
from connectors.merging import connector_merge
from connectors.selectors import people_count, register_summary
from tests.factories import (
    ConnectorAppFactory,
    ConnectorFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
)

pytestmark = pytest.mark.django_db

KINDS = ("google_workspace", "microsoft_entra", "okta", "github")


def one_human_in_four_sources(email: str, connector=None) -> list:
    """The same person in every source, holding ``connector`` through each."""
    records = []
    for kind in KINDS:
        source = IdentitySourceFactory(name=kind, kind=kind)
        identity = IdentityFactory(source=source, email=email)
        records.append(identity)
        if connector is not None:
            GrantFactory(
                identity=identity, source=source, connector=connector, device=DeviceFactory(owner=identity)
            )
    return records


def test_home_counts_one_connector_with_three_paths_and_one_person_in_four_sources(client, iam):
    claude = ConnectorFactory(name="Claude")
    for kind in KINDS[:3]:
        ConnectorAppFactory(connector=claude, source=IdentitySourceFactory(name=kind, kind=kind))
    one_human_in_four_sources("emma@acme.com", claude)
    people.link_people()
    client.force_login(iam)

    summary = client.get(reverse("home")).context["summary"]

    assert summary.connectors_total == 1
    assert summary.active_identities_30d == 1 and summary.people_total == 1


def test_merged_connectors_are_not_counted(iam):
    a, b = ConnectorFactory(discovered=True), ConnectorFactory(discovered=True)
    connector_merge(survivor=a, merged=b, actor=iam)
    summary = register_summary()
    assert summary.connectors_total == 1 and summary.shadow == 1
    assert "merged" not in [s for s, _, _ in summary.connectors_by_status]
    assert activity.dashboard().total == 1


def test_identities_not_linked_yet_count_as_one_person_each():
    IdentityFactory.create_batch(2, email="same@acme.com")
    assert people_count() == 2
    people.link_people()
    assert people_count() == 1


def test_the_dashboard_counts_people_and_top_connectors_by_people(client, iam):
    claude = ConnectorFactory(name="Claude")
    one_human_in_four_sources("emma@acme.com", claude)
    one_human_in_four_sources("liam@acme.com", claude)
    people.link_people()
    client.force_login(iam)

    page = client.get(reverse("audit:dashboard"))

    data = page.context["data"]
    assert data.people == 2
    assert [(c.name, c.identities) for c in data.top_connectors] == [("Claude", 2)]
    assert b'id="dashboard-people">2<' in page.content


def test_home_queries_do_not_grow_with_people(client, iam, django_assert_num_queries):
    client.force_login(iam)
    connector = ConnectorFactory()
    one_human_in_four_sources("p0@acme.com", connector)
    people.link_people()
    client.get(reverse("home"))  # warm the session
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("home"))
    for n in range(1, 50):
        for identity in one_human_in_four_sources(f"p{n}@acme.com"):
            GrantFactory(identity=identity, connector=connector, source=identity.source)
    people.link_people()
    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(reverse("home"))
    assert response.context["summary"].people_total == 50


def test_the_identity_view_lists_the_persons_records_and_their_grants(
    client, iam, django_assert_max_num_queries
):
    claude = ConnectorFactory(name="Claude")
    records = one_human_in_four_sources("emma@acme.com", claude)
    people.link_people()
    client.force_login(iam)

    response = client.get(reverse("audit:identity", args=[records[0].pk]))

    assert response.status_code == 200
    assert [r.pk for r in response.context["records"]] == [
        records[0].pk,
        *sorted(
            (r.pk for r in records[1:]), key=lambda pk: next(r.source.name for r in records if r.pk == pk)
        ),
    ]
    assert len(response.context["grants"].rows) == 4
    assert response.content.count(b"emma@acme.com") >= 4


def test_the_connector_pages_list_paths_and_leave_merged_aliases_out(client, iam):
    claude = ConnectorFactory(name="Claude")
    for kind in KINDS[:3]:
        ConnectorAppFactory(connector=claude, source=IdentitySourceFactory(name=kind, kind=kind))
    alias = ConnectorFactory(name="Claude via a token", discovered=True)
    connector_merge(survivor=claude, merged=alias, actor=iam)
    client.force_login(iam)

    listing = client.get(reverse("audit:connectors")).content.decode()
    page = client.get(reverse("audit:connector_activity", args=[claude.pk])).content.decode()

    assert "Claude via a token" not in listing
    assert "google_workspace" in listing and "okta" in listing
    assert all(kind in page for kind in KINDS[:3])
