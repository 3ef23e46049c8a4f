"""The transmitter's outbox: SETs written with the change they report, delivered at least once.

``emit`` runs inside the transaction of the change (a revoked grant, a suspended connector, an
offboarded identity): one ``OutboxSet`` row per stream that asked for the event type and whose subject
filter lets the subject through, one ``ssf.set_emitted`` audit event each, and, once committed, a
push task per row. A rolled-back change leaves no row; a committed one always has its rows, so a lost
task, a dead worker or a receiver that is down only delay the SET: the beat sweep re-enqueues pending
rows, retries back off exponentially up to ``LANYARD_SSF_PUSH_MAX_ATTEMPTS``, then the row is
``dead`` (visible in the admin, replayed from there). Claims are signed at delivery (``keys.sign``),
so a SET held by a paused stream or a long backoff is fresh when it arrives and signed with the
current key. Poll streams (RFC 8936) are served from the same rows (``poll_serve``).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record, record_batch
from telemetry import metrics

from . import events as ev
from . import keys
from .models import OutboxSet, StreamSubject, TransmitterStream

logger = logging.getLogger(__name__)

State = OutboxSet.State
SUPPORTED = ev.TRANSMITTED


def issuer() -> str:
    return settings.LANYARD_SSF_ISSUER


def events_delivered(stream: TransmitterStream) -> list[str]:
    """The event types the stream gets: those it requested that Lanyard transmits (SSF §8.1.1)."""
    return [t for t in stream.events_requested or [] if t in SUPPORTED]


# ------------------------------------------------------------------------------------ subjects


def subject_keys(subject: Any) -> set[str]:
    """The normalised identifiers a subject carries (a complex subject: those of each member)."""
    if not isinstance(subject, dict):
        return set()
    fmt = ev.subject_format(subject)
    if fmt == "complex":
        out: set[str] = set()
        for name in ("user", "device", "session", "application", "tenant", "org_unit", "group"):
            out |= {f"{name}.{k}" for k in subject_keys(subject.get(name))}
        return out
    if fmt == "aliases":
        return set().union(
            *(subject_keys(i) for i in subject.get("identifiers") or [] if isinstance(i, dict))
        )
    if fmt == "email" and isinstance(subject.get("email"), str):
        return {f"email:{subject['email'].strip().lower()}"}
    if fmt == "account" and isinstance(subject.get("uri"), str) and subject["uri"].startswith("acct:"):
        return {f"email:{subject['uri'][5:].strip().lower()}"}
    if fmt == "iss_sub" and isinstance(subject.get("iss"), str) and isinstance(subject.get("sub"), str):
        return {f"iss_sub:{subject['iss']}|{subject['sub']}"}
    if fmt == "opaque" and isinstance(subject.get("id"), str):
        return {f"opaque:{subject['id']}"}
    for name in ("phone_number", "uri", "url"):
        if isinstance(subject.get(name), str):
            return {f"{fmt}:{subject[name]}"}
    return set()


def _bare(key: str) -> str:
    """``user.email:a@b`` → ``email:a@b``: a subject added as a plain email matches a complex one's user."""
    return key.split(".", 1)[1] if "." in key.split(":", 1)[0] else key


def subject_key(subject: Any) -> str:
    """The key a stream's subject row is stored under (its identifiers, sorted)."""
    return " & ".join(sorted(subject_keys(subject)))[:600]


def _candidate_keys(subject: Any) -> set[str]:
    """Every stored key that would match an event about ``subject``: any combination of its identifiers."""
    found = subject_keys(subject)
    found |= {_bare(k) for k in found}
    found = set(sorted(found)[:6])  # complex subjects have two or three members; bound the combinations
    out: set[str] = set()
    for size in range(1, len(found) + 1):
        out |= {" & ".join(sorted(c)) for c in itertools.combinations(found, size)}
    return out


# ------------------------------------------------------------------------------------ emission


@dataclass(frozen=True)
class Event:
    """One event to transmit: its type, its subject (RFC 9493) and its payload."""

    event_type: str
    subject: dict[str, Any]
    payload: dict[str, Any]
    # Audit references (ids) for the emitted events.
    connector_id: int | None = None
    grant_id: int | None = None


