"""Access decisions: the IAM-written Cedar policies (versioned) and what the decision point records.

Denies go on the audit chain, one event each, in the request. Permits are counted per connector and
hour (``DecisionCount``) and feed the usage roll-up; a bounded sample of recent decisions, each with
the entities it was decided on (``DecisionSample``), is what the what-if page replays.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Policy(models.Model):
    """A Cedar policy document IAM staff add to the shipped defaults; every save is a new version."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    text = models.TextField(
        help_text='Cedar policies (permit/forbid). Annotate each with @id("...") and @reason("..."): '
        "the reason is what a gateway shows the person when the policy forbids."
    )
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=0, editable=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class PolicyVersion(models.Model):
    """One saved version of a policy, kept for ever; the newest row's id is the policy set generation."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    text = models.TextField()
    enabled = models.BooleanField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="policy_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} v{self.version}"


class DecisionCount(models.Model):
    """Decisions per connector and hour (connector null: the question named no connector Lanyard knows)."""

    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    hour = models.DateTimeField()
    permits = models.PositiveIntegerField(default=0)
    denies = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "hour"], name="decision_count_unique"),
        ]
        indexes = [models.Index(fields=["hour"], name="decision_count_hour_idx")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h: {self.permits} permits, {self.denies} denies"


class DecisionSample(models.Model):
    """A recent decision with the Cedar request and entities it was decided on (for what-if replays)."""

    decided_at = models.DateTimeField(default=timezone.now)
    decision = models.BooleanField()
    policies = models.JSONField(default=list, help_text="The @id of each policy that decided.")
    reason = models.CharField(max_length=500, blank=True)
    summary = models.CharField(max_length=500, help_text="Who, what, on which connector.")
    request = models.JSONField(help_text="The Cedar request (principal, action, resource, context).")
    entities = models.JSONField(help_text="The Cedar entities the decision was made on.")

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"{'permit' if self.decision else 'deny'}: {self.summary}"
