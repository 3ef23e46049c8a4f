"""The transmitter's outbox on the health page and in /metrics: overdue SETs fail, dead ones warn."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from signals.models import OutboxSet, TransmitterReceiver, TransmitterStream
from tests.ops.conftest import value

pytestmark = pytest.mark.django_db


def _stream(status=TransmitterStream.Status.ENABLED) -> TransmitterStream:
    receiver = TransmitterReceiver.objects.create(
        name=f"gw-{uuid.uuid4().hex[:6]}", audience="https://gw.example", prefix=uuid.uuid4().hex[:12]
    )
    return TransmitterStream.objects.create(
        receiver=receiver, endpoint_url="https://gw.example/ssf", status=status
    )


def _row(stream, *, state=OutboxSet.State.PENDING, due_ago=timedelta(0), age=timedelta(0)) -> OutboxSet:
    now = timezone.now()
    row = OutboxSet.objects.create(
        stream=stream,
        jti=uuid.uuid4().hex,
        event_type="https://schemas.openid.net/secevent/caep/event-type/session-revoked",
        claims={},
        state=state,
        next_attempt_at=now - due_ago,
    )
    OutboxSet.objects.filter(pk=row.pk).update(created_at=now - age)
    return row


def _check(client, iam) -> dict:
    client.force_login(iam)
    checks = {c["check"]: c for c in client.get("/ops/health/?format=json").json()["checks"]}
    return checks["SignalsOutbox"]


def test_a_quiet_outbox_passes(client, iam, settings):
    settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS = 30
    stream = _stream()
    _row(stream, due_ago=timedelta(seconds=10), age=timedelta(seconds=10))  # in flight: not overdue
    _row(stream, state=OutboxSet.State.DELIVERED, due_ago=timedelta(hours=1))
    assert _check(client, iam)["ok"]


def test_sets_overdue_by_two_sweeps_fail_with_what_to_do(client, iam, settings):
    settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS = 30
    stream = _stream()
    _row(stream, due_ago=timedelta(minutes=3), age=timedelta(minutes=12))
    _row(stream, due_ago=timedelta(minutes=2), age=timedelta(minutes=2))
    # A paused stream holds its SETs on purpose: never overdue.
    _row(_stream(TransmitterStream.Status.PAUSED), due_ago=timedelta(hours=2), age=timedelta(hours=2))
    check = _check(client, iam)
    assert check["severity"] == "unavailable"
    assert check["message"].startswith("2 SET(s) for enabled streams are overdue by more than 60 s")
    assert "the oldest written 12 min ago" in check["message"]
    assert "`default` queue" in check["message"]


def test_dead_sets_are_a_warning_pointing_at_the_replay(client, iam):
    _row(_stream(), state=OutboxSet.State.DEAD)
    check = _check(client, iam)
    assert check["severity"] == "warning"
    assert check["message"].startswith("1 SET(s) are dead")
    assert "replay" in check["message"]


def test_outbox_gauges_are_read_at_scrape_time(scrape, settings):
    settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS = 30
    stream = _stream()
    _row(stream, due_ago=timedelta(minutes=5), age=timedelta(minutes=5))
    _row(stream)
    _row(stream, state=OutboxSet.State.DEAD)
    data = scrape()
    assert value(data, "lanyard_ssf_outbox_sets", state="pending") == 2
    assert value(data, "lanyard_ssf_outbox_sets", state="overdue") == 1
    assert value(data, "lanyard_ssf_outbox_sets", state="dead") == 1
    assert 299 <= value(data, "lanyard_ssf_outbox_oldest_pending_seconds") < 360
