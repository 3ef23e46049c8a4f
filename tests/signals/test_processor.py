"""The receiver answers after one durable write; the processor acts on stored SETs in batches, once each."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Identity
from signals import events as ev
from signals import services
from signals.models import ReceivedSet, ReceiverStream
from tests.concurrency import race
from tests.factories import IdentityFactory, IdentitySourceFactory

from .conftest import AUDIENCE, make_stream
from .test_queries import signed


@pytest.fixture
def deferred(monkeypatch) -> list[int]:
    """Hold the processor back: count the schedules the receiver asks for instead of running them."""
    asked: list[int] = []
    monkeypatch.setattr(services, "schedule_processing", lambda: asked.append(1))
    return asked


def stored(
    stream: ReceiverStream, event: str, subject: dict, *, n: int = 1, payload=None
) -> list[ReceivedSet]:
    """Pending SETs as the receiver stores them once verified (the processor trusts stored claims)."""
    now = timezone.now()
    rows = []
    for _ in range(n):
        jti = uuid.uuid4().hex
        claims = {
            "iss": stream.issuer,
            "aud": stream.audience,
            "iat": int(now.timestamp()),
            "jti": jti,
            "sub_id": subject,
            "events": {event: payload or {}},
        }
        rows.append(
            ReceivedSet(
                stream=stream,
                issuer=stream.issuer,
                jti=jti,
                event_types=[ev.short(event)],
                claims=claims,
                issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
            )
        )
    return ReceivedSet.objects.bulk_create(rows)


@pytest.fixture
def plain_stream(db) -> ReceiverStream:
    source = IdentitySourceFactory()
    return ReceiverStream.objects.create(
        name="plain",
        source=source,
        issuer="https://idp.example",
        jwks_url="https://idp.example/jwks",
        audience=AUDIENCE,
    )


# ------------------------------------------------------------------------------------ request path


@pytest.mark.django_db(transaction=True)
def test_the_push_stores_the_set_in_one_statement_and_acts_only_in_the_processor(sim, synced, deferred):
    stream = make_stream(sim, synced("okta"), "okta")
    person = Identity.objects.filter(source=stream.source).order_by("pk").first()
    services.verify(stream, signed(sim, event="session-revoked", email=person.email))  # warm the JWKS
    token = signed(sim, event="session-revoked", email=person.email)

    with CaptureQueriesContext(connection) as captured:
        result = services.receive(stream, token)

    assert result.status == 202 and not result.replayed
    assert len(captured) == 1, [q["sql"] for q in captured]
    assert "ON CONFLICT" in captured[0]["sql"]
    assert deferred == [1]
    received = ReceivedSet.objects.get()
    assert (received.outcome, received.processed_at, received.identity) == ("pending", None, None)
    assert received.claims["jti"] == received.jti and "token" not in received.claims
    assert not AuditEvent.objects.filter(action="ssf.set_received").exists()

    done = services.received_process()

    assert (done.processed, done.failed, done.retry) == (1, 0, 0)
    received.refresh_from_db()
    assert (received.outcome, received.identity_id) == ("recorded", person.pk)
    assert received.processed_at is not None
    event = AuditEvent.objects.get(action="ssf.set_received")
    assert event.data["jti"] == received.jti and event.target_id == str(person.pk)
    assert services.received_process().processed == 0  # nothing twice


@pytest.mark.django_db(transaction=True)
def test_the_push_view_costs_two_queries_then_one_with_its_stream_cached(
    sim, synced, deferred, client, settings
):
    settings.LANYARD_SSF_STREAM_CACHE_SECONDS = 60  # a slow machine must not expire it mid-test
    stream = make_stream(sim, synced("okta"), "okta")
    email = Identity.objects.filter(source=stream.source).order_by("pk").first().email
    services.verify(stream, signed(sim, event="session-revoked", email=email))
    counts = []
    for _ in range(3):
        token = signed(sim, event="session-revoked", email=email)
        with CaptureQueriesContext(connection) as captured:
            answer = client.post(
                f"/ssf/receive/{stream.pk}", data=token, content_type="application/secevent+jwt"
            )
        assert answer.status_code == 202
        counts.append(len(captured))
    assert counts == [2, 1, 1]  # the stream, then the INSERT alone
    stream.enabled = False
    stream.save()  # forgotten at once: the next push is refused
    token = signed(sim, event="session-revoked", email=email)
    answer = client.post(f"/ssf/receive/{stream.pk}", data=token, content_type="application/secevent+jwt")
    assert answer.status_code == 400 and answer.json()["err"] == "access_denied"


@pytest.mark.django_db(transaction=True)
def test_a_replay_is_acknowledged_counted_audited_and_not_acted_on_twice(sim, synced, deferred):
    stream = make_stream(sim, synced("okta"), "okta")
    email = Identity.objects.filter(source=stream.source).order_by("pk").first().email
    token = signed(sim, event="session-revoked", email=email, jti="twice")
    first = services.receive(stream, token)
    second = services.receive(stream, token)  # before the processor ran
    assert (first.status, first.replayed, second.status, second.replayed) == (202, False, 202, True)
    assert services.received_process().processed == 1
    third = services.receive(stream, token)  # after
    assert third.replayed and services.received_process().processed == 0
    assert ReceivedSet.objects.get(jti="twice").replays == 2
    assert AuditEvent.objects.filter(action="ssf.set_replayed").count() == 2
    assert AuditEvent.objects.filter(action="ssf.set_received").count() == 1
    assert deferred == [1]  # only the stored SET asked for the processor


def test_the_processor_runs_once_the_push_commits(
    sim, plain_stream, django_capture_on_commit_callbacks, settings
):
    person = IdentityFactory(source=plain_stream.source)
    plain_stream.issuer = sim.ssf_issuer("okta")
    plain_stream.jwks_url = f"{plain_stream.issuer}/jwks"
    plain_stream.save()
    token = signed(sim, event="session-revoked", subject={"format": "email", "email": person.email})
    cache.delete(services.SCHEDULED_KEY)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert services.receive(plain_stream, token).status == 202
        assert ReceivedSet.objects.get().outcome == "pending"  # not before the commit
    assert len(callbacks) == 1
    received = ReceivedSet.objects.get()  # Celery is eager in the tests: the task ran on commit
    assert (received.outcome, received.identity_id) == ("recorded", person.pk)


# ------------------------------------------------------------------------------------ processor


def test_a_batch_costs_the_same_queries_for_one_set_or_twenty(plain_stream):
    people = [IdentityFactory(source=plain_stream.source) for _ in range(21)]
    stored(plain_stream, ev.VERIFICATION, {})
    services.received_process()  # the chain's head row exists from here on
    stored(plain_stream, ev.SESSION_REVOKED, {"format": "email", "email": people[0].email.upper()})
    with CaptureQueriesContext(connection) as one:
        assert services.received_process().processed == 1
    for person in people[1:]:
        stored(plain_stream, ev.SESSION_REVOKED, {"format": "opaque", "id": person.external_id})
    with CaptureQueriesContext(connection) as twenty:
        assert services.received_process().processed == 20
    assert len(one) == len(twenty), [q["sql"] for q in twenty]
    people_sets = ReceivedSet.objects.exclude(event_types=["ssf:verification"])
    assert set(people_sets.values_list("outcome", flat=True)) == {"recorded"}
    assert not people_sets.filter(identity__isnull=True).exists()
    assert AuditEvent.objects.filter(action="ssf.set_received").count() == 22


def test_unknown_subjects_and_batches_larger_than_one(plain_stream, settings):
    settings.LANYARD_SSF_PROCESS_BATCH = 3
    stored(plain_stream, ev.SESSION_REVOKED, {"format": "email", "email": "nobody@elsewhere.example"}, n=7)
    done = services.received_process_pending()
    assert done.processed == 7
    assert set(ReceivedSet.objects.values_list("outcome", flat=True)) == {"unknown_subject"}


def test_an_identifier_change_in_a_batch_is_seen_by_the_sets_after_it(plain_stream):
    person = IdentityFactory(source=plain_stream.source, email="old@example.com")
    stored(
        plain_stream,
        ev.IDENTIFIER_CHANGED,
        {"format": "email", "email": "old@example.com"},
        payload={"new-value": "new@example.com"},
    )
    stored(plain_stream, ev.SESSION_REVOKED, {"format": "email", "email": "new@example.com"})
    stored(plain_stream, ev.SESSION_REVOKED, {"format": "email", "email": "old@example.com"})
    assert services.received_process().processed == 3
    outcomes = list(ReceivedSet.objects.order_by("pk").values_list("outcome", "identity_id"))
    assert outcomes == [("acted", person.pk), ("recorded", person.pk), ("unknown_subject", None)]


def test_a_set_whose_handling_fails_is_marked_failed_and_the_others_go_on(plain_stream, monkeypatch):
    person = IdentityFactory(source=plain_stream.source)
    subject = {"format": "email", "email": person.email}

    def broken(stream, identity, event_type, payload):
        Identity.objects.filter(pk=identity.pk).update(status=Identity.Status.SUSPENDED)
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "_offboard", broken)
    (bad,) = stored(plain_stream, ev.ACCOUNT_DISABLED, subject)
    (good,) = stored(plain_stream, ev.SESSION_REVOKED, subject)
    done = services.received_process()
    assert (done.processed, done.failed) == (1, 1)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.outcome, bad.summary, good.outcome) == ("failed", {"error": "RuntimeError"}, "recorded")
    failed = AuditEvent.objects.get(action="ssf.set_received", data__jti=bad.jti)
    assert failed.outcome == AuditEvent.Outcome.FAILURE
    person.refresh_from_db()
    assert person.status == Identity.Status.ACTIVE  # what it had done is undone with its savepoint


def test_a_transient_database_error_leaves_the_set_pending_for_the_next_run(plain_stream, monkeypatch):
    person = IdentityFactory(source=plain_stream.source)
    subject = {"format": "email", "email": person.email}
    real = services._offboard
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("could not obtain lock")
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "_offboard", flaky)
    (disabled,) = stored(plain_stream, ev.ACCOUNT_DISABLED, subject)
    stored(plain_stream, ev.SESSION_REVOKED, subject)
    first = services.received_process()
    assert (first.processed, first.retry) == (1, 1)
    disabled.refresh_from_db()
    assert disabled.processed_at is None and disabled.outcome == "pending"
    assert services.received_process().processed == 1
    disabled.refresh_from_db()
    assert disabled.outcome == "acted"
    assert AuditEvent.objects.filter(action="ssf.set_received", data__jti=disabled.jti).count() == 1


def test_the_task_clears_its_schedule_and_beat_runs_it(plain_stream, settings):
    from signals.tasks import process_received

    stored(plain_stream, ev.SESSION_REVOKED, {"format": "opaque", "id": "nobody"}, n=2)
    cache.set(services.SCHEDULED_KEY, 1)
    assert process_received() == {"processed": 2, "failed": 0, "retry": 0}
    assert cache.get(services.SCHEDULED_KEY) is None
    assert settings.CELERY_BEAT_SCHEDULE["ssf-process"]["task"] == "signals.process_received"


# ------------------------------------------------------------------------------------ concurrency


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_two_processors_never_act_on_the_same_set():
    assert connection.vendor == "postgresql", "the services pass runs on PostgreSQL (row locks)"
    source = IdentitySourceFactory()
    stream = ReceiverStream.objects.create(
        name="race",
        source=source,
        issuer="https://idp.example",
        jwks_url="https://idp.example/jwks",
        audience=AUDIENCE,
    )
    people = [IdentityFactory(source=source) for _ in range(5)]
    for person in people:
        stored(stream, ev.SESSION_REVOKED, {"format": "email", "email": person.email}, n=8)
    stored(stream, ev.SESSION_REVOKED, {"format": "opaque", "id": "nobody"}, n=20)

    # One processor holds the first ten rows locked: another takes the rest, skipping them.
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                assert len(services._pending(10)) == 10
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder_thread = threading.Thread(target=hold)
    holder_thread.start()
    assert holding.wait(10)
    try:
        assert services.received_process(batch=100).processed == 50
        assert ReceivedSet.objects.filter(processed_at__isnull=True).count() == 10
    finally:
        release.set()
        holder_thread.join(10)

    # And two at once, over many batches, on fresh SETs.
    stored(stream, ev.SESSION_REVOKED, {"format": "opaque", "id": "nobody"}, n=200)

    def drain() -> int:
        total = 0
        while done := services.received_process(batch=7).processed:
            total += done
        return total

    results, errors = race([drain, drain])
    assert not errors, errors
    assert sum(results) == 210, results
    assert not ReceivedSet.objects.filter(processed_at__isnull=True).exists()
    jtis = list(AuditEvent.objects.filter(action="ssf.set_received").values_list("data__jti", flat=True))
    assert len(jtis) == len(set(jtis)) == ReceivedSet.objects.count() == 260
