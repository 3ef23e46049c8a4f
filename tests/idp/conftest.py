"""One simulated tenant for the whole IdP test session, and adapters wired to it with fast backoff."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import simulator
from connectors.idp import get_adapter
from connectors.idp.base import IdpConfig

# provider prefix in the simulator -> source kind in Lanyard
KINDS = {
    "google": "google_workspace",
    "entra": "microsoft_entra",
    "okta": "okta",
    "github": "github",
}
PROVIDERS = list(KINDS)
SIZE = {"identities": 40, "grants": 160, "seed": 3}

FAST = {
    "max_retries": 3,
    "backoff_base": 0.001,
    "backoff_max": 0.01,
    "timeout": 2.0,
    "concurrency": 4,
    "page_size": 25,  # small pages so that every listing spans several requests
}


@pytest.fixture(scope="session")
def sim() -> Iterator[simulator.SimHandle]:
    handle = simulator.start(**SIZE)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


@pytest.fixture
def fresh_sim(sim: simulator.SimHandle) -> simulator.SimHandle:
    """The session simulator, reset to its seeded state (use it in tests that change the tenant)."""
    sim.reset(**SIZE)
    return sim


@pytest.fixture
def make_config(sim: simulator.SimHandle) -> Callable[..., IdpConfig]:
    def make(provider: str, **overrides) -> IdpConfig:
        return simulator.idp_config(sim.url, KINDS[provider], seed=SIZE["seed"], **{**FAST, **overrides})

    return make


@pytest.fixture
def make_adapter(make_config: Callable[..., IdpConfig]) -> Iterator[Callable]:
    opened = []

    def make(provider: str, **overrides):
        adapter = get_adapter(make_config(provider, **overrides))
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        adapter.close()


def flatten(pages) -> list:
    return [item for page in pages for item in page]