def _claims(stream: TransmitterStream, event: Event, jti: str) -> dict[str, Any]:
    return {
        "iss": issuer(),
        "aud": stream.receiver.aud,
        "jti": jti,
        "sub_id": event.subject,
        "events": {event.event_type: event.payload},
    }


def _wanted(streams: list[TransmitterStream], events: list[Event]) -> list[tuple[TransmitterStream, Event]]:
    """Pair each event with the streams that get it: event type requested, subject let through."""
    pairs = [(s, e) for e in events for s in streams if e.event_type in events_delivered(s)]
    filtered = {s.pk for s, _ in pairs if s.default_subjects == "NONE"} | {
        s.pk for s in streams if getattr(s, "has_subject_rows", False)
    }
    if not filtered:
        return pairs
    keys_by_event = {id(e): _candidate_keys(e.subject) for e in events}
    rows = StreamSubject.objects.filter(
        stream_id__in=filtered, key__in=set().union(*keys_by_event.values())
    ).values_list("stream_id", "key", "included")
    marks: dict[tuple[Any, str], bool] = {(sid, key): inc for sid, key, inc in rows}
    out = []
    for stream, event in pairs:
        if stream.pk not in filtered:
            out.append((stream, event))
            continue
        found = [marks[(stream.pk, k)] for k in keys_by_event[id(event)] if (stream.pk, k) in marks]
        if stream.default_subjects == "NONE":
            if any(found):
                out.append((stream, event))
        elif not found or any(found):  # ALL: a subject removed (and not added back) is skipped
            out.append((stream, event))
    return out


def live_streams() -> list[TransmitterStream]:
    """Streams that take events now (enabled, or paused: held), their receivers not revoked."""
    from django.db.models import Exists, OuterRef

    return list(
        TransmitterStream.objects.select_related("receiver")
        .filter(receiver__revoked_at__isnull=True)
        .exclude(status=TransmitterStream.Status.DISABLED)
        .annotate(has_subject_rows=Exists(StreamSubject.objects.filter(stream=OuterRef("pk"))))
    )


def emit(
    events: Iterable[Event], *, actor: Any = "system", streams: list[TransmitterStream] | None = None
) -> list[OutboxSet]:
    """Write the outbox rows for ``events`` in the caller's transaction; push them once it commits."""
    events = list(events)
    if not events:
        return []
    streams = live_streams() if streams is None else streams
    if not streams:
        return []
    now = timezone.now()
    pairs = _wanted(streams, events)
    if not pairs:
        return []
    rows = []
    for stream, event in pairs:
        jti = uuid.uuid4().hex
        rows.append(
            OutboxSet(
                stream=stream,
                jti=jti,
                event_type=event.event_type,
                subject=event.subject,
                claims=_claims(stream, event, jti),
                next_attempt_at=now,
                created_at=now,
            )
        )
    with transaction.atomic(savepoint=False):
        OutboxSet.objects.bulk_create(rows)
        record_batch(
            {
                "action": "ssf.set_emitted",
                "actor": actor,
                "connector": event.connector_id,
                "grant": event.grant_id,
                "target": row.stream,
                "data": {
                    "jti": row.jti,
                    "event": ev.short(row.event_type),
                    "stream": str(row.stream_id),
                    "receiver": row.stream.receiver.name,
                    "subject": row.subject,
                    "held": row.stream.status == TransmitterStream.Status.PAUSED,
                },
            }
            for row, (_, event) in zip(rows, pairs, strict=True)
        )
    push = [r.pk for r in rows if _pushes_now(r.stream)]
    if push:
        transaction.on_commit(lambda: enqueue_deliveries(push))
    return rows


def _pushes_now(stream: TransmitterStream) -> bool:
    return (
        stream.method == TransmitterStream.Method.PUSH and stream.status == TransmitterStream.Status.ENABLED
    )


