"""The simulated tenant for the operations tests, and a reader for the /metrics exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

import simulator
from tests.simtools import quick_idp

TENANT = {"seed": 11, "identities": 12, "grants": 30, "events": 10}
METRICS_TOKEN = "metrics-bearer-token-for-tests-0f3c9a"


@pytest.fixture(scope="session")
def sim_server():
    handle = simulator.spawn(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server, settings):
    sim_server.reset(**TENANT)
    quick_idp(settings, LANYARD_REVOKE_MAX_RETRIES=1)
    return sim_server


@pytest.fixture
def scrape(client, settings):
    """Return a function that scrapes /metrics with the token and gives {(name, labels): value}."""
    settings.LANYARD_METRICS_TOKEN = METRICS_TOKEN

    def read() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return read


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(data, name: str, **labels) -> float:
    return data.get((name, tuple(sorted(labels.items()))), 0.0)
