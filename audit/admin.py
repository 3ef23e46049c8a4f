from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from .models import AuditChainHead, AuditCheckpoint, AuditEvent, IngestKey
from .services import IngestKeyAlreadyRevoked, ingest_key_create, ingest_key_revoke


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


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "hash"]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "sequence", "head_hash", "key_id"]


class IngestKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=IngestKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[IngestKey.Scope.EVENTS_WRITE],
    )

    decisions_per_minute = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="Access decisions (AuthZEN) per minute, for a policy enforcement point; empty: 120,000.",
    )

    class Meta:
        model = IngestKey
        fields = ["name", "scopes", "rate_limit_per_minute", "decisions_per_minute", "reports_devices"]

    def clean_decisions_per_minute(self) -> int:
        value = self.cleaned_data.get("decisions_per_minute")
        return value or IngestKey._meta.get_field("decisions_per_minute").default


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    form = IngestKeyForm
    list_display = [
        "name",
        "prefix",
        "scopes",
        "rate_limit_per_minute",
        "decisions_per_minute",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: events keep pointing at the key

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = ingest_key_create(
            name=obj.name,
            actor=request.user,
            scopes=list(obj.scopes),
            rate_limit_per_minute=obj.rate_limit_per_minute,
            decisions_per_minute=obj.decisions_per_minute,
            reports_devices=obj.reports_devices,
        )
        for field in ("pk", "prefix", "key_hash", "created_by", "created_at", "scopes"):
            setattr(obj, field, getattr(key, field))
        obj._state.adding = False
        obj._raw_key = raw  # in memory for this response only; never stored

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(obj, "_raw_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        # Shown in this response only (not a message: messages may be kept in the session table).
        response = TemplateResponse(
            request,
            "admin/audit/ingestkey/created.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "key": obj, "raw_key": raw},
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected ingest keys", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for key in queryset:
            try:
                ingest_key_revoke(key=key, actor=request.user)
                revoked += 1
            except IngestKeyAlreadyRevoked as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"Revoked {revoked} ingest key(s).", messages.SUCCESS)
