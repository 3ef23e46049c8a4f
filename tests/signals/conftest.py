"""A simulated tenant whose Okta and Google SSF transmitters push SETs to a live Lanyard receiver."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import simulator
from connectors.models import Grant, Identity, IdentitySource
from connectors.sync.run import sync_source
from signals import jwks
from signals.models import ReceiverStream
from tests.simtools import make_source, quick_idp

TENANT = {"seed": 9, "identities": 30, "grants": 60, "events": 0}
AUDIENCE = "https://lanyard.test/ssf"
KINDS = {"okta": "okta", "google": "google_workspace"}


@pytest.fixture(scope="module")
def sim_server():
    handle = simulator.start(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server, settings):
    sim_server.reset(**TENANT)
    quick_idp(settings)
    jwks.clear()
    yield sim_server
    jwks.clear()


@pytest.fixture
def synced(sim, transactional_db) -> Callable[[str], IdentitySource]:
    """Sync one simulated provider into the register (identities and grants from the simulator)."""

    def sync(provider: str) -> IdentitySource:
        source = make_source(sim, KINDS[provider])
        run = sync_source(source)
        assert run.outcome == "succeeded", run.error
        return source

    return sync


def make_stream(sim, source: IdentitySource, provider: str, **fields) -> ReceiverStream:
    issuer = sim.ssf_issuer(provider)
    return ReceiverStream.objects.create(
        name=fields.pop("name", f"{provider} SSF"),
        source=source,
        issuer=issuer,
        jwks_url=f"{issuer}/jwks",
        configuration_url=f"{issuer}/.well-known/ssf-configuration",
        audience=AUDIENCE,
        **fields,
    )


def push_url(live_server, stream: ReceiverStream) -> str:
    return f"{live_server.url}/ssf/receive/{stream.pk}"


def holder(source: IdentitySource) -> Identity:
    """An active identity of the source holding at least one active, per-user grant."""
    grant = (
        Grant.objects.filter(
            source=source,
            status=Grant.Status.ACTIVE,
            consent_type=Grant.ConsentType.PRINCIPAL,
            identity__status=Identity.Status.ACTIVE,
            identity__is_service=False,
        )
        .select_related("identity")
        .order_by("pk")
        .first()
    )
    assert grant is not None
    return grant.identity
