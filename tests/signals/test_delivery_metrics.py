"""SET delivery lag in /metrics: from the outbox row written with the change to the receiver's 202."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from connectors.services import grant_revoke

from .test_transmitter import create_stream, portal_grant, tx  # noqa: F401  (tx is the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def _lag(delivery: str) -> tuple[float, float]:
    labels = {"delivery": delivery}
    count = REGISTRY.get_sample_value("lanyard_ssf_delivery_lag_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("lanyard_ssf_delivery_lag_seconds_sum", labels) or 0.0
    return count, total


def test_a_pushed_set_observes_its_delivery_lag(tx):  # noqa: F811
    create_stream(tx)
    count, total = _lag("push")
    grant_revoke(grant=portal_grant(), actor="system", reason="lag")
    assert len(tx["push"].received) == 1
    new_count, new_total = _lag("push")
    assert new_count == count + 1
    assert 0 <= new_total - total < 30


def test_a_polled_set_observes_its_delivery_lag_once(tx):  # noqa: F811
    sid = create_stream(tx, delivery={"method": "urn:ietf:rfc:8936"})["stream_id"]
    grant_revoke(grant=portal_grant(), actor="system", reason="lag")
    count, _ = _lag("poll")
    for _ in range(2):  # served twice until acknowledged: delivered (and observed) once
        answer = tx["api"].post(f"/ssf/poll/{sid}", json={"maxEvents": 10, "returnImmediately": True})
        assert len(answer.json()["sets"]) == 1
    assert _lag("poll")[0] == count + 1
