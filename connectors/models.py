"""The register: identity sources, identities, devices, connectors, their apps and grants."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from . import crypto


class IllegalTransition(Exception):
    """A status change that the lifecycle does not allow."""


def check_transition(transitions: dict[str, set[str]], current: str, new: str, what: str) -> None:
    """Raise IllegalTransition unless ``current`` → ``new`` is in ``transitions``."""
    if new not in transitions.get(current, set()):
        raise IllegalTransition(f"{what} cannot go from '{current}' to '{new}'.")


class IdentitySource(models.Model):
    class Kind(models.TextChoices):
        GOOGLE_WORKSPACE = "google_workspace", "Google Workspace"
        MICROSOFT_ENTRA = "microsoft_entra", "Microsoft Entra ID"
        OKTA = "okta", "Okta"
        GITHUB = "github", "GitHub"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(
        max_length=500, help_text="API base URL (sovereign cloud, custom domain, simulator)."
    )
    token_url = models.URLField(
        max_length=500, blank=True, help_text="OAuth token endpoint, where the kind has one."
    )
    credentials_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    sync_interval = models.DurationField(default=timedelta(hours=1))
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    cursors = models.JSONField(
        default=dict, blank=True, help_text="Paging and delta cursors kept between syncs."
    )
    # A sync claims the source with a compare-and-swap on this column; see connectors.sync.
    sync_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    hr_authoritative = models.BooleanField(
        "HR authoritative",
        default=False,
        help_text="Managers, departments and leavers of people come from this source first.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def credentials(self) -> dict[str, Any]:
        return crypto.decrypt_json(self.credentials_encrypted)

    def set_credentials(self, value: dict[str, Any]) -> None:
        self.credentials_encrypted = crypto.encrypt_json(value)

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)

    def is_due(self, now=None) -> bool:
        now = now or timezone.now()
        return self.enabled and (
            self.last_sync_started_at is None or self.last_sync_started_at + self.sync_interval <= now
        )


class Identity(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        DEPROVISIONED = "deprovisioned", "Deprovisioned"

    source = models.ForeignKey(
        IdentitySource, on_delete=models.PROTECT, related_name="identities", null=True, blank=True
    )
    external_id = models.CharField(max_length=255)
    email = models.EmailField(max_length=254, db_index=True)
    name = models.CharField(max_length=200, blank=True)
    department = models.CharField(max_length=100, blank=True, db_index=True)
    manager = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    is_service = models.BooleanField(default=False)
    # Seen only in AI activity and not in any identity source: kept as given, flagged for IAM.
    unverified = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="identities"
    )
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    # One human across sources (connectors.people links them).
    person = models.ForeignKey(
        "Person", on_delete=models.SET_NULL, null=True, blank=True, related_name="identities"
    )
    # An immutable id shared across sources, namespaced ("ad-guid:…", "saml:…"); blank when none is given.
    link_key = models.CharField(max_length=255, blank=True, db_index=True)
    # IAM linked or unlinked this identity by hand: automatic linking leaves it where IAM put it.
    link_pinned = models.BooleanField(default=False)
    link_conflict = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name_plural = "identities"
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="identity_unique_external_id_per_source"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(source__isnull=True),
                name="identity_unique_external_id_unsourced",
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="identity_status_idx"),
            # IdPs keep the case people typed (Emma.Jones@Acme.com); gateways send what they saw.
            models.Index(Lower("email"), name="identity_email_lower_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


class Device(models.Model):
    source = models.ForeignKey(
        IdentitySource, on_delete=models.PROTECT, related_name="devices", null=True, blank=True
    )
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=50, blank=True)
    managed = models.BooleanField(default=False)
    compliant = models.BooleanField(default=False)
    unverified = models.BooleanField(default=False)
    owner = models.ForeignKey(
        Identity, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices"
    )
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="device_unique_external_id_per_source"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(source__isnull=True),
                name="device_unique_external_id_unsourced",
            ),
        ]
        # Gateways name a device by its id alone (no source): the ingest looks devices up by it.
        indexes = [models.Index(fields=["external_id"], name="device_external_id_idx")]

    def __str__(self) -> str:
        return self.name or self.external_id


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Connector(models.Model):
    class Kind(models.TextChoices):
        OAUTH_APP = "oauth_app", "OAuth app"
        MCP_SERVER = "mcp_server", "MCP server"
        API_KEY = "api_key", "API key"
        PLUGIN = "plugin", "Plugin"
        BOT = "bot", "Bot"

    class Status(models.TextChoices):
        DISCOVERED = "discovered", "Discovered (shadow)"
        REQUESTED = "requested", "Requested"
        PENDING_IAM = "pending_iam", "Pending IAM"
        APPROVED = "approved", "Approved"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REJECTED = "rejected", "Rejected"
        REVOKED = "revoked", "Revoked"
        # Folded into another connector by IAM (see ``merged_into``): kept so the decision stays on record.
        MERGED = "merged", "Merged"

    TRANSITIONS: dict[str, set[str]] = {
        Status.DISCOVERED: {Status.REQUESTED, Status.REJECTED, Status.REVOKED},
        Status.REQUESTED: {Status.PENDING_IAM, Status.REJECTED, Status.REVOKED, Status.DISCOVERED},
        Status.PENDING_IAM: {Status.APPROVED, Status.REJECTED, Status.REVOKED},
        Status.APPROVED: {Status.ACTIVE, Status.REVOKED},
        Status.ACTIVE: {Status.SUSPENDED, Status.REVOKED},
        Status.SUSPENDED: {Status.ACTIVE, Status.REVOKED},
        Status.REJECTED: {Status.REQUESTED},
        Status.REVOKED: {Status.REQUESTED},
        Status.MERGED: set(),
    }
    SANCTIONED = (Status.APPROVED, Status.ACTIVE, Status.SUSPENDED)

    name = models.CharField(max_length=200)
    vendor = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OAUTH_APP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DISCOVERED)
    business_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_connectors",
    )
    technical_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tech_connectors",
    )
    purpose = models.TextField(blank=True)
    data_reached = models.TextField(blank=True, help_text="What company data it reaches.")
    risk = models.CharField(max_length=8, choices=Risk.choices, default=Risk.MEDIUM)
    risk_score = models.PositiveSmallIntegerField(default=0)
    mcp_server_url = models.URLField(max_length=500, blank=True)
    review_date = models.DateField(null=True, blank=True)
    discovered_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    catalog_entry = models.ForeignKey(
        "CatalogEntry", on_delete=models.SET_NULL, null=True, blank=True, related_name="connectors"
    )
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="merged_from"
    )
    # Which gateway's ingest key discovered it from AI activity (None: a sync, or IAM), so that what
    # one key created from garbage can be counted against its hourly cap and dismissed together.
    discovered_by_key = models.ForeignKey(
        "audit.IngestKey", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["discovered_by_key", "discovered_at"], name="connector_discovered_key_idx"),
            models.Index(fields=["status"], name="connector_status_idx"),
            models.Index(fields=["business_owner", "status"], name="connector_owner_status_idx"),
            models.Index(fields=["risk"], name="connector_risk_idx"),
        ]
        permissions = [
            ("decide_connector", "Can decide requests for the connector"),
            ("revoke_connector", "Can revoke the connector and its grants"),
            ("provision_connector", "Can provision the connector"),
        ]

    def __str__(self) -> str:
        return self.name

    def can_become(self, status: str) -> bool:
        return status in self.TRANSITIONS.get(self.status, set())

    def check_transition(self, status: str) -> None:
        check_transition(self.TRANSITIONS, self.status, status, f"Connector '{self.name}'")


class ConnectorApp(models.Model):
    """How a connector appears in one source: the connector path that grants are matched through."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="apps")
    source = models.ForeignKey(IdentitySource, on_delete=models.PROTECT, related_name="apps")
    client_id = models.CharField(max_length=255)
    external_id = models.CharField(
        max_length=255, blank=True, help_text="e.g. the Entra service-principal id"
    )
    name = models.CharField(max_length=200, blank=True)
    publisher = models.CharField(max_length=200, blank=True)
    verified = models.BooleanField(default=False)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source", "client_id"]
        verbose_name = "connector app"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "client_id"], name="connectorapp_unique_client_per_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.client_id} @ {self.source_id}"


