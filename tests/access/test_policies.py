"""IAM's policies in the admin: Cedar-validated on save, versioned, audited with the diff, in force at once;
the what-if replay; the schema page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from access.models import DecisionSample, Policy, PolicyVersion
from audit.models import AuditEvent

FORBID_DELETE = """@id("block-delete-tools")
@reason("No deleting through AI in {connector}.")
forbid (principal, action == Lanyard::Action::"tools/call", resource is Lanyard::Tool)
when { resource.name like "delete*" };
"""


def _save(client, data, policy=None):
    url = (
        reverse("admin:access_policy_change", args=[policy.pk])
        if policy
        else reverse("admin:access_policy_add")
    )
    body = {
        "name": "no-deletes",
        "description": "",
        "text": FORBID_DELETE,
        "enabled": "on",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    } | data
    return client.post(url, body)


def test_a_saved_policy_is_in_force_at_the_next_decision(client, iam, ask, world):
    delete = world.question(
        resource={"type": "connector", "id": str(world.connector.pk), "properties": {"tool": "delete_note"}}
    )
    assert ask("evaluation", delete).json()["decision"] is True
    client.force_login(iam)
    response = _save(client, {})
    assert response.status_code == 302, response.content[:2000]
    answer = ask("evaluation", delete).json()
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["block-delete-tools"]
    assert answer["context"]["reason"] == "No deleting through AI in Notes AI."
    assert ask("evaluation", world.question()).json()["decision"] is True  # other tools untouched


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('forbid (principal, action, resource) when { context.connector.colour == "red" };', "colour"),
        ("forbid (principal, action, resource) when {", "unexpected end of input"),
        ('@id("lanyard/forbid-shadow")\nforbid (principal, action, resource);', "share the @id"),
        ('permit (principal, action == Lanyard::Action::"fly", resource);', "fly"),
    ],
)
def test_an_invalid_policy_is_refused_with_cedars_message_and_nothing_saved(client, iam, text, words):
    client.force_login(iam)
    response = _save(client, {"text": text})
    assert response.status_code == 200
    assert b"Cedar: " in response.content
    assert words.encode() in response.content
    assert not Policy.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="policy.").exists()


def test_every_change_is_a_version_and_an_audit_event_with_the_diff(client, iam):
    client.force_login(iam)
    _save(client, {})
    policy = Policy.objects.get()
    changed = FORBID_DELETE.replace('"delete*"', '"drop*"')
    assert _save(client, {"text": changed}, policy).status_code == 302
    assert _save(client, {"text": changed, "enabled": ""}, policy).status_code == 302
    assert list(PolicyVersion.objects.order_by("version").values_list("version", "enabled")) == [
        (1, True),
        (2, True),
        (3, False),
    ]
    created, edited, disabled = AuditEvent.objects.filter(action__startswith="policy.").order_by("sequence")
    assert created.action == "policy.created" and edited.action == "policy.changed"
    assert '-when { resource.name like "delete*" };' in edited.data["diff"]
    assert '+when { resource.name like "drop*" };' in edited.data["diff"]
    assert disabled.data["enabled"] is False and disabled.data["was_enabled"] is True
    assert edited.actor_user_id == iam.pk


def test_policies_cannot_be_deleted_only_disabled(client, iam):
    client.force_login(iam)
    _save(client, {})
    policy = Policy.objects.get()
    assert (
        client.post(reverse("admin:access_policy_delete", args=[policy.pk]), {"post": "yes"}).status_code
        == 403
    )


def test_what_if_replays_recorded_decisions_under_the_draft(client, iam, ask, world):
    for tool in ("search", "delete_note", "delete_all", "summarise"):
        ask(
            "evaluation",
            world.question(
                resource={"type": "connector", "id": str(world.connector.pk), "properties": {"tool": tool}}
            ),
        )
    assert DecisionSample.objects.count() == 4
    client.force_login(iam)
    response = client.post(
        reverse("admin:access_policy_whatif"), {"name": "no-deletes", "text": FORBID_DELETE, "limit": "100"}
    )
    assert response.status_code == 200
    assert response.context["replayed"] == 4
    changed = response.context["changed"]
    assert sorted(r.summary.split(" on ")[0].split()[-1] for r in changed) == ["delete_all", "delete_note"]
    assert all(r.recorded is True and r.draft is False for r in changed)
    assert b"2 of 4 decisions would change" in response.content
    assert not Policy.objects.exists()  # nothing saved


def test_what_if_with_an_invalid_draft_shows_cedars_message(client, iam):
    client.force_login(iam)
    response = client.post(
        reverse("admin:access_policy_whatif"), {"name": "x", "text": "forbid (", "limit": "10"}
    )
    assert b"Cedar:" in response.content


def test_schema_page_shows_the_schema_and_the_defaults(client, iam):
    client.force_login(iam)
    response = client.get(reverse("admin:access_policy_schema"))
    assert response.status_code == 200
    assert b"lanyard/permit-register" in response.content
    assert b"attestation_revoked" in response.content


def test_an_employee_cannot_open_the_policy_pages(client, world):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="emp"))
    assert client.get(reverse("admin:access_policy_whatif")).status_code in (302, 403)  # not staff


def test_the_engine_is_given_only_the_attributes_the_policies_read():
    from access import policies

    book = policies.build([])
    # The default set reads these; it never reads an identity's department or a device's platform.
    assert {
        "active",
        "offboarding",
        "live_grants",
        "provisioned",
        "status",
        "sanctioned",
        "risk",
    } <= book.reads
    assert {"compliant", "known", "owner", "reports_devices", "attestation_revoked"} <= book.reads
    assert not {"department", "platform", "email", "risk_score"} & book.reads
    entity = {
        "uid": {"type": "Lanyard::Identity", "id": "1"},
        "attrs": {"active": True, "department": "x"},
        "parents": [],
    }
    assert policies.for_engine(book, [entity]) == [{**entity, "attrs": {"active": True}}]
    # A policy that reads an attribute (even only with `has`) brings it back.
    custom = policies.build(
        [("dept", "forbid (principal, action, resource) when { principal has department };")]
    )
    assert "department" in custom.reads


def test_a_policy_on_an_attribute_the_defaults_never_read_decides(client, iam, ask, world):
    world.identity.department = "Finance"
    world.identity.save(update_fields=["department"])
    assert ask("evaluation", world.question()).json()["decision"] is True
    client.force_login(iam)
    text = (
        '@id("no-finance")\n@reason("Finance may not use AI connectors yet.")\n'
        'forbid (principal, action, resource) when { principal.department == "Finance" };\n'
    )
    response = _save(client, {"name": "no-finance", "text": text})
    assert response.status_code == 302, response.content[:2000]
    answer = ask("evaluation", world.question()).json()
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["no-finance"]


def test_the_engine_is_given_only_the_context_keys_the_policies_read():
    from access import policies

    book = policies.build([])
    assert book.prune_context
    request = {
        "principal": {"type": "Lanyard::Identity", "id": "1"},
        "action": {"type": "Lanyard::Action", "id": "use"},
        "resource": {"type": "Lanyard::Connector", "id": "2"},
        "context": {
            "connector": {"__entity": {"type": "Lanyard::Connector", "id": "2"}},
            "pep": {"name": "kong", "reports_devices": True},
            "grant": {"__entity": {"type": "Lanyard::Grant", "id": "3"}},
        },
    }
    pruned = policies.request_for_engine(book, request)
    assert pruned["context"] == {k: request["context"][k] for k in ("connector", "pep")}  # records whole
    assert "grant" in request["context"]  # the request itself (what a sample keeps) is untouched
    # A policy naming the key (even only with `has`) brings it back.
    custom = policies.build([("g", "forbid (principal, action, resource) when { context has grant };")])
    assert "grant" in policies.request_for_engine(custom, request)["context"]
    # A policy comparing the whole context: nothing is pruned.
    whole = policies.build([("w", 'forbid (principal, action, resource) when { context == {"a": 1} };')])
    assert not whole.prune_context
    assert policies.request_for_engine(whole, request) == request


def test_a_policy_on_a_context_key_the_defaults_never_read_decides(client, iam, ask, world):
    assert ask("evaluation", world.question()).json()["decision"] is True
    client.force_login(iam)
    text = (
        '@id("grant-needed")\n@reason("Only through a grant.")\n'
        "forbid (principal, action, resource)\n"
        "when { context has grant && context.grant.tenant_wide == false };\n"
    )
    response = _save(client, {"name": "grant-needed", "text": text})
    assert response.status_code == 302, response.content[:2000]
    answer = ask("evaluation", world.question()).json()
    assert answer["decision"] is False
    assert answer["context"]["policies"] == ["grant-needed"]
