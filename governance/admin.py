from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import (
    Attestation,
    AttestationCampaign,
    ConnectorRequest,
    Decision,
    ManagerReview,
    OwnershipTransfer,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["email", "username", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "username", "first_name", "last_name"]


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    readonly_fields = ["step", "outcome", "decided_by", "reason", "decided_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ConnectorRequest)
class ConnectorRequestAdmin(admin.ModelAdmin):
    list_display = ["id", "connector", "kind", "status", "requester", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["connector__name", "requester__email", "justification"]
    list_select_related = ["connector", "requester"]
    autocomplete_fields = ["connector", "requester", "on_behalf_of"]
    readonly_fields = ["status", "created_at", "updated_at"]
    inlines = [DecisionInline]


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
    list_display = ["name", "status", "policy", "deadline", "launched_at", "closed_at"]
    list_filter = ["status", "policy"]
    search_fields = ["name"]
    readonly_fields = ["status", "launched_by", "launched_at", "closed_at"]
    filter_horizontal = ["scope_connectors"]


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
    list_display = ["connector", "from_user", "to_user", "reason", "status", "created_at"]
    list_filter = ["status", "reason"]
    search_fields = ["connector__name", "to_user__email"]
    list_select_related = ["connector", "from_user", "to_user"]
    autocomplete_fields = ["connector", "from_user", "to_user"]
    readonly_fields = ["status", "decided_at"]
