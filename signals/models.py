"""Shared Signals receiver streams (one per identity source's SSF transmitter) and the SETs received.

A ``ReceiverStream`` is what IAM configures for an IdP that pushes Security Event Tokens (RFC 8417) to
Lanyard (RFC 8935): the transmitter's issuer, its JWKS and the audience it puts in every SET. Its
primary key is a random UUID, so the push URL (``/ssf/receive/<id>``) is not guessable.

A ``ReceivedSet`` is one *verified* SET: ``(issuer, jti)`` is unique, so a SET pushed twice (a
transmitter retrying after a lost acknowledgement) is acknowledged and not acted on twice. Refused SETs
leave no row (their ``jti`` is unauthenticated); they are in the audit trail with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from django.db import models
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
        ACTED = "acted", "Acted on"
        RECORDED = "recorded", "Recorded (nothing to act on)"
        UNKNOWN_SUBJECT = "unknown_subject", "Unknown subject (ignored)"

    stream = models.ForeignKey(ReceiverStream, on_delete=models.CASCADE, related_name="received")
    issuer = models.CharField(max_length=500)
    jti = models.CharField(max_length=255)
    event_types = models.JSONField(default=list)
    subject = models.JSONField(default=dict, blank=True)
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.SET_NULL, related_name="security_events"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RECORDED)
    summary = models.JSONField(default=dict, blank=True)
    issued_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "jti"], name="receivedset_unique_jti_per_issuer")
        ]

    def __str__(self) -> str:
        return f"{self.jti} from {self.issuer}"
