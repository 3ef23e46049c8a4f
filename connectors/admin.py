from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.db.models import Count, Q

from .admin_actions import with_reason
from .models import Connector, ConnectorApp, Device, Grant, Identity, IdentitySource, SyncRun
from .services import connector_revoke


class IdentitySourceForm(forms.ModelForm):
    """Credentials are write-only: never shown back, blank keeps what is stored."""

    new_credentials = forms.CharField(
        label="Credentials (JSON)",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="Write-only. Leave blank to keep the stored credentials. Stored encrypted.",
    )

    class Meta:
        model = IdentitySource
        fields = ["kind", "name", "base_url", "token_url", "enabled", "sync_interval"]

    def clean_new_credentials(self) -> dict | None:
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Credentials must be a JSON object.")
        return value

    def save(self, commit: bool = True) -> IdentitySource:
        if self.cleaned_data.get("new_credentials") is not None:
            self.instance.set_credentials(self.cleaned_data["new_credentials"])
        return super().save(commit=commit)


@admin.register(IdentitySource)
class IdentitySourceAdmin(admin.ModelAdmin):
    form = IdentitySourceForm
    list_display = [
        "name",
        "kind",
        "base_url",
        "enabled",
        "sync_interval",
        "last_success_at",
        "has_credentials",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["last_sync_started_at", "last_success_at", "cursors", "created_at"]

    @admin.display(boolean=True, description="credentials")
    def has_credentials(self, obj: IdentitySource) -> bool:
        return obj.has_credentials


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "department", "status", "manager", "source", "unverified", "last_seen"]
    list_filter = ["status", "source", "unverified", "is_service"]
    search_fields = ["email", "name", "external_id", "department"]
    list_select_related = ["manager", "source"]
    autocomplete_fields = ["manager", "user"]
    readonly_fields = ["first_seen", "last_seen", "status_changed_at"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "external_id", "platform", "managed", "compliant", "owner", "source", "last_seen"]
    list_filter = ["platform", "managed", "compliant", "source", "unverified"]
    search_fields = ["name", "external_id", "owner__email"]
    list_select_related = ["owner", "source"]
    autocomplete_fields = ["owner"]


class ConnectorAppInline(admin.TabularInline):
    model = ConnectorApp
    extra = 0
    fields = ["source", "client_id", "external_id", "name", "publisher", "verified", "last_seen"]
    readonly_fields = ["last_seen"]


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "vendor",
        "kind",
        "status",
        "risk",
        "business_owner",
        "active_grants",
        "review_date",
    ]
    list_filter = ["status", "risk", "kind"]
    search_fields = ["name", "vendor", "apps__client_id"]
    list_select_related = ["business_owner"]
    autocomplete_fields = ["business_owner", "technical_owner"]
    readonly_fields = ["status", "risk_score", "discovered_at", "status_changed_at", "created_at"]
    inlines = [ConnectorAppInline]
    actions = ["revoke"]  # governance adds suspend and resume, with the workflow services they call

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("connectors.revoke_connector")

    @admin.action(description="Revoke everywhere (asks for a reason)", permissions=["revoke"])
    def revoke(self, request, queryset):
        return with_reason(
            self,
            request,
            queryset,
            "Revoke connectors and every grant at its identity provider",
            lambda c, why: connector_revoke(connector=c, actor=request.user, reason=why),
            "revoked",
        )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_active_grants=Count("grants", filter=Q(grants__status=Grant.Status.ACTIVE)))
        )

    @admin.display(ordering="_active_grants", description="active grants")
    def active_grants(self, obj: Connector) -> int:
        return obj._active_grants


@admin.register(ConnectorApp)
class ConnectorAppAdmin(admin.ModelAdmin):
    list_display = ["client_id", "name", "connector", "source", "publisher", "verified", "last_seen"]
    list_filter = ["source", "verified"]
    search_fields = ["client_id", "name", "publisher", "connector__name"]
    list_select_related = ["connector", "source"]
    autocomplete_fields = ["connector"]


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "connector",
        "identity",
        "kind",
        "status",
        "source",
        "last_used_at",
        "expires_at",
    ]
    list_filter = ["status", "kind", "consent_type", "source"]
    search_fields = ["external_id", "identity__email", "connector__name"]
    list_select_related = ["connector", "identity", "source"]
    autocomplete_fields = ["connector", "identity", "device", "app"]
    readonly_fields = [
        "status",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
        "revoke_attempts",
        "revoke_error",
        "fingerprint",
        "first_seen",
        "last_seen",
    ]
    date_hierarchy = "last_seen"
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = [
        "source",
        "started_at",
        "finished_at",
        "outcome",
        "seen",
        "new",
        "changed",
        "vanished",
        "shadow",
    ]
    list_filter = ["outcome", "source"]
    list_select_related = ["source"]
    search_fields = ["source__name", "error"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
