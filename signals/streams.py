"""Stream management for the receivers Lanyard transmits to (SSF 1.0 §8): tokens, streams, status, subjects.

Every change is one transaction with its audit event (``ssf.stream_*``, ``ssf.receiver_*``). Input
is validated here and refused with ``StreamError`` (status + message), which the API answers as JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from audit.services import record

from . import outbox
from .models import OutboxSet, StreamSubject, TransmitterReceiver, TransmitterStream

TOKEN_PREFIX = "lssf"
MAX_EVENTS_REQUESTED = 50
MAX_STREAMS = 20  # per receiver
RECEIVER_FIELDS = ("events_requested", "delivery", "description")
_DUMMY = hashlib.sha256(b"lanyard-no-such-receiver").hexdigest()


class StreamError(Exception):
    """A stream management request refused, with the HTTP status and a message for the receiver."""

    def __init__(self, status: int, err: str, description: str):
        super().__init__(description)
        self.status, self.err, self.description = status, err, description


def _bad(description: str) -> StreamError:
    return StreamError(400, "invalid_request", description)


def actor_for(receiver: TransmitterReceiver) -> str:
    return f"ssf-receiver:{receiver.name}"


# ------------------------------------------------------------------------------------ receivers


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def receiver_create(*, name: str, actor: Any, audience: str = "") -> tuple[TransmitterReceiver, str]:
    """Authorise a receiver; return it with its bearer token, which is shown once and never stored."""
    prefix = secrets.token_hex(6)
    raw = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        receiver = TransmitterReceiver.objects.create(
            name=name,
            audience=audience,
            prefix=prefix,
            token_hash=hash_token(raw),
            created_by=actor if isinstance(actor, AbstractBaseUser) else None,
        )
        record(
            "ssf.receiver_created", actor=actor, target=receiver, data={"prefix": prefix, "aud": receiver.aud}
        )
    return receiver, raw


def receiver_revoke(*, receiver: TransmitterReceiver, actor: Any) -> TransmitterReceiver:
    """Revoke a receiver's token: its requests are refused and its streams get nothing more."""
    with transaction.atomic():
        receiver = TransmitterReceiver.objects.select_for_update().get(pk=receiver.pk)
        if receiver.revoked_at is not None:
            return receiver
        receiver.revoked_at = timezone.now()
        receiver.save(update_fields=["revoked_at"])
        record("ssf.receiver_revoked", actor=actor, target=receiver, data={"prefix": receiver.prefix})
    return receiver


def authenticate(header: str | None) -> TransmitterReceiver | None:
    """Return the active receiver an ``Authorization: Bearer`` header names, or None."""
    scheme, _, raw = (header or "").partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        return None
    parts = raw.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == TOKEN_PREFIX else ""
    receiver = TransmitterReceiver.objects.filter(prefix=prefix).first() if prefix else None
    # Compare even when nothing matched, so a wrong prefix and a wrong secret take the same time.
    ok = hmac.compare_digest(hash_token(raw), receiver.token_hash if receiver else _DUMMY)
    if receiver is None or not ok or receiver.revoked_at is not None:
        return None
    now = timezone.now()
    if receiver.last_used_at is None or (now - receiver.last_used_at).total_seconds() > 60:
        TransmitterReceiver.objects.filter(pk=receiver.pk).update(last_used_at=now)  # bookkeeping
    return receiver


# ------------------------------------------------------------------------------------ configuration


def _validate(data: Any, *, partial: bool) -> dict[str, Any]:
    """Return the receiver-supplied fields of a stream configuration, checked; raise StreamError."""
    if not isinstance(data, dict):
        raise _bad("The stream configuration must be a JSON object.")
    out: dict[str, Any] = {}
    if "events_requested" in data or not partial:
        events = data.get("events_requested", list(outbox.SUPPORTED))
        if not isinstance(events, list) or not all(isinstance(e, str) and 0 < len(e) <= 200 for e in events):
            raise _bad("events_requested must be a list of event type URIs.")
        if len(events) > MAX_EVENTS_REQUESTED:
            raise _bad(f"events_requested holds at most {MAX_EVENTS_REQUESTED} event types.")
        out["events_requested"] = list(dict.fromkeys(events))
    if "description" in data or not partial:
        description = data.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            raise _bad("description must be a string of at most 500 characters.")
        out["description"] = description
    if "delivery" in data or not partial:
        delivery = data.get("delivery", {"method": TransmitterStream.Method.POLL})
        if not isinstance(delivery, dict):
            raise _bad("delivery must be an object with a method.")
        method = delivery.get("method")
        if method not in TransmitterStream.Method.values:
            raise _bad(f"delivery.method must be {' or '.join(TransmitterStream.Method.values)}.")
        out["method"] = method
        if method == TransmitterStream.Method.PUSH:
            url = delivery.get("endpoint_url")
            try:
                if not isinstance(url, str) or len(url) > 500:
                    raise ValidationError("bad")
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError:
                raise _bad("Push delivery needs delivery.endpoint_url, an http(s) URL.") from None
            out["endpoint_url"] = url
            auth = delivery.get("authorization_header", "")
            if not isinstance(auth, str) or len(auth) > 2000:
                raise _bad("delivery.authorization_header must be a string.")
            out["authorization"] = auth
        else:
            out["endpoint_url"] = ""
            out["authorization"] = ""
    return out