def verification_emit(*, stream: TransmitterStream, state: str | None, actor: Any) -> OutboxSet:
    """Queue a verification SET (SSF §8.1.4) on one stream, whatever events it requested."""
    payload = {"state": state} if state else {}
    event = Event(ev.VERIFICATION, {"format": "opaque", "id": str(stream.pk)}, payload)
    jti = uuid.uuid4().hex
    with transaction.atomic():
        row = OutboxSet.objects.create(
            stream=stream,
            jti=jti,
            event_type=event.event_type,
            subject=event.subject,
            claims=_claims(stream, event, jti),
        )
        record(
            "ssf.set_emitted",
            actor=actor,
            target=stream,
            data={"jti": jti, "event": ev.short(ev.VERIFICATION), "stream": str(stream.pk), "state": state},
        )
        if _pushes_now(stream):
            transaction.on_commit(lambda: enqueue_deliveries([row.pk]))
    return row


# ------------------------------------------------------------------------------------ push delivery


def backoff(attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: base × 2^(attempts − 1), capped."""
    seconds = settings.LANYARD_SSF_PUSH_BACKOFF_BASE * (2 ** max(0, attempts - 1))
    return timedelta(seconds=min(seconds, settings.LANYARD_SSF_PUSH_BACKOFF_MAX))


def enqueue_deliveries(pks: Iterable[int], *, countdown: float | None = None) -> int:
    """Queue one push task per row; a broker outage is logged and left to the sweep."""
    from connectors.queueing import BROKER_ERRORS

    from .tasks import deliver_set

    queued = 0
    for pk in pks:
        try:
            deliver_set.apply_async(args=[pk], countdown=countdown)
            queued += 1
        except BROKER_ERRORS as exc:
            logger.warning("SSF: could not queue delivery of outbox row %s (%s); left for the sweep", pk, exc)
    return queued


def _lease() -> timedelta:
    return timedelta(seconds=settings.LANYARD_SSF_PUSH_TIMEOUT * 2 + 30)


def outbox_claim(*, outbox_id: int, now: datetime | None = None) -> bool:
    """Claim a due push row for one delivery attempt (compare-and-swap); False when not due or taken."""
    # Scheduling bookkeeping, not a change of the SET's state: no audit event. A duplicate task (the
    # sweep, acks_late redelivery) finds the claim, or the row no longer pending, and does nothing.
    now = now or timezone.now()
    return (
        OutboxSet.objects.filter(
            pk=outbox_id,
            state=State.PENDING,
            next_attempt_at__lte=now,
            stream__status=TransmitterStream.Status.ENABLED,
            stream__method=TransmitterStream.Method.PUSH,
            stream__receiver__revoked_at__isnull=True,
        )
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _lease()))
        .update(claimed_at=now)
        == 1
    )


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status: int | None
    error: str = ""
    retry: bool = False


# RFC 8935 §2.3 errors a retry can cure: the receiver has not fetched the new key yet.
_TRANSIENT_ERRS = ("invalid_key",)


def _post(row: OutboxSet) -> Attempt:
    stream = row.stream
    kid, token = keys.sign({**row.claims, "iat": int(time.time())})
    headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
    if stream.authorization:
        headers["Authorization"] = stream.authorization
    try:
        response = httpx.post(
            stream.endpoint_url,
            content=token.encode(),
            headers=headers,
            timeout=settings.LANYARD_SSF_PUSH_TIMEOUT,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__} posting to the receiver", retry=True)
    if response.status_code in (200, 202, 204):
        return Attempt(True, response.status_code)
    err, description = "", ""
    try:
        body = response.json()
        if isinstance(body, dict):
            err, description = str(body.get("err", ""))[:50], str(body.get("description", ""))[:300]
    except ValueError:
        pass
    message = f"HTTP {response.status_code}" + (f" {err}: {description}" if err else "")
    code = response.status_code
    retry = code >= 500 or code in (408, 429) or (code == 400 and err in _TRANSIENT_ERRS)
    return Attempt(False, code, message, retry=retry)


def outbox_deliver(*, outbox_id: int) -> str:
    """Push one SET to its stream's receiver; record delivered, a retry (backoff) or dead."""
    if not outbox_claim(outbox_id=outbox_id):
        return "skipped"
    row = OutboxSet.objects.select_related("stream__receiver").get(pk=outbox_id)
    started = time.monotonic()
    attempt = _post(row)
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    now = timezone.now()
    with transaction.atomic():
        row = (
            OutboxSet.objects.select_related("stream__receiver")
            .select_for_update(of=("self",))
            .get(pk=outbox_id)
        )
        if row.state != State.PENDING:  # replayed or acknowledged meanwhile: nothing to record
            return row.state
        row.attempts = min(row.attempts + 1, 32767)
        row.claimed_at = None
        data = {
            "jti": row.jti,
            "event": ev.short(row.event_type),
            "stream": str(row.stream_id),
            "receiver": row.stream.receiver.name,
            "attempt": row.attempts,
            "status": attempt.status,
            "ms": elapsed_ms,
        }
        if attempt.delivered:
            row.state, row.delivered_at, row.last_error = State.DELIVERED, now, ""
            action, outcome = "ssf.set_delivered", AuditEvent.Outcome.SUCCESS
            metrics.SSF_DELIVERY_LAG.labels("push").observe((now - row.created_at).total_seconds())
        elif attempt.retry and row.attempts < settings.LANYARD_SSF_PUSH_MAX_ATTEMPTS:
            row.last_error = attempt.error[:500]
            row.next_attempt_at = now + backoff(row.attempts)
            action, outcome = "ssf.set_retrying", AuditEvent.Outcome.FAILURE
            data |= {"error": row.last_error, "next_attempt_at": row.next_attempt_at}
        else:
            row.state, row.last_error = State.DEAD, attempt.error[:500]
            action, outcome = "ssf.set_dead", AuditEvent.Outcome.FAILURE
            data |= {"error": row.last_error, "permanent": not attempt.retry}
        row.save(
            update_fields=["state", "attempts", "claimed_at", "last_error", "next_attempt_at", "delivered_at"]
        )
        record(action, outcome=outcome, target=row.stream, data=data)
        if action == "ssf.set_retrying":
            wait = (row.next_attempt_at - now).total_seconds()
            transaction.on_commit(lambda: enqueue_deliveries([outbox_id], countdown=wait))
    return row.state


def outbox_claim_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Pending push rows due (their task lost, the broker down, a retry overdue), for the sweep."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS)
    return list(
        OutboxSet.objects.filter(
            state=State.PENDING,
            next_attempt_at__lte=now - grace,
            stream__status=TransmitterStream.Status.ENABLED,
            stream__method=TransmitterStream.Method.PUSH,
            stream__receiver__revoked_at__isnull=True,
        )
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - _lease()))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


