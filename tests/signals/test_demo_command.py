"""``setup_simulator_signals`` (make run): suspending a person at the simulator revokes their grants."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from connectors.models import Grant, Identity
from signals.models import ReceiverStream

from .conftest import holder

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_streams_turn_a_suspension_at_the_idp_into_revoked_grants(sim, synced, live_server):
    okta, google = synced("okta"), synced("google")
    call_command("setup_simulator_signals", url=sim.url, receiver=live_server.url)
    call_command("setup_simulator_signals", url=sim.url, receiver=live_server.url)  # idempotent
    assert ReceiverStream.objects.count() == 2
    person = holder(okta)
    granted = list(Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE))

    pushed = sim.mutate("set_status", email=person.email, status="suspended")["ssf"]

    # One SET per registered transmitter; Google's is about an identity of the Google source.
    assert sorted(p["status"] for p in pushed) == [202, 202]
    person.refresh_from_db()
    assert person.status == Identity.Status.SUSPENDED
    assert not Grant.objects.filter(pk__in=[g.pk for g in granted], status=Grant.Status.ACTIVE).exists()
    assert not any(sim.grant_exists("okta", g.external_id) for g in granted)
    # The same person in Google Workspace: Google's RISC SET names them by Google account id.
    assert Identity.objects.get(source=google, email__iexact=person.email).status == Identity.Status.SUSPENDED
