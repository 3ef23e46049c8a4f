from django.contrib import admin

from .models import AuditCheckpoint, AuditEvent, IngestKey


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "sequence",
        "occurred_at",
        "action",
        "outcome",
        "actor_label",
        "connector",
        "device",
        "target_label",
    ]
    list_filter = ["outcome", "action"]
    search_fields = ["action", "actor_label", "target_label", "correlation_id", "external_id"]
    list_select_related = ["connector", "device"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "sequence", "head_hash", "key_id"]


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "scopes",
        "rate_limit_per_minute",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
