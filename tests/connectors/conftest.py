"""The simulated tenant, started once for this folder and reset before each test, and its sources."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import simulator
from connectors.models import IdentitySource
from tests.simtools import make_source, quick_idp

# Small enough for a fast suite, big enough that every provider has several pages, shadow apps,
# suspended and deprovisioned people and a tenant-wide Entra consent.
TENANT = {"seed": 7, "identities": 16, "grants": 60, "events": 30}
PROVIDERS = {
    "google_workspace": "google",
    "microsoft_entra": "entra",
    "okta": "okta",
    "github": "github",
}
REGISTER_TABLES = (
    "connectors_identity",
    "connectors_device",
    "connectors_connector",
    "connectors_connectorapp",
    "connectors_grant",
)


@pytest.fixture(scope="session")
def sim_server():
    handle = simulator.spawn(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server):
    """The simulator with a fresh tenant and no fault switches."""
    sim_server.reset(**TENANT)
    return sim_server


@pytest.fixture(autouse=True)
def _quick_idp(settings):
    # Retries and timeouts short enough that fault tests take milliseconds, not the production seconds.
    quick_idp(
        settings,
        LANYARD_IDP_TIMEOUT=1.0,
        LANYARD_IDP_MAX_RETRIES=3,
        LANYARD_REVOKE_MAX_RETRIES=2,
        LANYARD_SYNC_PAGE_SIZE=25,
    )


@pytest.fixture(params=list(PROVIDERS))
def source(request, sim, db) -> IdentitySource:
    """One source per provider (the test runs once for each)."""
    return make_source(sim, request.param)


def provider(source: IdentitySource) -> str:
    return PROVIDERS[source.kind]


class Writes(CaptureQueriesContext):
    """Capture queries; ``register`` lists INSERT/UPDATE/DELETE statements on the register's tables."""

    def __init__(self):
        super().__init__(connection)

    @property
    def statements(self) -> int:
        """Queries other than savepoints (whose number depends on the nesting of transactions)."""
        return sum(
            1
            for q in self.captured_queries
            if not q["sql"].lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))
        )

    @property
    def register(self) -> list[str]:
        out = []
        for q in self.captured_queries:
            sql = q["sql"]
            head = sql.lstrip().split(None, 1)[0].upper()
            if head in ("INSERT", "UPDATE", "DELETE") and any(
                re.search(rf'\b"?{t}"?\b', sql[:200]) for t in REGISTER_TABLES
            ):
                out.append(sql[:200])
        return out