class NotReplayable(Exception):
    """Only dead SETs are replayed."""


def outbox_replay(*, rows: Iterable[OutboxSet], actor: Any) -> int:
    """Put dead SETs back to pending with a fresh attempt count (the admin's "Retry delivery")."""
    now = timezone.now()
    with transaction.atomic():
        locked = list(
            OutboxSet.objects.select_for_update(of=("self",))
            .select_related("stream__receiver")
            .filter(pk__in=[r.pk for r in rows], state=State.DEAD)
        )
        for row in locked:
            previous = row.last_error
            row.state, row.attempts, row.next_attempt_at = State.PENDING, 0, now
            row.claimed_at, row.last_error = None, ""
            row.save(update_fields=["state", "attempts", "next_attempt_at", "claimed_at", "last_error"])
            record(
                "ssf.set_requeued",
                actor=actor,
                target=row.stream,
                data={"jti": row.jti, "stream": str(row.stream_id), "last_error": previous},
            )
        push = [r.pk for r in locked if _pushes_now(r.stream)]
        if push:
            transaction.on_commit(lambda: enqueue_deliveries(push))
    return len(locked)


# ------------------------------------------------------------------------------------ stream status


def stream_release_held(stream: TransmitterStream) -> None:
    """A stream enabled again: push what it held (call inside the status change's transaction)."""
    if stream.method != TransmitterStream.Method.PUSH:
        return
    pks = list(stream.outbox.filter(state=State.PENDING).values_list("pk", flat=True))
    if pks:
        transaction.on_commit(lambda: enqueue_deliveries(pks))


