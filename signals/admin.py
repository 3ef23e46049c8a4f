"""IAM configures receiver streams, sees SETs received, authorises transmitter receivers, sees the outbox."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from audit.services import record

from .models import (
    OutboxSet,
    ReceivedSet,
    ReceiverStream,
    SigningKey,
    TransmitterReceiver,
    TransmitterStream,
)
from .outbox import issuer, outbox_replay
from .streams import receiver_create, receiver_revoke, stream_set_status


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
    list_display = (
        "received_at",
        "stream",
        "event_types",
        "outcome",
        "identity",
        "processed_at",
        "replays",
        "jti",
    )
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


# ------------------------------------------------------------------------------------ transmitter


@admin.register(TransmitterReceiver)
class TransmitterReceiverAdmin(admin.ModelAdmin):
    list_display = ("name", "aud", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    fields = ("name", "audience", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the audit trail keeps pointing at the receiver

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        receiver, raw = receiver_create(name=obj.name, audience=obj.audience, actor=request.user)
        for name in ("pk", "prefix", "token_hash", "created_by", "created_at"):
            setattr(obj, name, getattr(receiver, name))
        obj._state.adding = False
        obj._raw_token = raw  # in memory for this response only; never stored

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(obj, "_raw_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/signals/transmitterreceiver/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "receiver": obj,
                "raw_token": raw,
                "configuration_url": issuer().rstrip("/") + reverse("ssf-configuration"),
            },
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected receivers' tokens", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        for receiver in queryset:
            receiver_revoke(receiver=receiver, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} receiver(s).", messages.SUCCESS)


@admin.register(TransmitterStream)
class TransmitterStreamAdmin(admin.ModelAdmin):
    list_display = ("id", "receiver", "description", "method", "status", "endpoint_url", "updated_at")
    list_filter = ("status", "method", "receiver")
    list_select_related = ("receiver",)
    fields = (
        "id",
        "receiver",
        "description",
        "method",
        "endpoint_url",
        "events_requested",
        "status",
        "status_reason",
        "default_subjects",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(f for f in fields if f != "default_subjects")
    actions = ["enable", "pause", "disable"]

    def has_add_permission(self, request) -> bool:  # receivers create their streams over the API
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        # Only default_subjects is editable here (whether the stream gets every subject or added ones).
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record(
                "ssf.stream_updated",
                actor=request.user,
                target=obj,
                data={"stream": str(obj.pk), "default_subjects": obj.default_subjects},
            )

    def _move(self, request, queryset, status: str) -> None:
        for stream in queryset:
            stream_set_status(
                stream=stream, status=status, reason=f"set by IAM ({request.user})", actor=request.user
            )
        self.message_user(request, f"{queryset.count()} stream(s) {status}.", messages.SUCCESS)

    @admin.action(description="Enable (deliver held SETs)", permissions=["change"])
    def enable(self, request, queryset) -> None:
        self._move(request, queryset, TransmitterStream.Status.ENABLED)

    @admin.action(description="Pause (hold SETs)", permissions=["change"])
    def pause(self, request, queryset) -> None:
        self._move(request, queryset, TransmitterStream.Status.PAUSED)

    @admin.action(description="Disable (drop SETs)", permissions=["change"])
    def disable(self, request, queryset) -> None:
        self._move(request, queryset, TransmitterStream.Status.DISABLED)


@admin.register(OutboxSet)
class OutboxSetAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "stream",
        "event_type",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("state", "stream__receiver")
    search_fields = ("jti",)
    list_select_related = ("stream__receiver",)
    readonly_fields = [f.name for f in OutboxSet._meta.fields]
    actions = ["retry_delivery"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Retry delivery (replay dead SETs)", permissions=["change"])
    def retry_delivery(self, request, queryset) -> None:
        count = outbox_replay(rows=list(queryset), actor=request.user)
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"Queued {count} SET(s) for delivery again"
            + (f"; {skipped} not dead, left alone." if skipped else "."),
            messages.SUCCESS,
        )


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "alg", "created_at", "retired_at")
    fields = ("kid", "alg", "public_jwk", "created_at", "retired_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # manage.py ssf_rotate_key
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
