"""Optional phases: a tenant without an edition or a permission still syncs, with a capability warning."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connectors.models import Grant, SourceCapability, SyncRun
from connectors.sync import sync_source
from tests.connectors.conftest import Writes, make_source, provider

pytestmark = pytest.mark.django_db

State = SourceCapability.State

# (source kind, simulator switch turned off, capability that loses its endpoint, state, words of the hint)
EDITION_CASES = [
    ("github", "github_enterprise_cloud", "activity", State.NOT_IN_EDITION, "Enterprise Cloud"),
    ("okta", "okta_identity_engine", "devices", State.NOT_IN_EDITION, "Identity Engine"),
    ("microsoft_entra", "entra_device_read_all", "devices", State.MISSING_PERMISSION, "Device.Read.All"),
    ("microsoft_entra", "entra_premium", "activity", State.NOT_IN_EDITION, "P1 or P2"),
    (
        "google_workspace",
        "google_mobile_device_scope",
        "devices",
        State.MISSING_PERMISSION,
        "admin.directory.device.mobile.readonly",
    ),
]


@pytest.mark.parametrize(
    ("kind", "switch", "capability", "state", "hint"), EDITION_CASES, ids=[c[1] for c in EDITION_CASES]
)
def test_a_tenant_without_an_optional_endpoint_still_syncs_and_marks_vanished_grants(
    sim, client, iam, kind, switch, capability, state, hint
):
    source = make_source(sim, kind)
    assert sync_source(source).outcome == SyncRun.Outcome.SUCCEEDED
    gone = Grant.objects.filter(source=source, status=Grant.Status.ACTIVE).order_by("pk").first()
    assert sim.mutate("remove_grant", provider=provider(source), id=gone.external_id)["removed"]
    assert sim.edition(**{switch: False})[switch] is False

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.vanished >= 1  # an Okta consent takes its refresh tokens with it
    gone.refresh_from_db()
    assert gone.status == Grant.Status.REVOKED
    [warning] = run.warnings
    assert warning["capability"] == capability
    assert warning["state"] == state
    assert hint in warning["hint"]
    assert warning["endpoint"]
    row = SourceCapability.objects.get(source=source, name=capability)
    assert (row.state, row.required) == (state, False)
    assert hint in row.hint
    others = SourceCapability.objects.filter(source=source).exclude(name=capability)
    assert set(others.values_list("state", flat=True)) == {State.AVAILABLE}
    assert {"users", "apps", "grants"} <= set(others.values_list("name", flat=True))
    event = AuditEvent.objects.filter(action="sync.succeeded", source=source).order_by("-sequence").first()
    assert event.data["warnings"] == {capability: state}

    client.force_login(iam)
    page = client.get(reverse("admin:connectors_identitysource_change", args=[source.pk])).content.decode()
    assert State(state).label in page and hint in page and "Test connection" in page
    listing = client.get(reverse("admin:connectors_syncrun_changelist")).content.decode()
    assert f"{capability}: {state}" in listing


def test_switching_the_edition_back_on_makes_the_capability_available_again(sim, db):
    source = make_source(sim, "okta")
    sim.edition(okta_identity_engine=False)
    assert sync_source(source).warnings
    sim.edition(okta_identity_engine=True)

    run = sync_source(source)

    assert run.warnings == []
    assert SourceCapability.objects.get(source=source, name="devices").state == State.AVAILABLE


def test_a_refused_required_phase_fails_the_run_and_records_the_missing_permission(sim, db):
    source = make_source(sim, "microsoft_entra")
    sim.faults(provider="entra", kind="forbidden", path="oauth2PermissionGrants", count=None)

    run = sync_source(source)

    assert run.outcome == SyncRun.Outcome.FAILED
    row = SourceCapability.objects.get(source=source, name="grants")
    assert (row.state, row.required) == (State.MISSING_PERMISSION, True)
    assert "DelegatedPermissionGrant" in row.hint


def test_test_connection_probes_each_capability_and_writes_no_register_data(sim, client, iam):
    source = make_source(sim, "github")
    sim.edition(github_enterprise_cloud=False)
    client.force_login(iam)
    before = AuditEvent.objects.count()

    with Writes() as writes:
        response = client.post(
            reverse("admin:connectors_identitysource_changelist"),
            {"action": "test_connection", "_selected_action": [source.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert writes.register == []
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.filter(action="source.capabilities_checked", source=source).count() == 1
    text = response.content.decode()
    assert "activity — not in this edition" in text and "Enterprise Cloud" in text
    states = dict(SourceCapability.objects.filter(source=source).values_list("name", "state"))
    assert states == {
        "users": State.AVAILABLE,
        "apps": State.AVAILABLE,
        "grants": State.AVAILABLE,
        "activity": State.NOT_IN_EDITION,
    }


def test_the_test_connection_button_reports_on_the_change_page(sim, client, iam, outsider):
    source = make_source(sim, "okta")
    url = reverse("admin:connectors_identitysource_test_connection", args=[source.pk])
    client.force_login(outsider)
    assert client.post(url).status_code in (302, 403)  # not staff: the admin door refuses
    assert not SourceCapability.objects.exists()
    client.force_login(iam)

    response = client.post(url, follow=True)

    assert response.status_code == 200
    assert "every capability is available (5)" in response.content.decode()
    assert SourceCapability.objects.filter(source=source, state=State.AVAILABLE).count() == 5


def test_the_source_changelist_counts_missing_capabilities_in_constant_queries(
    sim, client, iam, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(iam)
    url = reverse("admin:connectors_identitysource_changelist")
    counts = []
    for n in (1, 4):
        for i in range(len(counts) * 1, n):
            s = make_source(sim, "okta", name=f"okta {n}-{i}")
            SourceCapability.objects.create(source=s, name="devices", state=State.NOT_IN_EDITION)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
