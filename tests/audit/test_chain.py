"""The hash chain: contiguous sequences, canonical hashing, one locked head, record_batch."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from django.db import connection, transaction

from audit.chain import GENESIS_HASH, HASHED_FIELDS, event_hash, values_of
from audit.models import AuditChainHead, AuditEvent
from audit.services import record, record_batch
from audit.verify import verify
from tests.concurrency import race
from tests.factories import ConnectorFactory, DeviceFactory, GrantFactory, IdentityFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_record_appends_contiguous_sequences_linked_by_hash():
    events = [record("test.event", data={"n": n}) for n in range(5)]

    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == (5, events[-1].hash)


def test_hash_read_back_from_the_database_matches_what_was_written():
    identity = IdentityFactory()
    user = UserFactory()
    grant = GrantFactory(identity=identity)
    record(
        "test.everything",
        actor=user,
        connector=grant.connector,
        grant=grant,
        source=grant.source,
        device=DeviceFactory(),
        target=grant,
        ip="2001:0db8:0000:0000:0000:0000:0000:0001",
        user_agent="agent/1.0",
        correlation_id="corr-1",
        external_id="ext-everything",
        occurred_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        data={
            "when": dt.datetime(2026, 5, 6, 7, 8, 9, 0, tzinfo=dt.UTC),
            "day": dt.date(2026, 5, 6),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "amount": decimal.Decimal("12.50"),
            "ratio": 0.25,
            "whole": 1e20,
            "nested": {"b": [1, 2, {"z": None}], "a": "é ✓"},
        },
    )
    record("test.identity", actor=identity)

    for event in AuditEvent.objects.all():
        assert event_hash(values_of(event)) == event.hash
    stored = AuditEvent.objects.get(action="test.everything")
    assert stored.ip == "2001:db8::1"
    assert stored.data["whole"] == 10**20
    assert stored.data["when"] == "2026-05-06T07:08:09.000000+00:00"
    assert stored.actor_label == user.get_username()
    assert verify().ok


def test_every_hashed_field_changes_the_hash():
    event = record("test.fields", data={"a": 1}, ip="10.0.0.1")
    base = values_of(event)
    for i, name in enumerate(HASHED_FIELDS):
        changed = list(base)
        value = changed[i]
        if isinstance(value, dt.datetime):
            changed[i] = value + dt.timedelta(microseconds=1)
        elif isinstance(value, int):
            changed[i] = value + 1
        elif isinstance(value, dict):
            changed[i] = {**value, "x": 1}
        elif value is None:
            changed[i] = 7
        else:
            changed[i] = value + "x"
        assert event_hash(changed) != event.hash, name


def test_a_rolled_back_record_leaves_no_gap():
    record("test.kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        record("test.rolled_back")
        raise RuntimeError("the change failed")
    event = record("test.after")

    assert event.sequence == 2
    assert verify().ok


def test_the_head_is_rebuilt_from_the_last_event_when_its_row_is_missing():
    record("test.one")
    record("test.two")
    AuditChainHead.objects.all().delete()

    event = record("test.three")

    assert event.sequence == 3
    assert verify().ok


def test_record_batch_writes_all_events_under_one_head_and_returns_the_count():
    connector = ConnectorFactory()
    written = record_batch(
        [{"action": "idp.token", "connector": connector, "external_id": f"g:{n}"} for n in range(20)]
    )

    assert written == 20
    assert list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)) == list(
        range(1, 21)
    )
    assert verify().ok


def test_record_batch_skips_external_ids_already_recorded_and_repeats_within_the_batch():
    record("test.single", external_id="okta:1")
    batch = [
        {"action": "idp.signin", "external_id": "okta:1"},
        {"action": "idp.signin", "external_id": "okta:2"},
        {"action": "idp.signin", "external_id": "okta:2"},
        {"action": "idp.signin"},
    ]

    assert record_batch(batch) == 2
    assert record_batch(batch) == 1  # the event without an external id has no idempotency key
    assert AuditEvent.objects.filter(external_id="okta:2").count() == 1
    assert verify().ok


def test_record_batch_of_nothing_new_writes_nothing():
    record_batch([{"action": "x", "external_id": "a"}])
    head = AuditChainHead.objects.get()

    assert record_batch([]) == 0
    assert record_batch([{"action": "x", "external_id": "a"}]) == 0
    assert AuditChainHead.objects.get().sequence == head.sequence


def test_record_batch_query_count_does_not_grow_with_the_batch(django_assert_num_queries):
    def batch(n: int, tag: str) -> list[dict]:
        return [{"action": "idp.token", "external_id": f"{tag}:{i}"} for i in range(n)]

    record("test.first")
    # head lock, existing-id lookup, insert, head update
    with django_assert_num_queries(4):
        assert record_batch(batch(1, "one")) == 1
    with django_assert_num_queries(4):
        assert record_batch(batch(50, "fifty")) == 50


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_contiguous_on_postgresql():
    assert connection.vendor == "postgresql"

    def writer(n: int) -> None:
        for i in range(25):
            if i % 5 == 0:
                record_batch([{"action": "t.batch", "external_id": f"{n}:{i}:{j}"} for j in range(10)])
            else:
                record("t.single", data={"writer": n, "i": i})

    _, errors = race([lambda n=n: writer(n) for n in range(8)])

    assert errors == []
    total = 8 * (20 + 5 * 10)
    assert list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)) == list(
        range(1, total + 1)
    )
    result = verify()
    assert result.ok, result.problems
    assert result.events == total


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"event_id": "evt-1", "resource": "drive:file/1"},
        {"z": [1, 2.5, None, True], "a": {"nested": 'é😀 \u2028 " \\ \n'}, "m": ""},
        {"flags": ["no_grant"], "actor_as_given": {"email": "Emma@Example.com"}},
    ],
)
def test_the_spliced_hash_is_the_canonical_hash(data):
    from audit.chain import dumps, event_hash_encoded
    from audit.services import event_values

    values = event_values(
        "ai.tool_call",
        actor_label="emma@example.com",
        connector=3,
        grant=9,
        device=7,
        ip="2001:db8::1",
        user_agent="gw/1.0 ☃",
        external_id="key:evt-1",
        occurred_at=dt.datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=dt.UTC),
        data=data,
    )
    values.update(sequence=42, prev_hash="ab" * 32)

    assert event_hash_encoded(values, dumps(values["data"])) == event_hash(
        [values[name] for name in HASHED_FIELDS]
    )