class Grant(models.Model):
    class Kind(models.TextChoices):
        OAUTH_CONSENT = "oauth_consent", "OAuth consent"
        REFRESH_TOKEN = "refresh_token", "Refresh token"
        PERSONAL_ACCESS_TOKEN = "personal_access_token", "Personal access token"
        API_KEY = "api_key", "API key"
        PORTAL_CREDENTIAL = "portal_credential", "Portal credential"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKING = "revoking", "Revoking"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    TRANSITIONS: dict[str, set[str]] = {
        Status.ACTIVE: {Status.REVOKING, Status.REVOKED, Status.EXPIRED},
        Status.REVOKING: {Status.REVOKED},
        Status.REVOKED: {Status.ACTIVE},  # reappeared at the IdP (consented again)
        Status.EXPIRED: {Status.ACTIVE, Status.REVOKING, Status.REVOKED},
    }

    class ConsentType(models.TextChoices):
        PRINCIPAL = "principal", "One user"
        ALL_PRINCIPALS = "all_principals", "Whole tenant"

    # connector, source and identity lead composite indexes below: no single-column index of their own
    # (each index costs every bulk insert of a sync).
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="grants", db_index=False)
    app = models.ForeignKey(
        ConnectorApp, on_delete=models.SET_NULL, null=True, blank=True, related_name="grants"
    )
    source = models.ForeignKey(
        IdentitySource, on_delete=models.PROTECT, related_name="grants", null=True, blank=True, db_index=False
    )
    identity = models.ForeignKey(
        Identity, on_delete=models.PROTECT, related_name="grants", null=True, blank=True, db_index=False
    )
    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, related_name="grants", null=True, blank=True
    )
    external_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.OAUTH_CONSENT)
    consent_type = models.CharField(max_length=16, choices=ConsentType.choices, default=ConsentType.PRINCIPAL)
    scopes = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.CharField(max_length=300, blank=True)
    revoke_attempts = models.PositiveSmallIntegerField(default=0)
    revoke_error = models.CharField(max_length=500, blank=True)
    revoke_requested_at = models.DateTimeField(null=True, blank=True)
    # When the sweep should (re-)enqueue the IdP call if the grant is still revoking by then.
    revoke_next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set by the one task that calls the IdP (compare-and-swap), cleared when the call is recorded:
    # a duplicate delivery finds it set and skips. A claim older than the lease is a dead worker's.
    revoke_claimed_at = models.DateTimeField(null=True, blank=True)
    revoke_tenant_wide_confirmed = models.BooleanField(
        default=False, help_text="A person confirmed revoking a tenant-wide (AllPrincipals) consent."
    )
    token_hint = models.CharField(
        max_length=16, blank=True, help_text="Last characters the IdP shows; never the secret."
    )
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of token material, never the material."
    )
    idp_data = models.JSONField(default=dict, blank=True, help_text="What a revocation needs at the IdP.")
    # A hold: the grant stays at the IdP but counts as not usable (its person is suspended). The
    # decision point and attestations read it; offboarding sets and releases it (connectors.services).
    held_at = models.DateTimeField(null=True, blank=True)
    hold_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="grant_unique_external_id_per_source"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(source__isnull=True),
                name="grant_unique_external_id_unsourced",
            ),
            models.CheckConstraint(
                condition=~Q(status="revoked") | Q(revoked_at__isnull=False), name="grant_revoked_has_time"
            ),
            models.CheckConstraint(
                condition=Q(fingerprint="") | Q(fingerprint__regex=r"^[0-9a-f]{64}$"),
                name="grant_fingerprint_sha256",
            ),
        ]
        indexes = [
            models.Index(fields=["connector", "status"], name="grant_connector_status_idx"),
            # connector last: the ingest looks up a batch's (identity, connector) pairs, and the
            # index then filters on connector instead of fetching every grant of each person.
            models.Index(fields=["identity", "status", "connector"], name="grant_identity_status_conn_idx"),
            models.Index(fields=["status", "last_used_at"], name="grant_status_used_idx"),
            models.Index(fields=["status", "expires_at"], name="grant_status_expires_idx"),
            models.Index(fields=["source", "status"], name="grant_source_status_idx"),
            models.Index(fields=["status", "revoke_next_attempt_at"], name="grant_status_next_revoke_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.external_id}"

    def check_transition(self, status: str) -> None:
        check_transition(self.TRANSITIONS, self.status, status, f"Grant {self.pk}")

    @property
    def is_held(self) -> bool:
        return self.held_at is not None


class SyncRun(models.Model):
    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused (already running)"

    source = models.ForeignKey(IdentitySource, on_delete=models.CASCADE, related_name="sync_runs")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    seen = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    vanished = models.PositiveIntegerField(default=0)
    shadow = models.PositiveIntegerField(default=0)
    identities_seen = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Optional phases that could not run: [{"capability", "state", "endpoint", "detail", "hint"}].
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["source", "-started_at"], name="syncrun_source_started_idx")]

    def __str__(self) -> str:
        return f"{self.source_id} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None


