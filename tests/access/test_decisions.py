"""Every decision the default policies make, each deny's reason, and revoke-then-decide."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import DecisionCount, DecisionSample
from audit.models import AuditEvent, IngestKey
from audit.services import ingest_key_create
from connectors.models import Connector, ConnectorApp, Grant, Identity, Risk
from connectors.services import grant_revoke, identity_set_status
from governance.models import Attestation, AttestationCampaign, ConnectorRequest
from governance.services import connector_suspend
from tests.factories import (
    ConnectorAppFactory,
    ConnectorFactory,
    ConnectorRequestFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
    UserFactory,
)


def decide(ask, world, **overrides):
    response = ask("evaluation", world.question(**overrides))
    assert response.status_code == 200, response.content
    return response.json()


def test_permit_names_the_policy_that_decided(ask, world):
    answer = decide(ask, world)
    assert answer["decision"] is True
    assert answer["context"]["policies"] == ["lanyard/permit-register"]
    assert answer["context"]["id"]


def test_unknown_identity_is_denied(ask, world):
    answer = decide(ask, world, subject={"type": "identity", "id": "nobody@example.com"})
    assert answer["decision"] is False
    assert "not a person Lanyard knows" in answer["context"]["reason"]
    assert answer["context"]["policies"] == ["lanyard/unknown-identity"]


def test_identity_by_the_idps_id(ask, world):
    subject = {"type": "identity", "id": "okta-ann", "properties": {"device": world.device.external_id}}
    assert decide(ask, world, subject=subject)["decision"] is True


def test_email_matches_case_insensitively(ask, world):
    subject = {
        "type": "identity",
        "id": "ANN@Example.com",
        "properties": {"device": world.device.external_id},
    }
    assert decide(ask, world, subject=subject)["decision"] is True


@pytest.mark.parametrize(
    ("status", "policy", "words"),
    [
        (Connector.Status.SUSPENDED, "lanyard/forbid-connector-suspended", "is suspended by IAM on"),
        (Connector.Status.REVOKED, "lanyard/forbid-connector-revoked", "was revoked by IAM"),
        (
            Connector.Status.DISCOVERED,
            "lanyard/forbid-shadow",
            "not sanctioned by IAM (shadow AI): request it at",
        ),
    ],
)
def test_connector_state_denies_with_its_reason(ask, world, status, policy, words):
    Connector.objects.filter(pk=world.connector.pk).update(status=status)
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert policy in answer["context"]["policies"]
    assert words in answer["context"]["reason"]
    assert answer["context"]["reason_user"] == {"en": answer["context"]["reason"]}


def test_approved_but_not_yet_active_connector_is_not_permitted(ask, world):
    Connector.objects.filter(pk=world.connector.pk).update(status=Connector.Status.APPROVED)
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/no-permit"]
    assert "approved, not active" in answer["context"]["reason"]


@pytest.mark.parametrize("status", [Identity.Status.SUSPENDED, Identity.Status.DEPROVISIONED])
def test_offboarding_identity_is_denied(ask, world, status):
    Identity.objects.filter(pk=world.identity.pk).update(status=status)
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert "lanyard/forbid-offboarding" in answer["context"]["policies"]
    assert f"is {status} at default-source" in answer["context"]["reason"]


def test_person_suspended_at_the_hr_source_is_denied_on_every_identity(ask, world):
    hr = IdentitySourceFactory(name="okta-hr", hr_authoritative=True)
    IdentityFactory(source=hr, email="ann@example.com", person=world.person, status=Identity.Status.SUSPENDED)
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert "is suspended at okta-hr" in answer["context"]["reason"]


def test_the_persons_other_identities_are_read_for_a_mixed_case_address_too(ask, world):
    # Read with the identity itself; a stored mixed-case address is found by the lower(email) path,
    # and its person's other identities with it.
    hr = IdentitySourceFactory(name="okta-hr", hr_authoritative=True)
    IdentityFactory(
        source=hr, email="a.analyst@hr.example", person=world.person, status=Identity.Status.SUSPENDED
    )
    Identity.objects.filter(pk=world.identity.pk).update(email="Ann@Example.com")
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert "is suspended at okta-hr" in answer["context"]["reason"]


def test_ownerless_connector_is_denied_by_default_and_allowed_by_setting(ask, world, settings):
    Connector.objects.filter(pk=world.connector.pk).update(business_owner=None)
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/forbid-no-owner"]
    assert "no business owner" in answer["context"]["reason"]
    settings.LANYARD_PDP_FORBID_OWNERLESS = False
    assert decide(ask, world)["decision"] is True


def test_no_grant_points_to_the_portal(ask, world):
    Grant.objects.filter(pk=world.grant.pk).delete()
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/no-permit"]
    assert f"/requests/new/?connector={world.connector.pk}" in answer["context"]["reason"]
    assert answer["context"]["reason"].startswith("No approved grant for Notes AI")


@pytest.mark.parametrize(
    "change",
    [
        {"held_at": timezone.now(), "hold_reason": "suspended"},
        {"expires_at": timezone.now() - timedelta(minutes=1)},
        {"status": Grant.Status.REVOKING},
        {"status": Grant.Status.EXPIRED},
    ],
)
def test_a_grant_that_is_not_live_does_not_permit(ask, world, change):
    Grant.objects.filter(pk=world.grant.pk).update(**change)
    assert decide(ask, world)["decision"] is False


def test_a_provisioned_request_permits_without_an_idp_grant(ask, world):
    Grant.objects.filter(pk=world.grant.pk).delete()
    user = UserFactory(email="ann@example.com", username="ann")
    Identity.objects.filter(pk=world.identity.pk).update(user=user)
    ConnectorRequestFactory(
        connector=world.connector, requester=user, status=ConnectorRequest.Status.PROVISIONED
    )
    assert decide(ask, world)["decision"] is True


def test_a_request_not_yet_provisioned_does_not_permit(ask, world):
    Grant.objects.filter(pk=world.grant.pk).delete()
    user = UserFactory(email="ann@example.com", username="ann")
    Identity.objects.filter(pk=world.identity.pk).update(user=user)
    ConnectorRequestFactory(
        connector=world.connector, requester=user, status=ConnectorRequest.Status.APPROVED
    )
    assert decide(ask, world)["decision"] is False


def test_a_tenant_wide_consent_covers_everyone_in_that_tenant(ask, world):
    Grant.objects.filter(pk=world.grant.pk).update(
        identity=None, consent_type=Grant.ConsentType.ALL_PRINCIPALS, source=world.identity.source
    )
    assert decide(ask, world)["decision"] is True


def test_a_grant_of_another_identity_of_the_same_person_counts(ask, world):
    github = IdentitySourceFactory(name="github", kind="github")
    other = IdentityFactory(source=github, email="ann@users.noreply.github.com", person=world.person)
    Grant.objects.filter(pk=world.grant.pk).update(identity=other, source=github)
    assert decide(ask, world)["decision"] is True


def _campaign(**kwargs):
    defaults = {
        "name": "Q4 review",
        "status": AttestationCampaign.Status.RUNNING,
        "deadline": timezone.now() + timedelta(days=3),
    }
    return AttestationCampaign.objects.create(**(defaults | kwargs))


def test_attestation_answered_revoke_denies(ask, world):
    manager = IdentityFactory(email="max@example.com")
    Attestation.objects.create(
        campaign=_campaign(),
        grant=world.grant,
        identity=world.identity,
        manager=manager,
        decision=Attestation.Decision.REVOKE,
    )
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/forbid-attestation-revoke"]
    assert 'answered "revoke" for Notes AI' in answer["context"]["reason"]


def test_attestation_past_deadline_under_the_revoke_policy_denies_but_flag_policy_does_not(ask, world):
    manager = IdentityFactory(email="max@example.com")
    past = timezone.now() - timedelta(hours=1)
    flag = _campaign(policy=AttestationCampaign.Policy.FLAG, deadline=past)
    Attestation.objects.create(campaign=flag, grant=world.grant, identity=world.identity, manager=manager)
    assert decide(ask, world)["decision"] is True
    revoke = _campaign(name="strict", policy=AttestationCampaign.Policy.REVOKE, deadline=past)
    Attestation.objects.create(campaign=revoke, grant=world.grant, identity=world.identity, manager=manager)
    assert decide(ask, world)["context"]["policies"] == ["lanyard/forbid-attestation-revoke"]


@pytest.mark.parametrize("risk", [Risk.HIGH, Risk.CRITICAL])
def test_high_risk_needs_a_compliant_device(ask, world, risk):
    Connector.objects.filter(pk=world.connector.pk).update(risk=risk)
    assert decide(ask, world)["decision"] is True
    world.device.compliant = False
    world.device.save()
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/forbid-high-risk-device"]
    assert "only be used from a compliant device" in answer["context"]["reason"]
    assert "is not compliant" in answer["context"]["reason"]


def test_no_device_named(ask, world):
    answer = decide(ask, world, subject={"type": "identity", "id": world.identity.email})
    assert answer["decision"] is False
    assert "named no device" in answer["context"]["reason"]


def test_unknown_device(ask, world):
    subject = {"type": "identity", "id": world.identity.email, "properties": {"device": "DEV-STRANGER"}}
    answer = decide(ask, world, subject=subject)
    assert answer["decision"] is False
    assert "DEV-STRANGER is not in Lanyard's register" in answer["context"]["reason"]


def test_someone_elses_device(ask, world):
    other = DeviceFactory(external_id="DEV-BOB", owner=IdentityFactory(email="bob@example.com"))
    subject = {"type": "identity", "id": world.identity.email, "properties": {"device": other.external_id}}
    answer = decide(ask, world, subject=subject)
    assert answer["decision"] is False
    assert "is not registered to Ann Analyst" in answer["context"]["reason"]


def test_a_key_that_reports_no_devices_is_not_asked_for_one(ask, world):
    key, raw = ingest_key_create(name="lanyard-gateway", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE])
    IngestKey.objects.filter(pk=key.pk).update(reports_devices=False)
    body = world.question(subject={"type": "identity", "id": world.identity.email})
    assert ask("evaluation", body, raw=raw).json()["decision"] is True
    # ... but a high-risk connector still needs a compliant device, which this gateway cannot name.
    Connector.objects.filter(pk=world.connector.pk).update(risk=Risk.HIGH)
    assert ask("evaluation", body, raw=raw).json()["decision"] is False


def test_connector_by_client_id_mcp_server_and_mcp_tool(ask, world):
    app = ConnectorAppFactory(connector=world.connector, source=world.identity.source, client_id="notes.apps")
    by_client = {"type": "connector", "properties": {"client_id": app.client_id}}
    assert decide(ask, world, resource=by_client)["decision"] is True
    by_url = {"type": "mcp_server", "id": world.connector.mcp_server_url}
    assert decide(ask, world, resource=by_url)["decision"] is True
    tool = {
        "type": "mcp_tool",
        "id": "search",
        "properties": {"server": world.connector.mcp_server_url, "tool": "search"},
    }
    assert decide(ask, world, resource=tool)["decision"] is True
    by_url_prop = {"type": "connector", "properties": {"url": world.connector.mcp_server_url}}
    assert decide(ask, world, resource=by_url_prop)["decision"] is True


def test_a_merged_connector_is_decided_as_the_one_it_was_merged_into(ask, world):
    old = ConnectorFactory(
        name="Notes AI (Okta)", status=Connector.Status.MERGED, merged_into=world.connector
    )
    assert decide(ask, world, resource={"type": "connector", "id": str(old.pk)})["decision"] is True


def test_unknown_mcp_server_is_discovered_as_shadow_and_denied(ask, world):
    url = "https://mcp.unknown.example/sse"
    answer = decide(ask, world, resource={"type": "mcp_server", "id": url})
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["lanyard/unknown-connector"]
    assert "recorded it as shadow AI" in answer["context"]["reason"]
    shadow = Connector.objects.get(mcp_server_url=url)
    assert shadow.status == Connector.Status.DISCOVERED
    assert AuditEvent.objects.filter(action="connector.discovered", connector=shadow).count() == 1
    # Asked again: the same shadow connector, now known, denied by the shadow policy; nothing new.
    again = decide(ask, world, resource={"type": "mcp_server", "id": url})
    assert "lanyard/forbid-shadow" in again["context"]["policies"]
    assert Connector.objects.filter(mcp_server_url=url).count() == 1


def test_unknown_client_id_is_discovered_only_with_its_source(ask, world):
    answer = decide(ask, world, resource={"type": "connector", "properties": {"client_id": "mystery"}})
    assert answer["decision"] is False
    assert "not a connector Lanyard knows" in answer["context"]["reason"]
    assert not ConnectorApp.objects.filter(client_id="mystery").exists()
    source = world.identity.source.name
    resource = {"type": "connector", "properties": {"client_id": "mystery", "source": source}}
    decide(ask, world, resource=resource)
    assert ConnectorApp.objects.get(client_id="mystery").connector.status == Connector.Status.DISCOVERED


def test_discoveries_are_capped_per_key(ask, world, settings):
    settings.LANYARD_PDP_MAX_DISCOVERIES_PER_HOUR = 2
    for n in range(4):
        decide(ask, world, resource={"type": "mcp_server", "id": f"https://mcp{n}.flood.example/"})
    assert Connector.objects.filter(mcp_server_url__contains="flood.example").count() == 2


def test_every_deny_is_on_the_audit_chain(ask, world):
    Connector.objects.filter(pk=world.connector.pk).update(status=Connector.Status.SUSPENDED)
    answer = decide(ask, world)
    event = AuditEvent.objects.get(action="access.denied")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor_identity_id == world.identity.pk
    assert event.connector_id == world.connector.pk
    assert event.device_id == world.device.pk
    assert event.ingest_key_id == world.key.pk
    assert event.correlation_id == answer["context"]["id"]
    assert event.data["action"] == "tools/call"
    assert event.data["tool"] == "search"
    assert event.data["reason"] == answer["context"]["reason"]
    assert event.data["policies"] == ["lanyard/forbid-connector-suspended"]


def test_permits_are_counted_and_move_the_usage_times(ask, world):
    Grant.objects.filter(pk=world.grant.pk).update(last_used_at=None)
    decide(ask, world)
    decide(ask, world)
    Connector.objects.filter(pk=world.connector.pk).update(status=Connector.Status.SUSPENDED)
    decide(ask, world)
    count = DecisionCount.objects.get(connector=world.connector)
    assert (count.permits, count.denies) == (2, 1)
    world.grant.refresh_from_db()
    world.device.refresh_from_db()
    assert world.grant.last_used_at is not None
    assert world.device.last_seen is not None
    assert not AuditEvent.objects.filter(action="access.permitted").exists()
    assert DecisionSample.objects.count() == 3


def test_permit_counts_are_gathered_then_flushed_together(ask, world, settings):
    from access import recording

    settings.LANYARD_PDP_FLUSH_SECONDS = 3600
    recording.flush()
    for _ in range(5):
        decide(ask, world)
    assert not DecisionCount.objects.exists()
    recording.flush()
    assert DecisionCount.objects.get(connector=world.connector).permits == 5


@pytest.mark.django_db(transaction=True)  # the flusher thread has its own connection: it must see the world
def test_due_figures_are_written_by_the_flusher_thread_after_the_answer(ask, world, settings, monkeypatch):
    import threading
    import time

    from access import recording

    writers: list[str] = []
    original = recording._flush

    def spy() -> None:
        writers.append(threading.current_thread().name)
        original()

    monkeypatch.setattr(recording, "_flush", spy)
    settings.LANYARD_PDP_FLUSH_SECONDS = 0.01
    time.sleep(0.02)
    decide(ask, world)  # due: the request wakes the thread and answers without writing
    deadline = time.monotonic() + 10
    while not DecisionCount.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert DecisionCount.objects.get(connector=world.connector).permits == 1
    assert writers and set(writers) == {"pdp-flush"}
    assert DecisionSample.objects.count() == 1


# --- revoke, then decide: the very next decision denies ---------------------------------------------


def test_revoke_then_decide(ask, world, iam):
    assert decide(ask, world)["decision"] is True
    grant_revoke(grant=world.grant, actor=iam, reason="left the project")
    assert decide(ask, world)["decision"] is False


def test_suspend_connector_then_decide(ask, world, iam):
    assert decide(ask, world)["decision"] is True
    connector_suspend(connector=world.connector, actor=iam, reason="incident")
    answer = decide(ask, world)
    assert answer["decision"] is False
    assert "is suspended by IAM" in answer["context"]["reason"]


def test_suspend_identity_then_decide(ask, world, iam):
    assert decide(ask, world)["decision"] is True
    identity_set_status(identity=world.identity, status=Identity.Status.SUSPENDED, actor=iam, reason="HR")
    assert decide(ask, world)["decision"] is False


# --- query counts ------------------------------------------------------------------------------------


def _queries(ask, body, path="evaluation") -> int:
    with CaptureQueriesContext(connection) as queries:
        response = ask(path, body)
    assert response.status_code == 200
    return len(queries)


def test_one_decision_reads_a_small_constant_number_of_queries(ask, world, settings):
    settings.LANYARD_PDP_FLUSH_SECONDS = 3600  # the flush's writes are not the decision's
    ask("evaluation", world.question())  # warm the policy set and the HR ranking
    with CaptureQueriesContext(connection) as queries:
        assert ask("evaluation", world.question()).json()["decision"] is True
    statements = [q["sql"] for q in queries.captured_queries]
    # The key with the policy generation; the identity with the person's other identities; the
    # connector; the grants (with their reviews); the device.
    assert len(statements) == 5, statements
    assert "access_policyversion" in statements[0] and "audit_ingestkey" in statements[0]
    assert not any("access_policyversion" in sql for sql in statements[1:])


def test_a_batch_costs_the_same_queries_as_one(ask, world, settings):
    settings.LANYARD_PDP_FLUSH_SECONDS = 3600
    others = [ConnectorFactory(business_owner=world.owner) for _ in range(20)]
    people = [IdentityFactory() for _ in range(20)]
    for c, p in zip(others, people, strict=True):
        GrantFactory(connector=c, identity=p)
        DeviceFactory(owner=p)
    ask("evaluation", world.question())

    def batch(n):
        items = [
            {
                "subject": {
                    "type": "identity",
                    "id": p.email,
                    "properties": {"device": p.devices.get().external_id},
                },
                "resource": {"type": "connector", "id": str(c.pk)},
            }
            for c, p in list(zip(others, people, strict=True))[:n]
        ]
        return {"action": {"name": "use"}, "evaluations": items}

    one, twenty = _queries(ask, batch(1), "evaluations"), _queries(ask, batch(20), "evaluations")
    assert one == twenty
    answers = ask("evaluations", batch(20)).json()["evaluations"]
    assert all(a["decision"] for a in answers)


def test_the_dashboard_shows_decisions_beside_activity(client, iam, ask, world):
    decide(ask, world)
    Connector.objects.filter(pk=world.connector.pk).update(status=Connector.Status.SUSPENDED)
    decide(ask, world)
    client.force_login(iam)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/audit/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Access decisions, last 30 days" in html
    assert "1 permitted, 1 denied" in html
    assert 'href="/audit/events/?action=access.denied"' in html
    baseline = len(queries)
    for _ in range(5):
        decide(
            ask,
            world,
            resource={"type": "connector", "id": str(ConnectorFactory(business_owner=world.owner).pk)},
        )
    with CaptureQueriesContext(connection) as queries:
        client.get("/audit/")
    assert len(queries) == baseline
