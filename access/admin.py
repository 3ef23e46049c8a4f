"""IAM's side of the decision point: policies (validated, versioned, audited), what-if, schema, counts."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import policies
from .models import DecisionCount, DecisionSample, Policy, PolicyVersion
from .schema import schema_json

EXAMPLE = """@id("block-delete-tools")
@reason("Deleting through an AI tool is not allowed at Example Corp; do it yourself in {connector}.")
forbid (principal, action == Lanyard::Action::"tools/call", resource is Lanyard::Tool)
when { resource.name like "delete*" };
"""


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = ["name", "description", "text", "enabled"]
        widgets = {"text": forms.Textarea(attrs={"rows": 18, "cols": 100, "style": "font-family: monospace"})}

    def clean(self):
        cleaned = super().clean()
        text, name = cleaned.get("text"), cleaned.get("name")
        if text and name:
            try:
                if cleaned.get("enabled"):
                    policies.validate(
                        text, name=name, others=policies._custom_parts(exclude=self.instance.name or name)
                    )
                else:
                    policies.cedarpy.policies_to_json_str(text)
            except (policies.PolicyInvalid, ValueError) as exc:
                messages_ = getattr(exc, "messages", None) or [str(exc)]
                raise forms.ValidationError({"text": [f"Cedar: {m}" for m in messages_]}) from None
        return cleaned


class VersionInline(admin.TabularInline):
    model = PolicyVersion
    extra = 0
    can_delete = False
    fields = ["version", "enabled", "created_by", "created_at", "text"]
    readonly_fields = fields
    ordering = ["-version"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class WhatIfForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="The policy this draft would be (a new name adds one).")
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 100, "style": "font-family: monospace"})
    )
    limit = forms.IntegerField(min_value=1, max_value=2000, initial=500, label="Replay the last N decisions")


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ["name", "enabled", "version", "updated_by", "updated_at", "description"]
    readonly_fields = ["version", "updated_by", "updated_at"]
    inlines = [VersionInline]
    change_list_template = "admin/access/policy/change_list.html"
    change_form_template = "admin/access/policy/change_form.html"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # disable instead: every version stays on record

    def get_changeform_initial_data(self, request):
        return {"text": EXAMPLE, **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change) -> None:
        previous = None
        if change:
            before = Policy.objects.get(pk=obj.pk)
            previous = (before.text, before.enabled)
        policies.policy_save(policy=obj, actor=request.user, previous=previous)

    def get_urls(self):
        own = [
            path("schema/", self.admin_site.admin_view(self.schema_view), name="access_policy_schema"),
            path("what-if/", self.admin_site.admin_view(self.what_if_view), name="access_policy_whatif"),
        ]
        return own + super().get_urls()

    def schema_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Cedar schema and default policies",
            "schema": schema_json(),
            "defaults": policies.default_text(),
        }
        return TemplateResponse(request, "admin/access/policy/schema.html", context)

    def what_if_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        replayed, changed, error = None, [], ""
        if request.method == "POST":
            form = WhatIfForm(request.POST)
            if form.is_valid():
                try:
                    replayed, changed = policies.what_if(
                        draft_text=form.cleaned_data["text"],
                        name=form.cleaned_data["name"],
                        limit=form.cleaned_data["limit"],
                    )
                except (policies.PolicyInvalid, ValueError) as exc:
                    error = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        else:
            initial = {"limit": 500}
            if request.GET.get("policy"):
                policy = get_object_or_404(Policy, pk=request.GET["policy"])
                initial |= {"name": policy.name, "text": policy.text}
            form = WhatIfForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "What if: replay recent decisions under a draft policy",
            "form": form,
            "replayed": replayed,
            "changed": changed,
            "error": error,
            "samples_url": reverse("admin:access_decisionsample_changelist"),
        }
        return TemplateResponse(request, "admin/access/policy/what_if.html", context)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DecisionCount)
class DecisionCountAdmin(ReadOnly):
    list_display = ["hour", "connector", "permits", "denies"]
    list_select_related = ["connector"]
    date_hierarchy = "hour"
    show_full_result_count = False


@admin.register(DecisionSample)
class DecisionSampleAdmin(ReadOnly):
    list_display = ["decided_at", "decision", "summary", "reason", "policies"]
    list_filter = ["decision"]
    search_fields = ["summary", "reason"]
    show_full_result_count = False