def _apply(stream: TransmitterStream, fields: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in fields.items():
        if name == "authorization":
            if value != stream.authorization:
                stream.set_authorization(value)
                changed.append(name)
            continue
        if getattr(stream, name) != value:
            setattr(stream, name, value)
            changed.append(name)
    return changed


def stream_create(*, receiver: TransmitterReceiver, data: Any) -> TransmitterStream:
    """Create a stream for the receiver from its configuration (SSF §8.1.1.1)."""
    fields = _validate(data, partial=False)
    with transaction.atomic():
        TransmitterReceiver.objects.select_for_update().get(pk=receiver.pk)
        if receiver.streams.count() >= MAX_STREAMS:
            raise StreamError(409, "too_many_streams", f"A receiver has at most {MAX_STREAMS} streams.")
        stream = TransmitterStream(receiver=receiver)
        _apply(stream, fields)
        stream.save()
        record(
            "ssf.stream_created",
            actor=actor_for(receiver),
            target=stream,
            data={
                "stream": str(stream.pk),
                "method": stream.method,
                "events": outbox.events_delivered(stream),
            },
        )
    return stream


def stream_update(*, stream: TransmitterStream, data: Any, replace: bool) -> TransmitterStream:
    """Update (PATCH) or replace (PUT) a stream's receiver-supplied configuration (SSF §8.1.1.3–4)."""
    fields = _validate(data, partial=not replace)
    with transaction.atomic():
        stream = TransmitterStream.objects.select_for_update().select_related("receiver").get(pk=stream.pk)
        changed = _apply(stream, fields)
        if changed:
            stream.updated_at = timezone.now()
            stream.save()
        record(
            "ssf.stream_replaced" if replace else "ssf.stream_updated",
            actor=actor_for(stream.receiver),
            target=stream,
            data={"stream": str(stream.pk), "changed": changed},
        )
    return stream


def stream_delete(*, stream: TransmitterStream, actor: Any = None) -> None:
    """Delete a stream and its undelivered SETs (SSF §8.1.1.5)."""
    with transaction.atomic():
        stream = TransmitterStream.objects.select_for_update().select_related("receiver").get(pk=stream.pk)
        pending = stream.outbox.filter(state=OutboxSet.State.PENDING).count()
        record(
            "ssf.stream_deleted",
            actor=actor or actor_for(stream.receiver),
            target=stream,
            data={"stream": str(stream.pk), "undelivered_dropped": pending},
        )
        stream.delete()


def stream_set_status(
    *, stream: TransmitterStream, status: Any, reason: Any = "", actor: Any = None
) -> TransmitterStream:
    """Enable, pause (hold events) or disable (drop them) a stream (SSF §8.1.2.2)."""
    if status not in TransmitterStream.Status.values:
        raise _bad(f"status must be one of {', '.join(TransmitterStream.Status.values)}.")
    if not isinstance(reason, str) or len(reason) > 500:
        raise _bad("reason must be a string of at most 500 characters.")
    with transaction.atomic():
        stream = TransmitterStream.objects.select_for_update().select_related("receiver").get(pk=stream.pk)
        previous = stream.status
        stream.status, stream.status_reason, stream.updated_at = status, reason, timezone.now()
        stream.save(update_fields=["status", "status_reason", "updated_at"])
        dropped = 0
        if status == TransmitterStream.Status.DISABLED and previous != status:
            dropped = outbox.stream_drop_pending(
                stream, why=f"stream disabled: {reason}" if reason else "stream disabled"
            )
        if status == TransmitterStream.Status.ENABLED and previous != status:
            outbox.stream_release_held(stream)
        record(
            "ssf.stream_status_changed",
            actor=actor or actor_for(stream.receiver),
            target=stream,
            data={
                "stream": str(stream.pk),
                "from": previous,
                "to": status,
                "reason": reason,
                "dropped": dropped,
            },
        )
    return stream


# ------------------------------------------------------------------------------------ subjects


def _subject(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("subject"), dict):
        raise _bad('subject must be a subject identifier object (RFC 9493), e.g. {"format": "email", ...}.')
    subject = data["subject"]
    if not outbox.subject_keys(subject):
        raise _bad(
            "The subject has no identifier Lanyard understands (email, iss_sub, opaque, account, complex)."
        )
    return subject


def subject_change(*, stream: TransmitterStream, data: Any, include: bool) -> StreamSubject:
    """Add a subject to a stream, or remove it (SSF §8.1.3); events follow the stream's default_subjects."""
    subject = _subject(data)
    verified = data.get("verified", True)
    if not isinstance(verified, bool):
        raise _bad("verified must be true or false.")
    key = outbox.subject_key(subject)
    with transaction.atomic():
        row, _ = StreamSubject.objects.update_or_create(
            stream=stream,
            key=key,
            defaults={
                "subject": subject,
                "included": include,
                "verified": verified,
                "changed_at": timezone.now(),
            },
        )
        record(
            "ssf.stream_subject_added" if include else "ssf.stream_subject_removed",
            actor=actor_for(stream.receiver),
            target=stream,
            data={"stream": str(stream.pk), "subject": subject},
        )
    return row


def stream_verify(*, stream: TransmitterStream, data: Any) -> OutboxSet:
    """Send the stream a verification SET carrying the receiver's ``state`` (SSF §8.1.4.2)."""
    if not isinstance(data, dict):
        raise _bad("The verification request must be a JSON object.")
    state = data.get("state")
    if state is not None and (not isinstance(state, str) or len(state) > 500):
        raise _bad("state must be a string of at most 500 characters.")
    if stream.status == TransmitterStream.Status.DISABLED:
        raise StreamError(409, "stream_disabled", "The stream is disabled: enable it first.")
    return outbox.verification_emit(stream=stream, state=state, actor=actor_for(stream.receiver))
