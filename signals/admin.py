"""IAM configures receiver streams here and sees the SETs received (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import ReceivedSet, ReceiverStream


@admin.register(ReceiverStream)
class ReceiverStreamAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "issuer", "audience", "enabled", "push_url")
    list_filter = ("enabled", "source")
    readonly_fields = ("id", "push_url", "created_at")
    fields = (
        "id",
        "push_url",
        "name",
        "source",
        "issuer",
        "jwks_url",
        "configuration_url",
        "audience",
        "enabled",
        "created_at",
    )

    @admin.display(description="Push endpoint (give it to the transmitter)")
    def push_url(self, obj: ReceiverStream) -> str:
        if obj.pk is None or obj._state.adding:
            return "—"
        return format_html("<code>{}</code>", reverse("signals:receive", args=[obj.pk]))


@admin.register(ReceivedSet)
class ReceivedSetAdmin(admin.ModelAdmin):
    list_display = ("received_at", "stream", "event_types", "outcome", "identity", "jti")
    list_filter = ("outcome", "stream")
    search_fields = ("jti", "identity__email")
    list_select_related = ("stream", "identity")
    readonly_fields = [f.name for f in ReceivedSet._meta.fields]

    def has_add_permission(self, request) -> bool:  # the receiver writes these, nobody else
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
