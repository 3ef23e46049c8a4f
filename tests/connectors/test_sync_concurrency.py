"""Two workers syncing one source at once, on a real database: one runs, the other is refused."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from connectors.models import Grant, SyncRun
from connectors.sync import sync_source
from tests.connectors.conftest import make_source


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_sync_of_the_same_source_is_refused(sim):
    source = make_source(sim, "okta")
    # Hold the first sync in its user listing long enough for the second to arrive.
    sim.faults(provider="okta", kind="slow", delay=1.0, path="/api/v1/users", count=1)
    outcomes: list[str] = []

    def worker() -> None:
        try:
            outcomes.append(sync_source(source).outcome)
        finally:
            connection.close()

    first = threading.Thread(target=worker)
    first.start()
    time.sleep(0.4)
    second = threading.Thread(target=worker)
    second.start()
    first.join(30)
    second.join(30)

    assert sorted(outcomes) == [SyncRun.Outcome.REFUSED, SyncRun.Outcome.SUCCEEDED]
    refused = SyncRun.objects.get(outcome=SyncRun.Outcome.REFUSED)
    assert "already running" in refused.error
    assert Grant.objects.filter(source=source).count() == sim.state()["providers"]["okta"]["grants"]
