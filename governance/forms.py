"""Forms for the portal: parse and validate input; the services decide what is allowed."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from connectors.admin_actions import ReasonForm  # noqa: F401  (the portal asks for reasons too)
from connectors.models import Connector, IdentitySource

from .models import ConnectorRequest, User


def split_scopes(raw: str) -> list[str]:
    """Return scopes written one per line, or separated by commas or spaces."""
    return [s for s in re.split(r"[\s,]+", raw or "") if s]


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        name = obj.get_full_name()
        return f"{name} <{obj.email}>" if name else obj.email


class RequestForm(forms.Form):
    kind = forms.ChoiceField(
        choices=ConnectorRequest.Kind.choices,
        widget=forms.RadioSelect,
        initial=ConnectorRequest.Kind.EXISTING,
    )
    connector = forms.ModelChoiceField(
        queryset=Connector.objects.filter(
            status__in=[Connector.Status.ACTIVE, Connector.Status.DISCOVERED]
        ).order_by("name"),
        required=False,
        help_text="For access to an existing connector, or to sanction a discovered (shadow) one.",
    )
    name = forms.CharField(max_length=200, required=False, help_text="For a new connector.")
    vendor = forms.CharField(max_length=200, required=False)
    connector_kind = forms.ChoiceField(
        choices=Connector.Kind.choices, initial=Connector.Kind.OAUTH_APP, label="Type"
    )
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why you need it.")
    scopes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="The permissions it needs, one per line (e.g. Calendars.Read).",
    )
    data_reached = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="What company data it will reach."
    )
    source = forms.ModelChoiceField(
        queryset=IdentitySource.objects.filter(enabled=True),
        required=False,
        help_text="Where it is allowed (Google Workspace, Entra ID, Okta, GitHub).",
    )
    client_id = forms.CharField(max_length=255, required=False, label="App / client id")
    idp_reference = forms.CharField(
        max_length=100,
        required=False,
        label="Provider reference",
        help_text="e.g. the id of your pending GitHub fine-grained token request.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The list offers active connectors only (a register can hold thousands of shadow ones); a
        # discovered connector arrives preselected from "My grants" and is still accepted on POST.
        field = self.fields["connector"]
        offered = Connector.objects.filter(status=Connector.Status.ACTIVE).order_by("name")
        preselected = self.initial.get("connector") or (self.data.get("connector") if self.is_bound else None)
        extra = []
        if preselected and str(preselected).isdigit():
            extra = list(Connector.objects.filter(pk=preselected, status=Connector.Status.DISCOVERED))
        field.widget.choices = [("", "---------")] + [
            (c.pk, f"{c.name} (shadow)" if c in extra else c.name) for c in [*extra, *offered]
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        connector = data.get("connector")
        if kind == ConnectorRequest.Kind.NEW:
            if not data.get("name"):
                self.add_error("name", "Name the connector you want.")
            data["connector"] = None
        elif kind == ConnectorRequest.Kind.EXISTING:
            if connector is None or connector.status != Connector.Status.ACTIVE:
                self.add_error("connector", "Pick an active connector.")
        elif kind == ConnectorRequest.Kind.SANCTION and (
            connector is None or connector.status != Connector.Status.DISCOVERED
        ):
            self.add_error("connector", "Pick a discovered (shadow) connector.")
        data["scopes"] = split_scopes(data.get("scopes", ""))
        return data

    def provision_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.cleaned_data.get("client_id"):
            data["client_id"] = self.cleaned_data["client_id"].strip()
        if self.cleaned_data.get("idp_reference"):
            data["extra"] = {"request_id": self.cleaned_data["idp_reference"].strip()}
        return data


class DecisionForm(forms.Form):
    step = forms.ChoiceField(choices=[("owner", "Business owner"), ("iam", "IAM")], widget=forms.HiddenInput)
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "A rejection needs a reason.")
        return data

    @property
    def approve(self) -> bool:
        return self.cleaned_data["decision"] == "approve"


class ProvisionForm(forms.Form):
    evidence = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Needed where the provider has no API: what you did, where, and when.",
    )


class OwnerForm(forms.Form):
    owner = UserChoiceField(queryset=User.objects.filter(is_active=True).order_by("email"))


class SanctionForm(forms.Form):
    owner = UserChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("email"), help_text="Who answers for it."
    )
    on_behalf_of = UserChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("email"),
        required=False,
        help_text="The person who uses it, if the request is made for them.",
    )
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    scopes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean_scopes(self) -> list[str]:
        return split_scopes(self.cleaned_data.get("scopes", ""))


class MergeForm(forms.Form):
    survivor = forms.ModelChoiceField(
        queryset=Connector.objects.exclude(status=Connector.Status.MERGED).order_by("name", "pk"),
        help_text="The connector that stays: this one's paths, grants and requests move to it.",
    )

    def __init__(self, *args, connector: Connector, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["survivor"].queryset = self.fields["survivor"].queryset.exclude(pk=connector.pk)
