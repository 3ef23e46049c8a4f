"""Usage roll-up: grants' and devices' usage times follow the AI activity recorded in the chain."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from activity import tasks, usage
from activity.usage import usage_rollup
from audit.models import UsageRollup
from audit.services import ingest_key_create, record, record_batch
from connectors.models import Grant
from connectors.services import grants_apply_expiry_policy
from tests.factories import DeviceFactory, GrantFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@pytest.fixture
def key(iam):
    return ingest_key_create(name="gateway", actor=iam)[0]


def activity(key, grant=None, device=None, at=T0, n=[0]):  # noqa: B006 - a counter for unique ids
    n[0] += 1
    return {
        "action": "ai.tool_call",
        "grant": grant,
        "device": device,
        "connector": grant.connector if grant else None,
        "occurred_at": at,
        "ingest_key": key,
        "external_id": f"{key.prefix}:rollup-{n[0]}",
    }


def test_the_latest_use_of_each_grant_and_device_is_written_once(key):
    grant, other = GrantFactory(last_used_at=None), GrantFactory(last_used_at=None)
    device = DeviceFactory(last_seen=None)
    record_batch(
        [activity(key, grant, device, T0 + timedelta(minutes=m)) for m in (3, 1, 7, 2)]
        + [activity(key, other, None, T0)]
    )

    result = usage_rollup()

    grant.refresh_from_db(), other.refresh_from_db(), device.refresh_from_db()
    assert grant.last_used_at == T0 + timedelta(minutes=7)
    assert other.last_used_at == T0
    assert device.last_seen == T0 + timedelta(minutes=7)
    assert (result.grants, result.devices, result.events) == (2, 1, 5 + 1)  # + ingest_key.created
    assert UsageRollup.objects.get().sequence == 6


def test_times_only_move_forward_and_a_second_run_reads_nothing(key):
    later = T0 + timedelta(days=1)
    grant = GrantFactory(last_used_at=later)
    record_batch([activity(key, grant, None, T0)])

    assert usage_rollup().grants == 0
    grant.refresh_from_db()
    assert grant.last_used_at == later
    assert usage_rollup().events == 0


def test_only_gateway_activity_counts_as_use(key, iam):
    grant = GrantFactory(last_used_at=None)
    record("grant.revoked", actor=iam, grant=grant, target=grant)  # a decision about it, not a use

    usage_rollup()

    grant.refresh_from_db()
    assert grant.last_used_at is None


def test_a_long_backlog_is_read_in_slices(key, monkeypatch):
    monkeypatch.setattr(usage, "SLICE", 3)
    grants = GrantFactory.create_batch(4, last_used_at=None)
    record_batch([activity(key, g, None, T0 + timedelta(minutes=i)) for i, g in enumerate(grants * 2)])

    assert usage_rollup(max_slices=1).events == 3
    result = usage_rollup()

    assert result.events == 9 - 3
    for i, grant in enumerate(grants):
        grant.refresh_from_db()
        assert grant.last_used_at == T0 + timedelta(minutes=4 + i)


def test_a_failed_slice_rolls_back_with_its_mark_and_is_read_again(key, monkeypatch):
    grant, device = GrantFactory(last_used_at=None), DeviceFactory(last_seen=None)
    record_batch([activity(key, grant, device, T0)])
    devices_sql = usage._advance_sql(usage.Device, "last_seen", "device")

    def conflict(execute, sql, params, many, context):
        if sql == devices_sql:
            raise OperationalError("deadlock detected")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(conflict), pytest.raises(OperationalError):
        usage_rollup()
    grant.refresh_from_db()
    assert grant.last_used_at is None  # the grant UPDATE rolled back with the slice
    assert not UsageRollup.objects.filter(sequence__gt=0).exists()

    usage_rollup()
    grant.refresh_from_db(), device.refresh_from_db()
    assert grant.last_used_at == device.last_seen == T0


def test_the_task_logs_a_conflict_and_leaves_the_events_for_the_next_run(key, monkeypatch, caplog):
    def conflict(**kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(usage, "usage_rollup", conflict)
    assert tasks.rollup_usage() == {"events": 0, "grants": 0, "devices": 0}
    assert "usage roll-up hit a database conflict" in caplog.text


def test_ingest_asks_for_one_roll_up_at_a_time(monkeypatch, settings):
    settings.LANYARD_USAGE_ROLLUP_SECONDS = 5
    cache.delete(usage.SCHEDULED_KEY)
    sent = []
    monkeypatch.setattr(tasks.rollup_usage, "apply_async", lambda **kw: sent.append(kw))

    usage.schedule_rollup()
    usage.schedule_rollup()
    assert sent == [{"countdown": 5}]

    # The task clears the request as it starts, so a batch committed during the run asks again.
    monkeypatch.setattr(usage, "usage_rollup", lambda **kw: usage.RollupResult())
    tasks.rollup_usage()
    usage.schedule_rollup()
    assert len(sent) == 2
    cache.delete(usage.SCHEDULED_KEY)


def test_a_broker_failure_forgets_the_request_so_the_next_batch_asks_again(monkeypatch):
    cache.delete(usage.SCHEDULED_KEY)

    def down(**kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.rollup_usage, "apply_async", down)
    with pytest.raises(ConnectionError):
        usage.schedule_rollup()
    assert cache.get(usage.SCHEDULED_KEY) is None


def test_the_expiry_policy_rolls_up_first_so_a_grant_just_used_is_kept(key, settings):
    settings.LANYARD_STALE_GRANT_DAYS = 30
    now = timezone.now()
    unused = now - timedelta(days=40)
    grant = GrantFactory(source=None, kind=Grant.Kind.PORTAL_CREDENTIAL, last_used_at=unused)
    record_batch([activity(key, grant, None, now - timedelta(minutes=1))])

    summary = grants_apply_expiry_policy()

    grant.refresh_from_db()
    assert summary.stale.revoked == 0
    assert grant.status == Grant.Status.ACTIVE


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_second_roll_up_skips_while_one_holds_the_mark(iam):
    assert connection.vendor == "postgresql", "the services pass runs on PostgreSQL (row locks)"
    key = ingest_key_create(name="gateway", actor=iam)[0]
    grant = GrantFactory(last_used_at=None)
    record_batch([activity(key, grant, None, T0)])
    usage_rollup()  # creates the mark
    record_batch([activity(key, grant, None, T0 + timedelta(hours=1))])
    holding, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            UsageRollup.objects.select_for_update().get(pk=1)
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        assert usage_rollup().busy
    finally:
        release.set()
        thread.join(10)
    assert usage_rollup().grants == 1


@pytest.mark.services
def test_a_real_worker_rolls_usage_up_after_an_ingested_batch(transactional_db, client, iam, settings):
    import json
    import time

    from celery.contrib.testing.worker import start_worker

    from lanyard.celery import app
    from tests.factories import ConnectorAppFactory, IdentityFactory, IdentitySourceFactory

    assert settings.CELERY_BROKER_URL.startswith("redis://"), "the services pass runs on Redis"
    settings.LANYARD_USAGE_ROLLUP_SECONDS = 1
    cache.delete(usage.SCHEDULED_KEY)
    google = IdentitySourceFactory(name="Acme Google", kind="google_workspace")
    identity = IdentityFactory(source=google, email="emma@example.com")
    app_ = ConnectorAppFactory(source=google, client_id="notes.apps.googleusercontent.com")
    grant = GrantFactory(connector=app_.connector, source=google, identity=identity, last_used_at=None)
    _, raw = ingest_key_create(name="gateway", actor=iam)
    event = {
        "id": "evt-worker-1",
        "time": "2026-11-29T10:15:00Z",
        "actor": {"email": "emma@example.com"},
        "connector": {"source": "Acme Google", "client_id": "notes.apps.googleusercontent.com"},
        "action": "tool_call",
    }
    app.conf.task_always_eager = False
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
        ):
            response = client.post(
                "/api/v1/events",
                json.dumps({"events": [event]}),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            assert response.status_code == 200, response.content
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                grant.refresh_from_db()
                if grant.last_used_at is not None:
                    break
                time.sleep(0.2)
    finally:
        app.conf.task_always_eager = True
    assert grant.last_used_at == datetime(2026, 11, 29, 10, 15, tzinfo=UTC)
    assert UsageRollup.objects.get().sequence > 0
