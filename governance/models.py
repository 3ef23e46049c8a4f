"""Ownership workflow: users, connector requests and decisions, attestations, ownership transfers."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from guardian.models import UserObjectPermissionBase

from connectors.models import Connector, Grant, Identity, check_transition


class User(AbstractUser):
    email = models.EmailField("email address", unique=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    def __str__(self) -> str:
        return self.get_full_name() or self.email or self.username


class ConnectorRequest(models.Model):
    class Kind(models.TextChoices):
        NEW = "new", "New connector"
        EXISTING = "existing", "Access to an existing connector"
        SANCTION = "sanction", "Sanction a discovered connector"

    class Status(models.TextChoices):
        PENDING_OWNER = "pending_owner", "Waiting for the business owner"
        PENDING_IAM = "pending_iam", "Waiting for IAM"
        APPROVED = "approved", "Approved, to provision"
        PROVISIONED = "provisioned", "Provisioned"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"

    TRANSITIONS: dict[str, set[str]] = {
        Status.PENDING_OWNER: {Status.PENDING_IAM, Status.REJECTED, Status.WITHDRAWN},
        Status.PENDING_IAM: {Status.APPROVED, Status.REJECTED, Status.WITHDRAWN},
        Status.APPROVED: {Status.PROVISIONED, Status.WITHDRAWN},
        Status.PROVISIONED: set(),
        Status.REJECTED: set(),
        Status.WITHDRAWN: set(),
    }
    OPEN = (Status.PENDING_OWNER, Status.PENDING_IAM, Status.APPROVED)

    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="requests")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING_OWNER)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="connector_requests"
    )
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    justification = models.TextField()
    scopes = models.JSONField(default=list, blank=True)
    data_reached = models.TextField(blank=True)
    source = models.ForeignKey(
        "connectors.IdentitySource", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    provision_data = models.JSONField(default=dict, blank=True, help_text="IdP ids provisioning acts on.")
    provision_evidence = models.TextField(
        blank=True, help_text="For a manual provisioning step: what was done."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="request_status_created_idx"),
            models.Index(fields=["connector", "status"], name="request_connector_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Request #{self.pk} for {self.connector}"

    def check_transition(self, status: str) -> None:
        check_transition(self.TRANSITIONS, self.status, status, f"Request #{self.pk}")


class Decision(models.Model):
    class Step(models.TextChoices):
        OWNER = "owner", "Business owner"
        IAM = "iam", "IAM"
        PROVISION = "provision", "Provisioning"

    class Outcome(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    request = models.ForeignKey(ConnectorRequest, on_delete=models.CASCADE, related_name="decisions")
    step = models.CharField(max_length=12, choices=Step.choices)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions"
    )
    reason = models.TextField(blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decided_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "step"], name="decision_one_per_step"),
            models.CheckConstraint(
                condition=~Q(outcome="reject") | ~Q(reason=""), name="decision_reject_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_step_display()} {self.outcome} on #{self.request_id}"


class AttestationCampaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        CLOSED = "closed", "Closed"

    class Policy(models.TextChoices):
        REVOKE = "revoke", "Revoke what is unanswered"
        FLAG = "flag", "Flag what is unanswered"

    TRANSITIONS: dict[str, set[str]] = {
        Status.DRAFT: {Status.RUNNING, Status.CLOSED},
        Status.RUNNING: {Status.CLOSED},
        Status.CLOSED: set(),
    }

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    policy = models.CharField(max_length=8, choices=Policy.choices, default=Policy.FLAG)
    scope_connectors = models.ManyToManyField(Connector, blank=True, related_name="+")
    scope_risks = models.JSONField(default=list, blank=True, help_text="Risk levels in scope; empty: all.")
    scope_departments = models.JSONField(
        default=list, blank=True, help_text="Departments in scope; empty: all."
    )
    deadline = models.DateTimeField()
    reminder_days = models.JSONField(
        default=list, blank=True, help_text="Days before the deadline to remind."
    )
    escalate_after_reminders = models.PositiveSmallIntegerField(default=2)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    launched_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Grants in scope with nobody to review them (no active manager, no business owner identity).
    unrouted_grant_ids = models.JSONField(default=list, blank=True, editable=False)
    # Set on campaigns the schedule creates ("2026-Q4"); unique, so a period never gets two.
    schedule_period = models.CharField(max_length=16, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule_period"], condition=~Q(schedule_period=""), name="campaign_one_per_period"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def check_transition(self, status: str) -> None:
        check_transition(self.TRANSITIONS, self.status, status, f"Campaign '{self.name}'")


class Attestation(models.Model):
    class Decision(models.TextChoices):
        PENDING = "pending", "Pending"
        KEEP = "keep", "Keep"
        REVOKE = "revoke", "Revoke"
        FLAGGED = "flagged", "Flagged at deadline"
        AUTO_REVOKED = "auto_revoked", "Revoked at deadline"

    TRANSITIONS: dict[str, set[str]] = {
        Decision.PENDING: {Decision.KEEP, Decision.REVOKE, Decision.FLAGGED, Decision.AUTO_REVOKED},
        Decision.KEEP: set(),
        Decision.REVOKE: set(),
        Decision.FLAGGED: set(),
        Decision.AUTO_REVOKED: set(),
    }

    campaign = models.ForeignKey(AttestationCampaign, on_delete=models.CASCADE, related_name="attestations")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="attestations")
    identity = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="+")
    manager = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="attestations_to_review")
    escalated_to = models.ForeignKey(
        Identity, on_delete=models.PROTECT, null=True, blank=True, related_name="attestations_escalated"
    )
    decision = models.CharField(max_length=12, choices=Decision.choices, default=Decision.PENDING)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        Identity, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "manager", "identity"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "grant"], name="attestation_one_per_grant")
        ]
        indexes = [models.Index(fields=["campaign", "manager", "decision"], name="attestation_progress_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.grant_id} {self.decision}"

    def check_transition(self, decision: str) -> None:
        check_transition(self.TRANSITIONS, self.decision, decision, f"Attestation {self.pk}")


class ManagerReview(models.Model):
    """One manager's part of a campaign: what the email and the reminders track."""

    campaign = models.ForeignKey(AttestationCampaign, on_delete=models.CASCADE, related_name="reviews")
    manager = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="+")
    escalated_to = models.ForeignKey(
        Identity, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # What the mail task has already sent, so a redelivered task sends nothing twice.
    reminders_mailed = models.PositiveSmallIntegerField(default=0, editable=False)
    escalation_mailed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "manager"], name="review_one_per_manager")]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.manager_id}"


class OwnershipTransfer(models.Model):
    class Reason(models.TextChoices):
        HANDOVER = "handover", "Handed over by the owner"
        OFFBOARDING = "offboarding", "Owner left"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        CANCELLED = "cancelled", "Cancelled"

    TRANSITIONS: dict[str, set[str]] = {
        Status.PENDING: {Status.ACCEPTED, Status.DECLINED, Status.CANCELLED},
        Status.ACCEPTED: set(),
        Status.DECLINED: set(),
        Status.CANCELLED: set(),
    }

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="transfers")
    from_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="incoming_transfers"
    )
    reason = models.CharField(max_length=12, choices=Reason.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector"], condition=Q(status="pending"), name="transfer_one_pending_per_connector"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connector} → {self.to_user}"


class ConnectorUserObjectPermission(UserObjectPermissionBase):
    """django-guardian object permissions on connectors with a real foreign key.

    Guardian picks this model up for every Connector, so an owner's pages can join it on an
    indexed ``content_object_id`` instead of casting the generic ``object_pk`` text column.
    """

    content_object = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="user_permissions")

    class Meta(UserObjectPermissionBase.Meta):
        # unique_together (user, permission, content_object) is the index "My connectors" uses.
        verbose_name = "connector object permission"