class SourceCapability(models.Model):
    """What one source lets Lanyard read, per capability (users, apps, grants, devices, activity).

    Written by every sync (for the phases it ran) and by the admin's Test connection; see
    ``connectors.capabilities`` for the capabilities of each kind and the hints.
    """

    class State(models.TextChoices):
        AVAILABLE = "available", "Available"
        MISSING_PERMISSION = "missing_permission", "Missing permission"
        NOT_IN_EDITION = "not_in_edition", "Not in this edition"
        ERROR = "error", "Error"

    source = models.ForeignKey(IdentitySource, on_delete=models.CASCADE, related_name="capabilities")
    name = models.CharField(max_length=32)
    required = models.BooleanField(default=False)
    state = models.CharField(max_length=20, choices=State.choices)
    endpoint = models.CharField(max_length=200, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    hint = models.CharField(max_length=500, blank=True)
    last_checked = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source", "-required", "name"]
        verbose_name_plural = "source capabilities"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "name"], name="sourcecapability_unique_name_per_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.name} {self.state}"


# ---------------------------------------------------------------------------------------- one register
# The catalog of known AI apps, and people: one connector per product, one person per human.


class CatalogEntry(models.Model):
    """One known AI product and the ids it has in each kind of identity source (see connectors.catalog)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    publisher = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Connector.Kind.choices, default=Connector.Kind.OAUTH_APP)
    risk = models.CharField(max_length=8, choices=Risk.choices, default=Risk.MEDIUM)
    # {"google_workspace": [client ids], "microsoft_entra": [app ids], "okta": [...], "github": [...]}
    ids = models.JSONField(default=dict, blank=True)
    mcp_server_urls = models.JSONField(default=list, blank=True)
    homepage = models.URLField(max_length=300, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "catalog entries"

    def __str__(self) -> str:
        return self.name


class Person(models.Model):
    """One human behind identities in several sources; name, manager and department from the HR source."""

    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    department = models.CharField(max_length=100, blank=True, db_index=True)
    manager = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    # The identity that receives email and signs in (connectors.people chooses it).
    primary_identity = models.ForeignKey(
        "Identity", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Set when the links disagree (two immutable ids claim one email): shown to IAM, never guessed.
    conflict = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["email", "pk"]
        verbose_name_plural = "people"

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else (self.email or f"person {self.pk}")
