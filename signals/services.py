"""Receiving a Security Event Token: verify it (PyJWT), guard against replay, act on it, audit it.

``receive`` is the whole receiver: the push view (``signals.views``) only reads the body. Every SET
ends in the audit trail: ``ssf.set_received`` (verified, with what was done), ``ssf.set_replayed``
(seen before: acknowledged, not acted on again) or ``ssf.set_refused`` (with the RFC 8935 error code
and why). A refused SET's claims are unauthenticated, so only its header's ``kid`` and what the
refusal needs are recorded, never the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from connectors.models import Device, Identity

from . import events as ev
from . import jwks
from .models import ReceivedSet, ReceiverStream

logger = logging.getLogger(__name__)

TYPES = (None, "secevent+jwt", "application/secevent+jwt", "JWT")


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


def match_identity(stream: ReceiverStream, subject: dict[str, Any]) -> Identity | None:
    """The identity of the stream's source that ``subject`` names (email, iss_sub, opaque, complex...)."""
    fmt = ev.subject_format(subject)
    identities = Identity.objects.filter(source_id=stream.source_id).select_related("source")
    if fmt == "complex":
        user = subject.get("user")
        return match_identity(stream, user) if isinstance(user, dict) else None
    if fmt == "aliases":
        for alias in subject.get("identifiers") or []:
            if isinstance(alias, dict) and (found := match_identity(stream, alias)):
                return found
        return None
    if fmt == "email":
        email = subject.get("email")
        return (
            identities.filter(email__iexact=email).order_by("pk").first() if isinstance(email, str) else None
        )
    if fmt == "account":
        uri = subject.get("uri")
        if isinstance(uri, str) and uri.startswith("acct:"):
            return identities.filter(email__iexact=uri[5:]).order_by("pk").first()
        return None
    if fmt == "iss_sub":
        if subject.get("iss") != stream.issuer or not isinstance(subject.get("sub"), str):
            return None
        return identities.filter(external_id=subject["sub"]).first()
    if fmt == "opaque":
        return (
            identities.filter(external_id=subject["id"]).first()
            if isinstance(subject.get("id"), str)
            else None
        )
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


def _act(stream: ReceiverStream, claims: dict[str, Any]) -> tuple[str, Identity | None, dict, dict]:
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
            summary[name] = _device_compliance(stream, device, payload)
            outcome = ReceivedSet.Outcome.ACTED
            found = found or (
                Identity.objects.filter(pk=device.owner_id).first() if device.owner_id else None
            )
            continue
        identity = match_identity(stream, subject)
        if identity is None:
            summary[name] = {"unknown_subject": True}
            outcome = ReceivedSet.Outcome.UNKNOWN_SUBJECT
            continue
        found = identity
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


def receive(stream: ReceiverStream, token: str, *, ip: str | None = None) -> Result:
    """Verify, de-duplicate, act on and audit one pushed SET; return the RFC 8935 answer."""
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
    base = {"jti": claims["jti"], "iss": claims["iss"], "events": types}
    # One transaction: the replay guard and what was done commit together, so a SET whose handling
    # failed is not marked seen and the transmitter's retry acts on it.
    with transaction.atomic():
        try:
            with transaction.atomic():
                received = ReceivedSet.objects.create(
                    stream=stream,
                    issuer=claims["iss"],
                    jti=claims["jti"],
                    event_types=types,
                    issued_at=datetime.fromtimestamp(claims["iat"], tz=UTC),
                )
        except IntegrityError:
            record(
                "ssf.set_replayed",
                actor=actor_for(stream),
                source=stream.source_id,
                target=stream,
                ip=ip,
                data=base,
            )
            return Result(202, None, replayed=True)
        outcome, identity, subject, summary = _act(stream, claims)
        received.outcome, received.identity, received.subject, received.summary = (
            outcome,
            identity,
            subject,
            summary,
        )
        received.save(update_fields=["outcome", "identity", "subject", "summary"])
        record(
            "ssf.set_received",
            actor=actor_for(stream),
            source=stream.source_id,
            target=identity or stream,
            ip=ip,
            data={
                **base,
                "outcome": outcome,
                "stream": str(stream.pk),
                "subject": subject,
                "summary": summary,
            },
        )
    return Result(202, None, received=received)
