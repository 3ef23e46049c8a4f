"""Governance fixtures: one simulated Entra tenant per test module (tests.governance.simworld)."""

from __future__ import annotations

import pytest

import simulator
from tests.governance.simworld import TENANT
from tests.simtools import quick_idp


@pytest.fixture(scope="module")
def sim_server():
    handle = simulator.start(**TENANT)
    yield handle
    handle.stop()


@pytest.fixture
def sim(sim_server, settings):
    sim_server.reset(**TENANT)
    quick_idp(settings)
    return sim_server
