"""Registering an upstream MCP server: a connector of kind MCP server, its URL and its credential."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin

from connectors.models import Connector

from .models import Endpoint
from .services import endpoint_url


class EndpointForm(forms.ModelForm):
    """The credential is write-only, as for identity sources: never shown back, blank keeps it."""

    new_credentials = forms.CharField(
        label="Upstream credential (JSON)",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text='Write-only, stored encrypted. E.g. {"headers": {"Authorization": "Bearer …"}}.',
    )

    class Meta:
        model = Endpoint
        fields = ["connector", "slug", "upstream_url", "transport"]

    def clean_connector(self) -> Connector:
        connector = self.cleaned_data["connector"]
        if connector.kind != Connector.Kind.MCP_SERVER:
            raise forms.ValidationError(
                "Only a connector of kind MCP server can be published through the gateway."
            )
        return connector

    def clean_new_credentials(self) -> dict | None:
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
        headers = value.get("headers") if isinstance(value, dict) else None
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise forms.ValidationError('Give {"headers": {name: value}}, the headers sent upstream.')
        return value

    def save(self, commit: bool = True) -> Endpoint:
        if self.cleaned_data.get("new_credentials") is not None:
            self.instance.set_credentials(self.cleaned_data["new_credentials"])
        return super().save(commit=commit)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["slug", "connector", "upstream_url", "transport", "has_credentials", "gateway_url"]
    list_select_related = ["connector"]
    search_fields = ["slug", "connector__name", "upstream_url"]
    autocomplete_fields = ["connector"]

    @admin.display(boolean=True, description="credential")
    def has_credentials(self, obj: Endpoint) -> bool:
        return obj.has_credentials

    @admin.display(description="gateway URL (give this to MCP clients)")
    def gateway_url(self, obj: Endpoint) -> str:
        return endpoint_url(obj.slug)
