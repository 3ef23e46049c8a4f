"""Receiving a Security Event Token: verify it (PyJWT), store it once, then act on it and audit it.

``receive`` is the request path (the push view and the poll loop call it): it verifies the SET and
stores it with one ``INSERT ... ON CONFLICT DO NOTHING`` (the replay guard), then answers 202.
``received_process`` is the processor: a Celery task scheduled when the row commits (and beat, as a
safety net) takes pending SETs in batches (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL), acts
on each in its own savepoint and writes their audit events under one chain lock, in the transaction
that records their outcome.

Every SET ends in the audit trail: ``ssf.set_received`` (verified, with what was done),
``ssf.set_replayed`` (seen before: acknowledged, counted on the row, not acted on again) or
``ssf.set_refused`` (with the RFC 8935 error code and why). A refused SET's claims are
unauthenticated, so only its header's ``kid`` and what the refusal needs are recorded, never the token.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, OperationalError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from audit.chain import jsonable, normalise_ip
from audit.models import AuditEvent
from audit.services import record, record_batch
from connectors.models import Device, Identity
from connectors.queueing import enqueue_once

from . import events as ev
from . import jwks
from .models import ReceivedSet, ReceiverStream

logger = logging.getLogger(__name__)

TYPES = (None, "secevent+jwt", "application/secevent+jwt", "JWT")
# The events whose handling changes the register (the others only read it).
WRITES = frozenset((*ev.OFFBOARDING, ev.IDENTIFIER_CHANGED, ev.DEVICE_COMPLIANCE_CHANGE))


class Refused(Exception):
    """A SET refused with an RFC 8935 error code (``err``) and a description for the transmitter."""

    def __init__(self, err: str, description: str):
        super().__init__(description)
        self.err = err
        self.description = description


@dataclass(frozen=True)
class Result:
    status: int  # 202 accepted (or replayed), 400 refused
    body: dict[str, str] | None
    received: ReceivedSet | None = None
    replayed: bool = False


def actor_for(stream: ReceiverStream) -> str:
    return f"ssf:{stream.name}"


# ------------------------------------------------------------------------------------------ streams

_streams: dict[str, tuple[float, ReceiverStream]] = {}


def stream_for_push(stream_id: Any) -> ReceiverStream | None:
    """The stream a push names, from this process's cache (``LANYARD_SSF_STREAM_CACHE_SECONDS``).

    A saved or deleted stream is forgotten at once in the process that changed it and within the
    cache's seconds in the others. Unknown ids are not cached (a flood of invented ids must not
    fill memory); 0 seconds reads the database on every push.
    """
    ttl = settings.LANYARD_SSF_STREAM_CACHE_SECONDS
    key = str(stream_id)
    now = time.monotonic()
    hit = _streams.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    stream = ReceiverStream.objects.select_related("source").filter(pk=stream_id).first()
    if stream is not None and ttl > 0:
        _streams[key] = (now, stream)
    else:
        _streams.pop(key, None)
    return stream


def forget_streams(**kwargs: Any) -> None:
    """Drop the cached streams (connected to ReceiverStream's post_save and post_delete)."""
    _streams.clear()


# ------------------------------------------------------------------------------------------ verify


def verify(stream: ReceiverStream, token: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Return the SET's claims once signature, iss, aud, iat, jti and events check out; else ``Refused``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise Refused("invalid_request", "The body is not a JWS compact serialisation.") from None
    alg = header.get("alg")
    if alg not in jwks.ALGORITHMS:
        raise Refused("invalid_request", f"Unsupported alg {alg!r}; sign SETs with an asymmetric algorithm.")
    if header.get("typ") not in TYPES:
        raise Refused("invalid_request", f"typ {header.get('typ')!r} is not secevent+jwt.")
    try:
        key = jwks.signing_key(stream.pk, stream.jwks_url, header.get("kid"))
    except jwks.KeyError_ as exc:
        raise Refused("invalid_key", f"No usable key: {exc}.") from None
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=stream.audience,
            issuer=stream.issuer,
            leeway=settings.LANYARD_SSF_CLOCK_SKEW,
            options={"require": ["iss", "aud", "iat", "jti", "events"], "verify_iat": True},
        )
    except jwt.InvalidSignatureError:
        raise Refused("invalid_key", "The signature does not verify with the transmitter's key.") from None
    except jwt.InvalidIssuerError:
        raise Refused("invalid_issuer", "The SET's iss is not this stream's transmitter.") from None
    except jwt.InvalidAudienceError:
        raise Refused("invalid_audience", "The SET's aud is not this stream's audience.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Refused("invalid_request", f"The SET has no {exc.claim} claim.") from None
    except jwt.ImmatureSignatureError:
        raise Refused("invalid_request", "The SET's iat is in the future.") from None
    except jwt.ExpiredSignatureError:
        raise Refused("invalid_request", "The SET has expired (exp).") from None
    except jwt.InvalidTokenError as exc:
        raise Refused("invalid_request", f"Malformed SET: {type(exc).__name__}.") from None
    now = now or timezone.now()
    iat = claims["iat"]
    if not isinstance(iat, int | float) or now.timestamp() - iat > settings.LANYARD_SSF_MAX_AGE:
        raise Refused(
            "invalid_request", f"The SET was issued more than {settings.LANYARD_SSF_MAX_AGE} s ago."
        )
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise Refused("invalid_request", "jti must be a non-empty string of at most 255 characters.")
    events = claims["events"]
    if not isinstance(events, dict) or not events:
        raise Refused("invalid_request", "events must be a non-empty JSON object.")
    unknown = [t for t in events if t not in ev.KNOWN]
    if unknown:
        raise Refused("invalid_request", f"Unsupported event type {ev.short(unknown[0])}.")
    if not all(isinstance(p, dict) for p in events.values()):
        raise Refused("invalid_request", "Every event payload must be a JSON object.")
    return claims


# ------------------------------------------------------------------------------------------ subjects


def _identity_refs(stream: ReceiverStream, subject: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``subject`` names, in order: ("email", address) or ("external_id", id) references."""
    fmt = ev.subject_format(subject)
    if fmt == "complex":
        user = subject.get("user")
        return _identity_refs(stream, user) if isinstance(user, dict) else []
    if fmt == "aliases":
        refs: list[tuple[str, str]] = []
        for alias in subject.get("identifiers") or []:
            if isinstance(alias, dict):
                refs += _identity_refs(stream, alias)
        return refs
    if fmt == "email":
        email = subject.get("email")
        return [("email", email)] if isinstance(email, str) else []
    if fmt == "account":
        uri = subject.get("uri")
        return [("email", uri[5:])] if isinstance(uri, str) and uri.startswith("acct:") else []
    if fmt == "iss_sub":
        if subject.get("iss") != stream.issuer or not isinstance(subject.get("sub"), str):
            return []
        return [("external_id", subject["sub"])]
    if fmt == "opaque":
        return [("external_id", subject["id"])] if isinstance(subject.get("id"), str) else []
    return []


def _lookup(source_id: int, ref: tuple[str, str]) -> Identity | None:
    identities = Identity.objects.filter(source_id=source_id).select_related("source")
    kind, value = ref
    if kind == "email":
        return identities.filter(email__iexact=value).order_by("pk").first()
    return identities.filter(external_id=value).first()


_UNKNOWN = object()


class Known:
    """The identities a batch of SETs names, read in one query per source instead of one per SET.

    A reference it read and did not find is a known miss (no query). Once a SET of the batch has
    changed the register (offboarding, an email change, a device), later SETs read afresh.
    """

    def __init__(self, rows: list[ReceivedSet]):
        self.fresh = True
        self._found: dict[tuple[int, str, str], Identity] = {}
        self._asked: set[tuple[int, str, str]] = set()
        wanted: dict[int, tuple[set[str], set[str]]] = {}
        for received in rows:
            events = received.claims.get("events") if isinstance(received.claims, dict) else None
            for event_type, payload in (events or {}).items():
                if event_type in ev.STREAM or event_type == ev.DEVICE_COMPLIANCE_CHANGE:
                    continue
                subject = ev.subject_of(received.claims, payload)
                emails, ids = wanted.setdefault(received.stream.source_id, (set(), set()))
                for kind, value in _identity_refs(received.stream, subject):
                    if kind == "email" and value.isascii():  # Python's upper() is PostgreSQL's here
                        emails.add(value.upper())
                    elif kind == "external_id":
                        ids.add(value)
        for source_id, (emails, ids) in wanted.items():
            if not emails and not ids:
                continue
            found = (
                Identity.objects.filter(source_id=source_id)
                .annotate(email_upper=Upper("email"))
                .filter(Q(email_upper__in=emails) | Q(external_id__in=ids))
                .select_related("source")
                .order_by("pk")
            )
            for identity in found:
                self._found.setdefault((source_id, "email", identity.email_upper), identity)
                self._found.setdefault((source_id, "external_id", identity.external_id), identity)
            self._asked.update((source_id, "email", e) for e in emails)
            self._asked.update((source_id, "external_id", i) for i in ids)

    def get(self, source_id: int, ref: tuple[str, str]) -> Identity | None | object:
        """The identity for ``ref``, None for a known miss, ``_UNKNOWN`` when it was not read."""
        if not self.fresh:
            return _UNKNOWN
        kind, value = ref
        key = (source_id, kind, value.upper() if kind == "email" else value)
        if key in self._found:
            return self._found[key]
        return None if key in self._asked else _UNKNOWN


def match_identity(
    stream: ReceiverStream, subject: dict[str, Any], *, known: Known | None = None
) -> Identity | None:
    """The identity of the stream's source that ``subject`` names (email, iss_sub, opaque, complex...)."""
    for ref in _identity_refs(stream, subject):
        found = known.get(stream.source_id, ref) if known is not None else _UNKNOWN
        if found is _UNKNOWN:
            found = _lookup(stream.source_id, ref)
        if found is not None:
            return found  # type: ignore[return-value]
    return None


def match_device(stream: ReceiverStream, subject: dict[str, Any]) -> Device | None:
    """The device of the stream's source a (complex) subject names by opaque id or iss_sub."""
    if ev.subject_format(subject) == "complex":
        device = subject.get("device")
        return match_device(stream, device) if isinstance(device, dict) else None
    fmt = ev.subject_format(subject)
    ref = subject.get("id") if fmt == "opaque" else subject.get("sub") if fmt == "iss_sub" else None
    if not isinstance(ref, str):
        return None
    return Device.objects.filter(source_id=stream.source_id, external_id=ref).first()


# ------------------------------------------------------------------------------------------ acting


def _offboard(stream: ReceiverStream, identity: Identity, event_type: str, payload: dict) -> dict[str, Any]:
    """Account disabled or purged at the IdP: the identity's status, then offboarding at once."""
    from connectors.services import identity_set_status
    from governance.offboarding import identity_offboard

    purged = event_type == ev.ACCOUNT_PURGED
    status = Identity.Status.DEPROVISIONED if purged else Identity.Status.SUSPENDED
    reason = f"{ev.short(event_type)} from {stream.name}"
    if payload.get("reason"):
        reason += f" ({str(payload['reason'])[:100]})"
    actor = actor_for(stream)
    identity_set_status(identity=identity, status=status, actor=actor, reason=reason)
    done = identity_offboard(
        identity=identity,
        actor=actor,
        why=f"{'purged' if purged else 'disabled'} at {stream.source.name} (Shared Signals)",
        person_left=purged and stream.source.hr_authoritative,
    )
    return {"status": status, **done}


def _identifier_changed(stream: ReceiverStream, identity: Identity, payload: dict) -> dict[str, Any]:
    new = payload.get("new-value")
    try:
        if not isinstance(new, str):
            raise ValidationError("not a string")
        validate_email(new)
    except ValidationError:
        return {"email_changed": False, "why": "new-value is not an email address"}
    old = identity.email
    if old.lower() == new.lower():
        return {"email_changed": False}
    Identity.objects.filter(pk=identity.pk).update(email=new)
    identity.email = new
    record(
        "identity.email_changed",
        actor=actor_for(stream),
        source=stream.source_id,
        target=identity,
        data={"from": old, "to": new, "via": "risc:identifier-changed"},
    )
    return {"email_changed": True, "from": old, "to": new}


def _device_compliance(stream: ReceiverStream, device: Device, payload: dict) -> dict[str, Any]:
    current = payload.get("current_status")
    if current not in ("compliant", "not-compliant"):
        return {"device_changed": False, "why": "current_status is neither compliant nor not-compliant"}
    compliant = current == "compliant"
    if device.compliant == compliant:
        return {"device_changed": False, "compliant": compliant}
    Device.objects.filter(pk=device.pk).update(compliant=compliant)
    record(
        "device.compliance_changed",
        actor=actor_for(stream),
        source=stream.source_id,
        device=device,
        target=device,
        data={"compliant": compliant, "previous_status": payload.get("previous_status"), "via": "caep"},
    )
    return {"device_changed": True, "compliant": compliant}


def _act(
    stream: ReceiverStream, claims: dict[str, Any], *, known: Known | None = None
) -> tuple[str, Identity | None, dict, dict]:
    """Act on each event of a verified SET; return (outcome, identity, subject, summary)."""
    outcome = ReceivedSet.Outcome.RECORDED
    found: Identity | None = None
    subject: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for event_type, payload in claims["events"].items():
        name = ev.short(event_type)
        subject = ev.subject_of(claims, payload) or subject
        if event_type in ev.STREAM:
            summary[name] = {"stream_event": True}
            continue
        if event_type == ev.DEVICE_COMPLIANCE_CHANGE:
            device = match_device(stream, subject)
            if device is None:
                summary[name] = {"unknown_subject": True}
                outcome = ReceivedSet.Outcome.UNKNOWN_SUBJECT
                continue
            if known is not None:
                known.fresh = False
            summary[name] = _device_compliance(stream, device, payload)
            outcome = ReceivedSet.Outcome.ACTED
            found = found or (
                Identity.objects.filter(pk=device.owner_id).first() if device.owner_id else None
            )
            continue
        identity = match_identity(stream, subject, known=known)
        if identity is None:
            summary[name] = {"unknown_subject": True}
            outcome = ReceivedSet.Outcome.UNKNOWN_SUBJECT
            continue
        found = identity
        if known is not None and event_type in WRITES:
            known.fresh = False  # what follows in this batch reads the register as it now is
        if event_type in ev.OFFBOARDING:
            summary[name] = _offboard(stream, identity, event_type, payload)
            outcome = ReceivedSet.Outcome.ACTED
        elif event_type == ev.IDENTIFIER_CHANGED:
            summary[name] = _identifier_changed(stream, identity, payload)
            outcome = ReceivedSet.Outcome.ACTED
        else:  # RECORD_ONLY: nothing Lanyard holds is a session or a password
            summary[name] = {"recorded": True, "revocable": "nothing: Lanyard holds no session or password"}
    return outcome, found, subject, summary


# ------------------------------------------------------------------------------------------ receive


def _refuse(stream: ReceiverStream | None, exc: Refused, *, ip: str | None, kid: str | None) -> Result:
    record(
        "ssf.set_refused",
        actor=actor_for(stream) if stream else "ssf",
        outcome=AuditEvent.Outcome.DENIED,
        source=stream.source_id if stream else None,
        target=stream,
        ip=ip,
        data={"err": exc.err, "description": exc.description, "kid": (kid or "")[:100]},
    )
    return Result(400, {"err": exc.err, "description": exc.description})


def refuse(stream: ReceiverStream | None, err: str, description: str, *, ip: str | None = None) -> Result:
    """Record and answer a SET refused before verification (wrong content type, too large, disabled)."""
    return _refuse(stream, Refused(err, description), ip=ip, kid=None)


def _store(received: ReceivedSet) -> int | None:
    """INSERT the verified SET unless its (issuer, jti) is stored already; return its id, None if so.

    One statement, ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: the unique constraint is the
    replay guard, with no read before the write and no savepoint around it. (Django's
    ``bulk_create(ignore_conflicts=True)`` cannot tell an insert from a conflict.)
    """
    connection = connections[ReceivedSet.objects.db]
    quote = connection.ops.quote_name
    fields = _STORED_FIELDS
    sql = (
        f"INSERT INTO {quote(ReceivedSet._meta.db_table)} "  # noqa: S608 - our identifiers only
        f"({', '.join(quote(f.column) for f in fields)}) VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote('issuer')}, {quote('jti')}) DO NOTHING RETURNING {quote('id')}"
    )
    params = [f.get_db_prep_save(getattr(received, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


_STORED_FIELDS = [f for f in ReceivedSet._meta.concrete_fields if not f.primary_key]


def receive(stream: ReceiverStream, token: str, *, ip: str | None = None) -> Result:
    """Verify one SET and store it for the processor (one durable write); return the RFC 8935 answer.

    Acting on it and its ``ssf.set_received`` audit event follow in ``received_process``, scheduled
    when the row commits. A refused SET is audited here, at once; a replay too (acknowledged, not
    acted on again).
    """
    if not stream.enabled:
        return refuse(stream, "access_denied", "This stream is disabled in Lanyard.", ip=ip)
    try:
        claims = verify(stream, token)
    except Refused as exc:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.DecodeError:
            kid = None
        return _refuse(stream, exc, ip=ip, kid=kid if isinstance(kid, str) else None)
    types = [ev.short(t) for t in claims["events"]]
    received = ReceivedSet(
        stream=stream,
        issuer=claims["iss"],
        jti=claims["jti"],
        event_types=types,
        claims=claims,
        ip=normalise_ip(ip),
        issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
    )
    received.pk = _store(received)
    if received.pk is None:
        with transaction.atomic():
            ReceivedSet.objects.filter(issuer=received.issuer, jti=received.jti).update(
                replays=F("replays") + 1
            )
            record(
                "ssf.set_replayed",
                actor=actor_for(stream),
                source=stream.source_id,
                target=stream,
                ip=ip,
                data={"jti": received.jti, "iss": received.issuer, "events": types},
            )
        return Result(202, None, replayed=True)
    transaction.on_commit(schedule_processing, robust=True)
    return Result(202, None, received=received)


# ------------------------------------------------------------------------------------------ process

SCHEDULED_KEY = "lanyard:ssf-process-scheduled"


def schedule_processing() -> None:
    """Ask a worker to process the pending SETs now, unless a run is already asked for."""
    from .tasks import process_received

    # Deduplicated like the ingest's usage roll-up: a burst of SETs queues one task.
    enqueue_once(process_received, SCHEDULED_KEY, hold=settings.LANYARD_SSF_PROCESS_SWEEP_SECONDS + 60)


@dataclass
class Processed:
    processed: int = 0  # acted on, recorded or unknown subject, with their audit events
    failed: int = 0  # an error while acting: marked failed and audited
    retry: int = 0  # a transient database error: left pending for the next run


def _pending(batch: int):
    pending = (
        ReceivedSet.objects.filter(processed_at__isnull=True).select_related("stream__source").order_by("pk")
    )
    if connections[pending.db].vendor == "postgresql":
        # Two processors never take the same SET: each skips the rows another has locked.
        pending = pending.select_for_update(skip_locked=True, of=("self",))
    # SQLite has no row locks; its write lock makes a second, concurrent processor fail (and retry)
    # rather than act on rows the first one has committed.
    return list(pending[:batch])


_OUTCOME_FIELDS = ["outcome", "identity", "subject", "summary", "processed_at"]


def _save_outcomes(rows: list[ReceivedSet]) -> None:
    """Write the batch's outcomes: one UPDATE ... FROM a JSON recordset on PostgreSQL.

    Django's ``bulk_update`` builds a CASE per field and row, which costs more than the batch's
    whole processing; the recordset is one parameter the server unpacks.
    """
    connection = connections[ReceivedSet.objects.db]
    if connection.vendor != "postgresql":
        ReceivedSet.objects.bulk_update(rows, _OUTCOME_FIELDS)
        return
    quote = connection.ops.quote_name
    meta = ReceivedSet._meta
    col = {name: quote(meta.get_field(name).column) for name in ["id", *_OUTCOME_FIELDS]}
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET "  # noqa: S608 - our identifiers only
        f"{col['outcome']} = v.outcome, {col['identity']} = v.identity, "
        f"{col['subject']} = v.subject, {col['summary']} = v.summary, {col['processed_at']} = %s "
        "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, outcome text, identity bigint, "
        f"subject jsonb, summary jsonb) WHERE t.{col['id']} = v.id"
    )
    values = [
        {
            "id": r.pk,
            "outcome": r.outcome,
            "identity": r.identity_id,
            "subject": r.subject,
            "summary": r.summary,
        }
        for r in rows
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows[0].processed_at, json.dumps(jsonable(values))])


def received_process(*, batch: int | None = None) -> Processed:
    """Act on up to ``batch`` pending SETs, each with its outcome, in one transaction; audit them in bulk."""
    batch = batch or settings.LANYARD_SSF_PROCESS_BATCH
    done = Processed()
    with transaction.atomic():
        rows = _pending(batch)
        if not rows:
            return done
        now = timezone.now()
        events: list[dict[str, Any]] = []
        finished: list[ReceivedSet] = []
        known = Known(rows)
        for received in rows:
            stream = received.stream
            base = {"jti": received.jti, "iss": received.issuer, "events": received.event_types}
            audit_outcome = AuditEvent.Outcome.SUCCESS
            writes = any(t in WRITES for t in received.claims.get("events", {}))
            try:
                if writes:
                    # A savepoint per SET that changes the register: an error undoes what this SET
                    # had done, not the batch. The others only read (no savepoint round trips).
                    with transaction.atomic():
                        outcome, identity, subject, summary = _act(stream, received.claims, known=known)
                else:
                    outcome, identity, subject, summary = _act(stream, received.claims, known=known)
            except OperationalError:
                if not writes:
                    raise  # outside a savepoint the transaction is spoilt: the whole batch is retried
                # A lock conflict or a lost connection: the SET stays pending for the next run.
                logger.warning("SSF: SET %s will be processed again", received.pk, exc_info=True)
                done.retry += 1
                continue
            except DatabaseError:
                if not writes:
                    raise
                logger.exception("SSF: acting on SET %s failed", received.pk)
                outcome, identity, subject, summary = (
                    ReceivedSet.Outcome.FAILED,
                    None,
                    {},
                    {"error": "DatabaseError"},
                )
                audit_outcome = AuditEvent.Outcome.FAILURE
                done.failed += 1
            except Exception as exc:  # noqa: BLE001 - one bad SET must not hold up the others
                logger.exception("SSF: acting on SET %s failed", received.pk)
                outcome, identity, subject = ReceivedSet.Outcome.FAILED, None, {}
                summary = {"error": type(exc).__name__}
                audit_outcome = AuditEvent.Outcome.FAILURE
                done.failed += 1
            else:
                done.processed += 1
            received.outcome, received.identity, received.subject, received.summary = (
                outcome,
                identity,
                subject,
                summary,
            )
            received.processed_at = now
            finished.append(received)
            events.append(
                {
                    "action": "ssf.set_received",
                    "actor": actor_for(stream),
                    "outcome": audit_outcome,
                    "source": stream.source_id,
                    "target": identity or stream,
                    "ip": received.ip,
                    "occurred_at": received.received_at,
                    "data": {
                        **base,
                        "outcome": outcome,
                        "stream": str(stream.pk),
                        "subject": subject,
                        "summary": summary,
                        **({"replays": received.replays} if received.replays else {}),
                    },
                }
            )
        if finished:
            _save_outcomes(finished)
            # Every SET's event under one chain lock, in the transaction of what was done about it.
            record_batch(events, deduplicate=False)
    return done


def received_process_pending(*, budget_seconds: float = 30.0) -> Processed:
    """Process pending SETs batch after batch until none is left (or the time budget is spent)."""
    total = Processed()
    started = time.monotonic()
    batch = settings.LANYARD_SSF_PROCESS_BATCH
    while True:
        done = received_process(batch=batch)
        total.processed += done.processed
        total.failed += done.failed
        total.retry += done.retry
        if done.processed + done.failed + done.retry < batch or done.retry:
            return total
        if time.monotonic() - started > budget_seconds:
            transaction.on_commit(schedule_processing, robust=True)  # the rest in the next run
            return total
