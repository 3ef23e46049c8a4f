"""Lanyard's own gateway as a policy enforcement point of Lanyard's decision point, over real HTTP.

The gateway's PDP client (``gateway.pdp``) asks the live server with a PEP key that names no devices,
the way ``make run`` wires them; a revocation is seen by the very next question.
"""

from __future__ import annotations

import pytest

from audit.models import IngestKey
from audit.services import ingest_key_create
from connectors.models import Risk
from connectors.services import grant_revoke
from gateway import pdp
from gateway.services import connector_resource, subject_for
from tests.factories import UserFactory


@pytest.fixture
def wired(world, live_server, settings):
    key, raw = ingest_key_create(
        name="Lanyard gateway", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE], reports_devices=False
    )
    settings.LANYARD_PDP_URL = live_server.url
    settings.LANYARD_PDP_KEY = raw
    user = UserFactory(username="ann", email="ann@example.com")
    world.identity.user = user
    world.identity.save()
    return user


def ask(world, user, action="connect", tool=None):
    resource = connector_resource(world.connector)
    if tool:
        resource["properties"]["tool"] = tool
    return pdp.evaluate(subject=subject_for(user, world.identity), action={"name": action}, resource=resource)


def test_the_gateway_asks_lanyard_and_a_revocation_is_seen_at_once(world, wired, iam):
    assert ask(world, wired) == pdp.Decision(True, "")
    assert ask(world, wired, "tools/call", "search").allowed
    grant_revoke(grant=world.grant, actor=iam, reason="left the project")
    decision = ask(world, wired, "tools/call", "search")
    assert decision.allowed is False
    assert decision.reason.startswith("No approved grant for Notes AI: request it at ")


def test_high_risk_through_a_gateway_that_names_no_device_is_denied_with_the_reason(world, wired):
    world.connector.risk = Risk.HIGH
    world.connector.save()
    decision = ask(world, wired)
    assert decision.allowed is False
    assert "only be used from a compliant device (the gateway named no device)" in decision.reason


def test_a_wrong_key_fails_closed(world, wired, settings):
    settings.LANYARD_PDP_KEY = "lny_wrong_key"
    decision = ask(world, wired)
    assert decision.allowed is False
    assert "HTTP 401" in decision.reason