def stream_drop_pending(stream: TransmitterStream, *, why: str) -> int:
    """A stream disabled: its undelivered SETs are dropped (dead, replayable), as SSF §8.1.2 says."""
    return stream.outbox.filter(state=State.PENDING).update(state=State.DEAD, last_error=why[:500])


# ------------------------------------------------------------------------------------ poll delivery


@dataclass
class PollAnswer:
    sets: dict[str, str]
    more: bool
    acknowledged: int = 0
    errors: int = 0


def _poll_ack(
    stream: TransmitterStream, ack: list[str], errs: dict[str, dict], *, actor: str
) -> tuple[int, int]:
    now = timezone.now()
    acked = errors = 0
    with transaction.atomic():
        rows = list(
            OutboxSet.objects.select_for_update().filter(
                stream=stream, jti__in=list(ack) + list(errs), state__in=(State.PENDING, State.DELIVERED)
            )
        )
        events = []
        for row in rows:
            if row.jti in errs:
                err = errs[row.jti]
                row.state = State.DEAD
                row.last_error = f"receiver: {err.get('err', '')}: {err.get('description', '')}"[:500]
                events.append(("ssf.set_dead", AuditEvent.Outcome.FAILURE, row, {"error": row.last_error}))
                errors += 1
            else:
                row.state, row.acknowledged_at = State.ACKNOWLEDGED, now
                events.append(("ssf.set_acknowledged", AuditEvent.Outcome.SUCCESS, row, {}))
                acked += 1
        OutboxSet.objects.bulk_update(rows, ["state", "acknowledged_at", "last_error"])
        record_batch(
            {
                "action": action,
                "outcome": outcome,
                "actor": actor,
                "target": stream,
                "data": {"jti": row.jti, "event": ev.short(row.event_type), "stream": str(stream.pk)} | extra,
            }
            for action, outcome, row, extra in events
        )
    return acked, errors


def _poll_take(stream: TransmitterStream, max_events: int, *, actor: str) -> PollAnswer:
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxSet.objects.select_for_update()
            .filter(stream=stream, state__in=(State.PENDING, State.DELIVERED))
            .order_by("pk")[: max_events + 1]
        )
        more = len(rows) > max_events
        rows = rows[:max_events]
        if not rows:
            return PollAnswer({}, False)
        key = keys.active_key()
        iat = int(time.time())
        sets = {row.jti: keys.sign({**row.claims, "iat": iat}, key=key)[1] for row in rows}
        first = [row for row in rows if row.state == State.PENDING]
        for row in rows:
            row.attempts = min(row.attempts + 1, 32767)
            if row.state == State.PENDING:
                row.state, row.delivered_at = State.DELIVERED, now
                metrics.SSF_DELIVERY_LAG.labels("poll").observe((now - row.created_at).total_seconds())
        OutboxSet.objects.bulk_update(rows, ["state", "attempts", "delivered_at"])
        record_batch(
            {
                "action": "ssf.set_delivered",
                "actor": actor,
                "target": stream,
                "data": {
                    "jti": row.jti,
                    "event": ev.short(row.event_type),
                    "stream": str(stream.pk),
                    "poll": True,
                },
            }
            for row in first
        )
    return PollAnswer(sets, more)


def poll_serve(
    *,
    stream: TransmitterStream,
    max_events: int,
    return_immediately: bool,
    ack: list[str],
    errs: dict[str, dict],
) -> PollAnswer:
    """RFC 8936: take the acknowledgements and errors, then answer with outstanding SETs."""
    actor = f"ssf-receiver:{stream.receiver.name}"
    acked, errors = _poll_ack(stream, ack, errs, actor=actor) if (ack or errs) else (0, 0)
    answer = PollAnswer({}, False)
    if max_events > 0 and stream.status == TransmitterStream.Status.ENABLED:
        deadline = time.monotonic() + (0 if return_immediately else settings.LANYARD_SSF_POLL_WAIT_SECONDS)
        while True:
            answer = _poll_take(stream, max_events, actor=actor)
            if answer.sets or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
    answer.acknowledged, answer.errors = acked, errors
    return answer
