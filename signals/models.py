"""Shared Signals receiver streams (one per identity source's SSF transmitter) and the SETs received.

A ``ReceiverStream`` is what IAM configures for an IdP that pushes Security Event Tokens (RFC 8417) to
Lanyard (RFC 8935): the transmitter's issuer, its JWKS and the audience it puts in every SET. Its
primary key is a random UUID, so the push URL (``/ssf/receive/<id>``) is not guessable.

A ``ReceivedSet`` is one *verified* SET: ``(issuer, jti)`` is unique, so a SET pushed twice (a
transmitter retrying after a lost acknowledgement) is acknowledged and not acted on twice. The push
answers 202 once the row is stored (the verified claims with it); the processor
(``signals.services.received_process``) acts on pending rows in batches and sets ``processed_at``.
Refused SETs leave no row (their ``jti`` is unauthenticated); they are in the audit trail with the
reason.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from connectors import crypto
from connectors.models import Identity, IdentitySource


class ReceiverStream(models.Model):
    """An SSF stream Lanyard receives on: which transmitter, which keys, which audience."""

    class Delivery(models.TextChoices):
        PUSH = "push", "Push (RFC 8935): the transmitter posts SETs to Lanyard"
        POLL = "poll", "Poll (RFC 8936): Lanyard fetches SETs from the transmitter"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    source = models.ForeignKey(
        IdentitySource,
        on_delete=models.PROTECT,
        related_name="ssf_streams",
        help_text="The identity source whose people the SETs are about (subjects are matched in it).",
    )
    issuer = models.CharField(max_length=500, help_text="The transmitter's issuer: every SET's iss.")
    jwks_url = models.URLField(max_length=500, help_text="The transmitter's JWKS (jwks_uri).")
    configuration_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="The transmitter's /.well-known/ssf-configuration, for reference.",
    )
    audience = models.CharField(
        max_length=500, help_text="The aud the transmitter puts in SETs for Lanyard (the stream's audience)."
    )
    enabled = models.BooleanField(default=True)
    delivery = models.CharField(max_length=8, choices=Delivery.choices, default=Delivery.PUSH)
    poll_url = models.URLField(
        max_length=500, blank=True, help_text="Poll delivery: the transmitter's endpoint_url for this stream."
    )
    # Poll delivery: the Authorization header value Lanyard sends to the transmitter, encrypted.
    poll_authorization_encrypted = models.TextField(blank=True, editable=False)
    # SHA-256 (hex) of the Authorization header the transmitter sends with each push (the stream's
    # delivery.authorization_header); blank: none required. The secret itself is never stored.
    authorization_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_authorization(self, header_value: str) -> None:
        """Require this Authorization header value on every push ("" to require none)."""
        self.authorization_hash = hashlib.sha256(header_value.encode()).hexdigest() if header_value else ""

    def set_poll_authorization(self, header_value: str) -> None:
        self.poll_authorization_encrypted = (
            crypto.encrypt_json({"authorization": header_value}) if header_value else ""
        )

    @property
    def poll_authorization(self) -> str:
        if not self.poll_authorization_encrypted:
            return ""
        return crypto.decrypt_json(self.poll_authorization_encrypted).get("authorization", "")

    def authorization_ok(self, header_value: str | None) -> bool:
        if not self.authorization_hash:
            return True
        given = hashlib.sha256((header_value or "").encode()).hexdigest()
        return hmac.compare_digest(given, self.authorization_hash)


class ReceivedSet(models.Model):
    """A verified SET: the replay guard and the record of what Lanyard did about it."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending (stored, not yet processed)"
        ACTED = "acted", "Acted on"
        RECORDED = "recorded", "Recorded (nothing to act on)"
        UNKNOWN_SUBJECT = "unknown_subject", "Unknown subject (ignored)"
        FAILED = "failed", "Failed (an error while acting; see the audit trail)"

    stream = models.ForeignKey(ReceiverStream, on_delete=models.CASCADE, related_name="received")
    issuer = models.CharField(max_length=500)
    jti = models.CharField(max_length=255)
    event_types = models.JSONField(default=list)
    subject = models.JSONField(default=dict, blank=True)
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.SET_NULL, related_name="security_events"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    summary = models.JSONField(default=dict, blank=True)
    # The verified claims (never the token itself), for the processor to act on.
    claims = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    issued_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The same SET pushed again (a transmitter's retry): acknowledged, counted, audited, not acted on.
    replays = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "jti"], name="receivedset_unique_jti_per_issuer")
        ]
        indexes = [
            # The processor's queue: pending rows in arrival order, a small index however many SETs.
            models.Index(fields=["id"], condition=Q(processed_at__isnull=True), name="receivedset_pending")
        ]

    def __str__(self) -> str:
        return f"{self.jti} from {self.issuer}"


