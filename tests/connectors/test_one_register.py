"""One connector per product: catalog matching across sources, IAM's merges and splits."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from django.db.models import F

from audit.models import AuditEvent
from connectors import catalog
from connectors.merging import connector_merge, connector_split
from connectors.models import CatalogEntry, Connector, ConnectorApp, Grant, IllegalTransition
from connectors.sync import sync_source
from simulator.catalog import APPS
from simulator.tenant import Tenant
from tests.connectors.conftest import TENANT, make_source
from tests.factories import (
    ConnectorAppFactory,
    ConnectorFactory,
    ConnectorRequestFactory,
    GrantFactory,
)

pytestmark = pytest.mark.django_db


def catalog_of_the_simulated_company() -> None:
    """Catalog entries for the simulated company's apps, with the ids this test tenant gives them."""
    t = Tenant(seed=TENANT["seed"], identities=1, grants=0)
    for i, app in enumerate(APPS):
        ids = {"google_workspace": [t.google_client[i]], "microsoft_entra": [t.entra_app_ids[i]]}
        ids["okta"] = [t.okta_app_ids[i]]
        slug = re.sub(r"[^a-z0-9]+", "-", app.name.lower()).strip("-")
        CatalogEntry.objects.update_or_create(
            slug=slug, defaults={"name": app.name, "publisher": app.vendor, "kind": app.kind, "ids": ids}
        )


def test_one_product_seen_in_google_entra_and_okta_is_one_connector_with_three_paths(sim):
    catalog_of_the_simulated_company()
    sources = [make_source(sim, kind) for kind in ("google_workspace", "microsoft_entra", "okta")]

    runs = [sync_source(s) for s in sources]

    assert all(r.outcome == "succeeded" for r in runs), [r.error for r in runs]
    # Every app of the company is one connector, named by the catalog, with a path per source it is in.
    for connector in Connector.objects.prefetch_related("apps"):
        assert connector.catalog_entry is not None, connector.name
        assert connector.name == connector.catalog_entry.name
        kinds = [app.source.kind for app in connector.apps.all()]
        assert len(kinds) == len(set(kinds))
    names = list(Connector.objects.values_list("name", flat=True))
    assert len(names) == len(set(names))
    three = [c for c in Connector.objects.all() if c.apps.count() == 3]
    assert three, "some product has grants in all three sources"
    assert sum(r.shadow for r in runs) == Connector.objects.count()
    assert AuditEvent.objects.filter(action="connector.discovered").count() == Connector.objects.count()
    paths = ConnectorApp.objects.count() - Connector.objects.count()
    assert AuditEvent.objects.filter(action="connector.path_added").count() == paths
    # Each grant sits on its path's connector.
    assert not Grant.objects.exclude(connector=F("app__connector")).exists()
    # Resyncs attach everything where it is: nothing discovered, no path added.
    found = AuditEvent.objects.filter(action__in=["connector.discovered", "connector.path_added"])
    before = found.count()
    assert [sync_source(s).shadow for s in sources] == [0, 0, 0]
    assert found.count() == before


def test_an_unknown_app_stays_separate_until_iam_merges_it_and_the_next_sync_attaches_it(sim, iam):
    google, okta = make_source(sim, "google_workspace"), make_source(sim, "okta")
    sync_source(google)
    sync_source(okta)
    # Without a catalog, the same product in two sources is two connectors (never matched by name).
    by_name: dict[str, list[Connector]] = {}
    for c in Connector.objects.all():
        by_name.setdefault(c.name, []).append(c)
    name, (first, second) = next((n, cs) for n, cs in by_name.items() if len(cs) == 2)
    request = ConnectorRequestFactory(connector=second)

    survivor = connector_merge(survivor=first, merged=second, actor=iam)

    second.refresh_from_db()
    assert second.status == Connector.Status.MERGED and second.merged_into == survivor
    assert survivor.apps.count() == 2 and not second.apps.exists() and not second.grants.exists()
    request.refresh_from_db()
    assert request.connector == survivor
    event = AuditEvent.objects.get(action="connector.merged")
    assert event.connector_id == survivor.pk and event.data["requests"] == 1
    # The next syncs attach both paths to the survivor and discover nothing.
    grants = survivor.grants.count()
    again = [sync_source(google), sync_source(okta)]
    assert [r.shadow for r in again] == [0, 0]
    assert survivor.grants.count() == grants
    assert Connector.objects.filter(name=name).exclude(status=Connector.Status.MERGED).count() == 1


