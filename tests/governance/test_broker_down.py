"""With the broker unreachable, an accepted step says so and is left for the sweep, never a 500."""

from __future__ import annotations

import logging
import os

import pytest
from django.urls import reverse

from connectors.models import Grant, Identity
from connectors.sync import sync_source
from connectors.tasks import sweep_revoking
from governance.models import ConnectorRequest
from governance.services import request_create, request_decide_iam, request_decide_owner
from governance.tasks import sweep_provisioning
from lanyard.celery import app
from tests.governance.simworld import PROVIDER, entra_world
from tests.simtools import make_source

# Real commits, as in production (no ATOMIC_REQUESTS): the on-commit enqueue runs inside the view.
pytestmark = pytest.mark.django_db(transaction=True)

ACCEPTED = "accepted; it will reach the identity provider when the background worker is back"
CLOSED_PORT = "redis://:s3cret-broker-password@127.0.0.1:1/0"


def _drop_connections() -> None:
    # The app caches its pools for the broker it first met; kombu keeps one pool per broker URL.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_down(monkeypatch):
    """No eager tasks and a broker URL on a closed local port; back to eager afterwards."""
    saved = {
        k: app.conf[k]
        for k in ("broker_url", "broker_write_url", "task_always_eager", "task_publish_retry_policy")
    }
    saved_env = os.environ.get("CELERY_BROKER_URL")
    _drop_connections()
    # Celery reads CELERY_BROKER_URL from the environment before its own setting (the services pass sets it).
    monkeypatch.setenv("CELERY_BROKER_URL", CLOSED_PORT)
    # Once a task has been sent, Celery has copied the broker URL into broker_write_url: set both.
    app.conf.broker_url = app.conf.broker_write_url = CLOSED_PORT
    app.conf.task_always_eager = False
    app.conf.task_publish_retry_policy = {"max_retries": 0}

    def back() -> None:
        _drop_connections()
        if saved_env is None:
            monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        else:
            monkeypatch.setenv("CELERY_BROKER_URL", saved_env)
        app.conf.update(saved)

    yield back
    back()


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def own_grant(sim, employee):
    """An Okta grant on the simulator whose identity is the employee."""
    source = make_source(sim, "okta")
    assert sync_source(source).outcome == "succeeded"
    grant = (
        Grant.objects.filter(
            source=source, status=Grant.Status.ACTIVE, identity__status=Identity.Status.ACTIVE
        )
        .select_related("identity")
        .order_by("pk")
        .first()
    )
    Identity.objects.filter(pk=grant.identity_id).update(user=employee)
    return grant


def test_a_revocation_with_the_broker_down_is_accepted_and_the_sweep_finishes_it(
    client, employee, own_grant, broker_down, caplog, sim
):
    client.force_login(employee)
    with caplog.at_level(logging.WARNING, logger="connectors.queueing"):
        response = client.post(reverse("portal:grant_revoke", args=[own_grant.pk]), follow=True)

    assert response.status_code == 200
    assert any(ACCEPTED in m.lower() for m in _messages(response)), _messages(response)
    own_grant.refresh_from_db()
    assert own_grant.status == Grant.Status.REVOKING
    assert "could not queue revocation" in caplog.text
    assert "s3cret" not in caplog.text

    broker_down()  # the broker is back (eager again): the sweep takes the grant at once
    assert sweep_revoking() == 1
    own_grant.refresh_from_db()
    assert own_grant.status == Grant.Status.REVOKED
    assert sim.grant_exists("okta", own_grant.external_id) is False
    assert sweep_revoking() == 0


def test_the_admin_revoke_action_with_the_broker_down_reports_it_pending(client, iam, own_grant, broker_down):
    client.force_login(iam)
    response = client.post(
        reverse("admin:connectors_connector_changelist"),
        {
            "action": "revoke",
            "_selected_action": [own_grant.connector_id],
            "apply": "1",
            "reason": "Leak",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert any(ACCEPTED in m.lower() for m in _messages(response)), _messages(response)
    revoking = Grant.objects.filter(connector_id=own_grant.connector_id, status=Grant.Status.REVOKING)
    assert revoking.exists()
    page = client.get(reverse("admin:connectors_grant_change", args=[revoking.first().pk]))
    assert page.status_code == 200 and b"Revoking" in page.content

    broker_down()
    sweep_revoking()
    assert not revoking.exists()


def test_provisioning_with_the_broker_down_is_accepted_and_the_sweep_queues_it_again(
    sim, client, employee, owner, iam, iam2, broker_down
):
    world = entra_world(sim, employee=employee, owner=owner)
    req = request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.EXISTING,
        connector=world.connector,
        justification="Transcripts of my customer calls.",
        scopes=["Calendars.Read"],
    )
    request_decide_owner(request=req, actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam, approve=True)
    client.force_login(iam2)

    response = client.post(reverse("portal:request_provision", args=[req.pk]), follow=True)

    assert response.status_code == 200
    assert any(ACCEPTED in m.lower() for m in _messages(response)), _messages(response)
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.APPROVED and req.provision_data.get("unqueued_at")

    broker_down()
    assert sweep_provisioning() == 1
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.PROVISIONED
    assert sim.grant_exists(PROVIDER, Grant.objects.get(connector=world.connector).external_id)
    assert sweep_provisioning() == 0
