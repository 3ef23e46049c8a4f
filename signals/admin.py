"""IAM configures receiver streams here and sees the SETs received (read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import ReceivedSet, ReceiverStream


class ReceiverStreamForm(forms.ModelForm):
    push_authorization = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text=(
            "The Authorization header value the transmitter sends with each push (e.g. 'Bearer …'), as "
            "configured in its stream's delivery. Only its hash is kept; leave empty to keep the current "
            "one. Tick 'clear' to require none."
        ),
    )
    clear_push_authorization = forms.BooleanField(required=False, label="Clear the push authorization")
    poll_authorization = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Poll delivery: the Authorization header Lanyard sends to the transmitter (kept encrypted; "
        "leave empty to keep the current one).",
    )

    class Meta:
        model = ReceiverStream
        fields = [
            "name",
            "source",
            "issuer",
            "jwks_url",
            "configuration_url",
            "audience",
            "enabled",
            "delivery",
            "poll_url",
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("delivery") == ReceiverStream.Delivery.POLL and not data.get("poll_url"):
            self.add_error("poll_url", "Poll delivery needs the transmitter's poll endpoint.")
        return data

    def save(self, commit: bool = True) -> ReceiverStream:
        stream = super().save(commit=False)
        if self.cleaned_data.get("clear_push_authorization"):
            stream.set_authorization("")
        elif self.cleaned_data.get("push_authorization"):
            stream.set_authorization(self.cleaned_data["push_authorization"])
        if self.cleaned_data.get("poll_authorization"):
            stream.set_poll_authorization(self.cleaned_data["poll_authorization"])
        if commit:
            stream.save()
        return stream


@admin.register(ReceiverStream)
class ReceiverStreamAdmin(admin.ModelAdmin):
    form = ReceiverStreamForm
    list_display = ("name", "source", "issuer", "audience", "delivery", "enabled", "push_url")
    list_filter = ("enabled", "delivery", "source")
    readonly_fields = ("id", "push_url", "requires_authorization", "created_at")
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
        "delivery",
        "poll_url",
        "poll_authorization",
        "push_authorization",
        "clear_push_authorization",
        "requires_authorization",
        "created_at",
    )

    @admin.display(description="Requires an Authorization header", boolean=True)
    def requires_authorization(self, obj: ReceiverStream) -> bool:
        return bool(obj.authorization_hash)

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