def test_split_moves_a_path_and_its_grants_back_out_and_sticks_at_the_next_sync(sim, iam):
    catalog_of_the_simulated_company()
    google, okta = make_source(sim, "google_workspace"), make_source(sim, "okta")
    sync_source(google)
    sync_source(okta)
    connector = next(c for c in Connector.objects.all() if c.apps.count() == 2)
    path = connector.apps.get(source=okta)
    held = path.grants.count()

    new = connector_split(app=path, actor=iam)

    assert new.status == Connector.Status.DISCOVERED and new.pk != connector.pk
    assert list(new.apps.all()) == [path]
    assert new.grants.count() == held and not connector.grants.filter(app=path).exists()
    assert AuditEvent.objects.filter(action="connector.split", connector=new).count() == 1
    sync_source(okta)
    path.refresh_from_db()
    assert path.connector == new and new.grants.count() == held


def test_merge_refuses_itself_and_merged_connectors(iam):
    a, b, c = ConnectorFactory(), ConnectorFactory(), ConnectorFactory()
    with pytest.raises(IllegalTransition):
        connector_merge(survivor=a, merged=a, actor=iam)
    connector_merge(survivor=a, merged=b, actor=iam)
    with pytest.raises(IllegalTransition):
        connector_merge(survivor=b, merged=c, actor=iam)
    with pytest.raises(IllegalTransition):
        connector_merge(survivor=a, merged=b, actor=iam)
    assert AuditEvent.objects.filter(action="connector.merged").count() == 1


def test_split_refuses_a_connectors_only_path(iam):
    app = ConnectorAppFactory()
    with pytest.raises(IllegalTransition):
        connector_split(app=app, actor=iam)
    assert not AuditEvent.objects.filter(action="connector.split").exists()


def test_merge_moves_grants_and_keeps_the_higher_risk(iam):
    survivor, merged = (
        ConnectorFactory(risk="low", risk_score=10),
        ConnectorFactory(risk="high", risk_score=70),
    )
    GrantFactory.create_batch(3, connector=merged)
    connector_merge(survivor=survivor, merged=merged, actor=iam)
    survivor.refresh_from_db()
    assert survivor.grants.count() == 3 and (survivor.risk, survivor.risk_score) == ("high", 70)


# ------------------------------------------------------------------------------------ the catalog file


def test_the_shipped_catalog_parses_and_knows_the_simulated_companys_apps():
    apps = catalog.shipped()
    names = {a.name for a in apps}
    assert {a.name for a in APPS} <= names
    assert {"ChatGPT", "Claude", "GitHub Copilot", "Gemini", "Otter.ai", "Fireflies.ai", "Cursor"} <= names
    # The migration seeded it.
    assert CatalogEntry.objects.count() >= len(apps)


def test_catalog_import_updates_entries_by_slug_and_is_audited(tmp_path):
    path = tmp_path / "catalog.json"
    doc = {
        "format": catalog.FORMAT,
        "apps": [{"slug": "claude", "name": "Claude", "ids": {"okta": ["0oaNEW"]}, "risk": "high"}],
    }
    path.write_text(json.dumps(doc))

    call_command("catalog_import", str(path))

    entry = CatalogEntry.objects.get(slug="claude")
    assert entry.ids == {"okta": ["0oaNEW"]} and entry.risk == "high"
    assert AuditEvent.objects.filter(action="catalog.imported").count() == 1
    call_command("catalog_import", str(path))
    assert AuditEvent.objects.latest("sequence").data["changed"] == 0


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"apps": []}, "Not a catalog"),
        ({"format": catalog.FORMAT, "apps": [{"slug": "Bad Slug", "name": "x"}]}, "slug"),
        (
            {"format": catalog.FORMAT, "apps": [{"slug": "a", "name": "A", "ids": {"aol": ["x"]}}]},
            "unknown source",
        ),
        (
            {
                "format": catalog.FORMAT,
                "apps": [
                    {"slug": "a", "name": "A", "ids": {"okta": ["same"]}},
                    {"slug": "b", "name": "B", "ids": {"okta": ["same"]}},
                ],
            },
            "also claimed",
        ),
    ],
)
def test_a_bad_catalog_is_refused_with_a_clear_error_and_changes_nothing(doc, message):
    before = CatalogEntry.objects.count()
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.catalog_import(apps=catalog.parse(doc), actor="test")
    assert CatalogEntry.objects.count() == before
