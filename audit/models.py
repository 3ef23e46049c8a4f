"""The audit trail: append-only events on a hash chain, signed checkpoints, gateway ingest keys."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AppendOnlyError(Exception):
    """Audit records are never changed or deleted."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: UPDATE is refused.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: DELETE is refused.")

    _raw_delete = delete


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only: UPDATE is refused.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only: DELETE is refused.")


def _ref(model: str, related_name: str = "+"):
    # Audit rows outlive what they point at: no database constraint, nothing cascades. No index of
    # its own either: every index costs each appended event, and the reports reach events by
    # connector, identity and device through the composite indexes in Meta (see migration 0007).
    return models.ForeignKey(
        model,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name=related_name,
    )


class AuditEvent(AppendOnlyModel):
    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"
        UNKNOWN = "unknown", "Unknown"

    sequence = models.BigIntegerField(unique=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.SUCCESS)
    actor_user = _ref(settings.AUTH_USER_MODEL)
    actor_identity = _ref("connectors.Identity", "audit_events")
    actor_label = models.CharField(
        max_length=254, blank=True, help_text="e.g. system, a gateway, an email as given"
    )
    device = _ref("connectors.Device", "audit_events")
    connector = _ref("connectors.Connector", "audit_events")
    grant = _ref("connectors.Grant", "audit_events")
    source = _ref("connectors.IdentitySource")
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    external_id = models.CharField(
        max_length=200, null=True, blank=True, help_text="Event id from a gateway or IdP log (idempotency)."
    )
    ingest_key = _ref("audit.IngestKey")
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(external_id__isnull=False),
                name="auditevent_unique_external_id",
            ),
        ]
        indexes = [
            models.Index(fields=["action", "-occurred_at"], name="audit_action_time_idx"),
            models.Index(fields=["connector", "-occurred_at"], name="audit_connector_time_idx"),
            models.Index(fields=["actor_identity", "-occurred_at"], name="audit_identity_time_idx"),
            models.Index(fields=["device", "-occurred_at"], name="audit_device_time_idx"),
            models.Index(fields=["-occurred_at"], name="audit_time_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action}"


class AuditChainHead(models.Model):
    """The one row holding the chain head; writers lock it so sequences stay contiguous."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="auditchainhead_single_row")]

    def __str__(self) -> str:
        return f"head @ #{self.sequence}"


class AuditCheckpoint(AppendOnlyModel):
    """A signed statement of the chain head; each covers the previous checkpoint's signature."""

    created_at = models.DateTimeField(default=timezone.now)
    sequence = models.BigIntegerField(help_text="Sequence number of the chain head (0 when empty).")
    head_hash = models.CharField(max_length=64)
    prev_signature = models.TextField(blank=True)
    signature = models.TextField()
    key_id = models.CharField(max_length=64)
    # The key that signed the previous checkpoint (signed too): a rotation names the key it replaces.
    # Blank on the first checkpoint and on checkpoints made before key rotation existed.
    prev_key_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"checkpoint @ #{self.sequence}"


class AuditSigningKey(AppendOnlyModel):
    """The public half of every key that ever signed checkpoints, in the order they took over.

    Append-only: a key is never removed (old checkpoints stay verifiable). The first key is
    registered by the first checkpoint; each later one by ``audit_rotate_signing_key``, which has the
    previous key sign ``endorsement`` over the new key (``audit.checkpoints.endorsement_message``), so
    whoever trusts the first public key can trust its successors without asking the database.
    A key is retired once a checkpoint signed by its successor exists.
    """

    key_id = models.CharField(max_length=16, unique=True)
    public_key = models.TextField(help_text="PEM (SubjectPublicKeyInfo), Ed25519.")
    previous_key_id = models.CharField(max_length=16, blank=True)
    endorsement = models.TextField(blank=True, help_text="The previous key's signature over this key.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["previous_key_id"], name="auditsigningkey_one_successor_each"),
        ]

    def __str__(self) -> str:
        return f"audit signing key {self.key_id}"


class IngestKey(models.Model):
    """An API key for one AI gateway; only a hash is kept, the key is shown once at creation.

    Its scopes say what the gateway may do: report activity (``events:write``, the ingest API) and,
    as a policy enforcement point, ask for decisions (``access:evaluate``, ``access:search``).
    """

    class Scope(models.TextChoices):
        EVENTS_WRITE = "events:write", "Post AI activity events"
        ACCESS_EVALUATE = "access:evaluate", "Ask for access decisions (AuthZEN evaluation, evaluations)"
        ACCESS_SEARCH = "access:search", "Search who and what is permitted (AuthZEN search)"

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    # A policy enforcement point asks far more often than a gateway reports: its own budget.
    decisions_per_minute = models.PositiveIntegerField(
        default=120_000, help_text="Access decisions (AuthZEN requests) this key may ask per minute."
    )
    reports_devices = models.BooleanField(
        default=True,
        help_text=(
            "The gateway names the person's device in its questions (subject.properties.device). "
            "Lanyard's own MCP gateway cannot see devices: its key says so, and the default policy "
            "then asks no device of it (high-risk connectors still need a compliant one)."
        ),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "gateway key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UsageRollup(models.Model):
    """How far along the chain grants' and devices' usage times have been rolled up (one row).

    Ingest only appends events; ``activity.usage`` moves ``Grant.last_used_at`` and
    ``Device.last_seen`` forward from them afterwards and records here the last sequence it read.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    sequence = models.BigIntegerField(default=0)
    rolled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="usagerollup_single_row")]

    def __str__(self) -> str:
        return f"usage rolled up to #{self.sequence}"
