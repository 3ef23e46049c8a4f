from functools import partial

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.urls import reverse
from django.utils.html import format_html

from connectors import admin_actions
from connectors.admin import ConnectorAdmin as RegisterConnectorAdmin
from connectors.models import Connector, IllegalTransition

from . import signin
from .attestations import AttestationError, campaign_close, campaign_launch
from .models import (
    Attestation,
    AttestationCampaign,
    ConnectorRequest,
    Decision,
    ManagerReview,
    OwnershipTransfer,
    User,
)
from .services import WorkflowError, connector_resume, connector_suspend, request_decide, request_provision
from .transfers import TransferError, transfer_cancel


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["email", "username", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "username", "first_name", "last_name"]

    def user_change_password(self, request, id, form_url=""):
        """Set a user's password as Django's admin does, and record it (who set it, for whom, from where)."""
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            user = User.objects.get(pk=id)
            signin.signin_record(
                "auth.password_set_by_admin",
                request=request,
                user=request.user,
                account=user.email.lower(),
                data={"for_user": user.pk},
            )
        return response


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    readonly_fields = ["step", "outcome", "decided_by", "reason", "decided_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


apply_each = partial(admin_actions.apply_each, refusals=(WorkflowError,))
with_reason = partial(admin_actions.with_reason, refusals=(WorkflowError,))

# The register's connector admin, with the workflow's suspend and resume beside its revoke.
admin.site.unregister(Connector)


@admin.register(Connector)
class ConnectorAdmin(RegisterConnectorAdmin):
    actions = ["suspend", "resume", *RegisterConnectorAdmin.actions]

    @admin.action(description="Suspend the selected active connectors", permissions=["revoke"])
    def suspend(self, request, queryset) -> None:
        apply_each(
            self, request, queryset, lambda c: connector_suspend(connector=c, actor=request.user), "suspended"
        )

    @admin.action(description="Resume the selected suspended connectors", permissions=["revoke"])
    def resume(self, request, queryset) -> None:
        apply_each(
            self, request, queryset, lambda c: connector_resume(connector=c, actor=request.user), "resumed"
        )


@admin.register(ConnectorRequest)
class ConnectorRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "connector", "kind", "status", "requester", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["connector__name", "requester__email", "justification"]
    list_select_related = ["connector", "requester"]
    autocomplete_fields = ["connector", "requester", "on_behalf_of"]
    readonly_fields = ["status", "created_at", "updated_at"]
    inlines = [DecisionInline]
    actions = ["approve", "reject", "provision"]

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("connectors.decide_connector")

    def has_provision_permission(self, request) -> bool:
        return request.user.has_perm("connectors.provision_connector")

    @admin.action(description="Approve the step each request waits for", permissions=["decide"])
    def approve(self, request, queryset) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda r: request_decide(request=r, actor=request.user, approve=True),
            "approved",
        )

    @admin.action(description="Reject (asks for a reason)", permissions=["decide"])
    def reject(self, request, queryset):
        return with_reason(
            self,
            request,
            queryset,
            "Reject requests",
            lambda r, why: request_decide(request=r, actor=request.user, approve=False, reason=why),
            "rejected",
        )

    @admin.action(description="Provision through the identity provider's API", permissions=["provision"])
    def provision(self, request, queryset) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda r: request_provision(request=r, actor=request.user),
            "provisioning started",
        )


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["request", "step", "outcome", "decided_by", "decided_at"]
    list_filter = ["step", "outcome"]
    search_fields = ["request__connector__name", "decided_by__email", "reason"]
    list_select_related = ["request__connector", "decided_by"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AttestationCampaign)
class AttestationCampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "policy", "deadline", "launched_at", "closed_at", "progress"]
    list_filter = ["status", "policy"]
    search_fields = ["name"]
    readonly_fields = ["status", "launched_by", "launched_at", "closed_at"]
    filter_horizontal = ["scope_connectors"]
    actions = ["launch", "close_now"]

    def get_readonly_fields(self, request, obj=None):
        # A launched campaign's scope and rules are what its emails and links promised.
        if obj is not None and obj.status != AttestationCampaign.Status.DRAFT:
            return [f.name for f in obj._meta.fields if f.name != "id"] + ["scope_connectors"]
        return self.readonly_fields

    @admin.display(description="progress")
    def progress(self, obj: AttestationCampaign) -> str:
        if obj.status == AttestationCampaign.Status.DRAFT:
            return "—"
        return format_html('<a href="{}">progress</a>', reverse("attest:campaign_detail", args=[obj.pk]))

    def _each(self, request, queryset, service, done: str) -> None:
        ok = 0
        for campaign in queryset.order_by("pk"):
            try:
                service(campaign=campaign, actor=request.user)
                ok += 1
            except (IllegalTransition, AttestationError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if ok:
            self.message_user(request, f"{ok} campaign{'s' if ok != 1 else ''} {done}.", messages.SUCCESS)

    @admin.action(description="Launch: email every manager in scope", permissions=["change"])
    def launch(self, request, queryset) -> None:
        self._each(request, queryset, campaign_launch, "launched; the managers' emails are on their way")

    @admin.action(
        description="Close now: apply the deadline policy to what is pending", permissions=["change"]
    )
    def close_now(self, request, queryset) -> None:
        self._each(request, queryset, campaign_close, "closed")


@admin.register(Attestation)
class AttestationAdmin(admin.ModelAdmin):
    list_display = ["campaign", "identity", "manager", "grant", "decision", "decided_at"]
    list_filter = ["decision", "campaign"]
    search_fields = ["identity__email", "manager__email"]
    list_select_related = ["campaign", "identity", "manager", "grant"]
    readonly_fields = ["decision", "decided_by", "decided_at"]
    raw_id_fields = ["grant", "identity", "manager", "escalated_to"]


@admin.register(ManagerReview)
class ManagerReviewAdmin(admin.ModelAdmin):
    list_display = ["campaign", "manager", "notified_at", "reminders_sent", "escalated_to", "completed_at"]
    list_filter = ["campaign"]
    search_fields = ["manager__email"]
    list_select_related = ["campaign", "manager", "escalated_to"]
    raw_id_fields = ["manager", "escalated_to"]


@admin.register(OwnershipTransfer)
class OwnershipTransferAdmin(admin.ModelAdmin):
    """Read-only: offers are made on the hand-over page and answered by the new owner."""

    list_display = ["connector", "from_user", "to_user", "reason", "status", "created_at", "decided_at"]
    list_filter = ["status", "reason"]
    search_fields = ["connector__name", "to_user__email"]
    list_select_related = ["connector", "from_user", "to_user"]
    readonly_fields = [
        "connector",
        "from_user",
        "to_user",
        "reason",
        "status",
        "note",
        "created_at",
        "decided_at",
    ]
    actions = ["cancel"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Cancel the selected pending transfers", permissions=["change"])
    def cancel(self, request, queryset) -> None:
        ok = 0
        for transfer in queryset.filter(status=OwnershipTransfer.Status.PENDING).order_by("pk"):
            try:
                transfer_cancel(transfer=transfer, actor=request.user)
                ok += 1
            except (IllegalTransition, TransferError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"{ok} transfer{'s' if ok != 1 else ''} cancelled.", messages.SUCCESS)