# ------------------------------------------------------------------------------------ transmitter
#
# Lanyard as an SSF transmitter: its signing keys, the receivers IAM authorises (gateways, IdPs),
# their streams, the subjects a stream asked for, and the outbox of SETs to deliver.


class SigningKey(models.Model):
    """One of Lanyard's SET signing keys: the private key encrypted at rest, the public JWK published."""

    kid = models.CharField(max_length=64, unique=True)
    alg = models.CharField(max_length=8)
    public_jwk = models.JSONField()
    private_key_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Set when a newer key replaced this one; the key stays in the JWKS for the retention period.
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kid} ({self.alg})"

    @property
    def is_active(self) -> bool:
        return self.retired_at is None


class TransmitterReceiver(models.Model):
    """A receiver IAM authorised (a gateway, an IdP): it manages its own streams with a bearer token."""

    name = models.CharField(max_length=100, unique=True)
    audience = models.CharField(
        max_length=500,
        blank=True,
        help_text="The aud of every SET sent to this receiver's streams (what the receiver expects). "
        "Empty: the receiver's name.",
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def aud(self) -> str:
        return self.audience or self.name


class TransmitterStream(models.Model):
    """One SSF stream of a receiver (SSF 1.0 §8.1.1): what it wants and how it is delivered."""

    class Method(models.TextChoices):
        PUSH = "urn:ietf:rfc:8935", "Push (RFC 8935)"
        POLL = "urn:ietf:rfc:8936", "Poll (RFC 8936)"

    class Status(models.TextChoices):
        ENABLED = "enabled", "Enabled"
        PAUSED = "paused", "Paused (events held)"
        DISABLED = "disabled", "Disabled (events dropped)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    receiver = models.ForeignKey(TransmitterReceiver, on_delete=models.CASCADE, related_name="streams")
    description = models.CharField(max_length=500, blank=True)
    events_requested = models.JSONField(default=list, blank=True)
    method = models.CharField(max_length=32, choices=Method.choices, default=Method.PUSH)
    endpoint_url = models.URLField(max_length=500, blank=True, help_text="Push: where SETs are posted.")
    # Push: the Authorization header value sent with each push (delivery.authorization_header), encrypted.
    authorization_encrypted = models.TextField(blank=True, editable=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ENABLED)
    status_reason = models.CharField(max_length=500, blank=True)
    # "ALL": events about every subject unless removed; "NONE": only about subjects added (SSF §8.1.3).
    default_subjects = models.CharField(
        max_length=4, choices=[("ALL", "All subjects"), ("NONE", "Added subjects only")], default="ALL"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.receiver.name}: {self.description or self.pk}"

    def set_authorization(self, header_value: str) -> None:
        self.authorization_encrypted = (
            crypto.encrypt_json({"authorization": header_value}) if header_value else ""
        )

    @property
    def authorization(self) -> str:
        if not self.authorization_encrypted:
            return ""
        return crypto.decrypt_json(self.authorization_encrypted).get("authorization", "")


class StreamSubject(models.Model):
    """A subject a receiver added to (or removed from) a stream; ``key`` is its normalised identifier."""

    stream = models.ForeignKey(TransmitterStream, on_delete=models.CASCADE, related_name="subjects")
    key = models.CharField(max_length=600)
    subject = models.JSONField()
    included = models.BooleanField(default=True)
    verified = models.BooleanField(default=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "key"], name="streamsubject_unique_key")]

    def __str__(self) -> str:
        return f"{'+' if self.included else '-'}{self.key}"


class OutboxSet(models.Model):
    """A SET Lanyard owes one stream: written with the change it reports, delivered at least once."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered (push accepted; poll served, not yet acknowledged)"
        ACKNOWLEDGED = "acknowledged", "Acknowledged (poll)"
        DEAD = "dead", "Dead (gave up; replay from the admin)"

    stream = models.ForeignKey(TransmitterStream, on_delete=models.CASCADE, related_name="outbox")
    jti = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=200)
    subject = models.JSONField(default=dict)
    # The SET's claims but iat: signed at each delivery, so a SET held by a pause or a backoff is
    # still fresh at the receiver, and signed with the current key.
    claims = models.JSONField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="outboxset_due"),
            models.Index(fields=["stream", "state", "id"], name="outboxset_stream_state"),
        ]

    def __str__(self) -> str:
        return f"{self.jti} ({self.state})"
