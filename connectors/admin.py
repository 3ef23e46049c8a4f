from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from httpapi.body import BodyError, decode_json

from . import catalog, people
from .admin_actions import ReasonForm, apply_each, with_form, with_reason
from .capabilities import capabilities_probe
from .idp.base import IdpError
from .merging import connector_merge, connector_split
from .models import (
    CatalogEntry,
    Connector,
    ConnectorApp,
    Device,
    Grant,
    Identity,
    IdentitySource,
    Person,
    SourceCapability,
    SyncRun,
)
from .services import connector_revoke, connectors_dismiss_discovered_by_keys


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
        fields = ["kind", "name", "base_url", "token_url", "enabled", "sync_interval", "hr_authoritative"]

    def clean_new_credentials(self) -> dict | None:
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            # The hardened reader's decoder: deep nesting, bad escapes and malformed JSON are form errors.
            value = decode_json(raw.encode("utf-8", "surrogatepass"))
        except BodyError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.message}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Credentials must be a JSON object.")
        return value

    def save(self, commit: bool = True) -> IdentitySource:
        if self.cleaned_data.get("new_credentials") is not None:
            self.instance.set_credentials(self.cleaned_data["new_credentials"])
        return super().save(commit=commit)


def _capabilities_table(source: IdentitySource) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td><strong>{}</strong></td><td><code>{}</code></td><td>{}</td>"
        "<td>{}</td><td>{}</td></tr>",
        (
            (
                c.name,
                "required" if c.required else "optional",
                c.get_state_display(),
                c.endpoint,
                c.detail or "—",
                c.hint or "—",
                f"{c.last_checked:%Y-%m-%d %H:%M} UTC",
            )
            for c in source.capabilities.all()
        ),
    )
    if not rows:
        return "Not checked yet: run a sync or Test connection."
    return format_html(
        "<table><thead><tr><th>capability</th><th></th><th>state</th><th>endpoint</th><th>detail</th>"
        "<th>how to fix</th><th>last checked</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


def _report_probe(modeladmin, request, source: IdentitySource, results) -> None:
    lacking = [r for r in results if r.state != SourceCapability.State.AVAILABLE]
    if not lacking:
        modeladmin.message_user(
            request, f"{source}: every capability is available ({len(results)}).", messages.SUCCESS
        )
        return
    for r in lacking:
        label = SourceCapability.State(r.state).label.lower()
        level = messages.ERROR if r.required else messages.WARNING
        modeladmin.message_user(request, f"{source}: {r.name} — {label} ({r.endpoint}). {r.hint}", level)
    ok = len(results) - len(lacking)
    modeladmin.message_user(
        request, f"{source}: {ok} of {len(results)} capabilities available.", messages.INFO
    )


@admin.register(IdentitySource)
class IdentitySourceAdmin(admin.ModelAdmin):
    form = IdentitySourceForm
    change_form_template = "admin/connectors/identitysource/change_form.html"
    list_display = [
        "name",
        "kind",
        "base_url",
        "enabled",
        "sync_interval",
        "last_success_at",
        "has_credentials",
        "capability_warnings",
        "hr_authoritative",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["capabilities", "last_sync_started_at", "last_success_at", "cursors", "created_at"]
    actions = ["test_connection"]

    @admin.display(description="capabilities (updated by every sync and by Test connection)")
    def capabilities(self, obj: IdentitySource) -> str:
        return _capabilities_table(obj) if obj.pk else "—"

    def get_queryset(self, request):
        missing = ~Q(capabilities__state=SourceCapability.State.AVAILABLE)
        return super().get_queryset(request).annotate(_warnings=Count("capabilities", filter=missing))

    @admin.display(boolean=True, description="credentials")
    def has_credentials(self, obj: IdentitySource) -> bool:
        return obj.has_credentials

    @admin.display(ordering="_warnings", description="capabilities missing")
    def capability_warnings(self, obj: IdentitySource) -> int:
        return getattr(obj, "_warnings", 0)

    def has_test_connection_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_identitysource")

    def _probe(self, request, source: IdentitySource) -> None:
        try:
            results = capabilities_probe(source=source, actor=request.user)
        except IdpError as exc:  # pragma: no cover - the probe classifies adapter errors itself
            self.message_user(request, f"{source}: {exc}", messages.ERROR)
            return
        _report_probe(self, request, source, results)

    @admin.action(
        description="Test connection (probe each capability; writes no register data)",
        permissions=["test_connection"],
    )
    def test_connection(self, request, queryset) -> None:
        for source in queryset:
            self._probe(request, source)

    def get_urls(self):
        view = require_POST(self.admin_site.admin_view(self.test_connection_view))
        return [
            path("<int:pk>/test-connection/", view, name="connectors_identitysource_test_connection"),
            *super().get_urls(),
        ]

    def test_connection_view(self, request, pk: int):
        source = get_object_or_404(IdentitySource, pk=pk)
        if not self.has_test_connection_permission(request):
            return HttpResponseRedirect(reverse("admin:connectors_identitysource_change", args=[pk]))
        self._probe(request, source)
        return HttpResponseRedirect(reverse("admin:connectors_identitysource_change", args=[pk]))


class LinkConflictFilter(admin.SimpleListFilter):
    title = "link conflict"
    parameter_name = "conflict"

    def lookups(self, request, model_admin):
        return [("yes", "Conflicting links"), ("no", "None")]

    def queryset(self, request, queryset):
        field = "link_conflict" if queryset.model is Identity else "conflict"
        if self.value() == "yes":
            return queryset.exclude(**{field: ""})
        if self.value() == "no":
            return queryset.filter(**{field: ""})
        return queryset


class LinkForm(forms.Form):
    person = forms.ModelChoiceField(
        queryset=Person.objects.all(), widget=forms.NumberInput, to_field_name="pk"
    )


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "name",
        "department",
        "status",
        "manager",
        "source",
        "person",
        "link_pinned",
        "link_conflict",
        "unverified",
        "last_seen",
    ]
    list_filter = ["status", "source", "unverified", "is_service", "link_pinned", LinkConflictFilter]
    search_fields = ["email", "name", "external_id", "department", "link_key"]
    list_select_related = ["manager", "source", "person"]
    autocomplete_fields = ["manager", "user"]
    readonly_fields = [
        "first_seen",
        "last_seen",
        "status_changed_at",
        "person",
        "link_key",
        "link_pinned",
        "link_conflict",
    ]
    actions = ["link_to_person", "unlink_from_person", "unpin_link"]

    def has_link_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_person")

    @admin.action(description="Link to a person (by id; pinned)", permissions=["link"])
    def link_to_person(self, request, queryset):
        def apply(data):
            for identity in queryset:
                people.person_link(identity=identity, person=data["person"], actor=request.user)
            return f"{queryset.count()} identity(ies) linked to {data['person']}."

        form = LinkForm(request.POST if "apply" in request.POST else None)
        return with_form(self, request, queryset, "Link identities to person", form, apply)

    @admin.action(description="Unlink into a person of its own (pinned)", permissions=["link"])
    def unlink_from_person(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda i: people.person_unlink(identity=i, actor=request.user),
            "unlinked",
        )

    @admin.action(description="Let automatic linking decide again", permissions=["link"])
    def unpin_link(self, request, queryset):
        apply_each(
            self, request, queryset, lambda i: people.person_unpin(identity=i, actor=request.user), "unpinned"
        )


class PersonIdentityInline(admin.TabularInline):
    model = Identity
    fk_name = "person"
    extra = 0
    can_delete = False
    fields = ["source", "email", "name", "external_id", "status", "manager", "link_key", "link_pinned"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "department", "manager", "primary_identity", "conflict"]
    list_filter = [LinkConflictFilter, "department"]
    search_fields = ["email", "name", "identities__email"]
    list_select_related = ["manager", "primary_identity"]
    readonly_fields = ["name", "email", "department", "manager", "primary_identity", "conflict", "created_at"]
    inlines = [PersonIdentityInline]

    def has_add_permission(self, request) -> bool:
        return False  # people come from linking; IAM moves identities between them (Identity actions)


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
    list_filter = ["status", "risk", "kind", "discovered_by_key"]
    search_fields = ["name", "vendor", "apps__client_id"]
    list_select_related = ["business_owner"]
    autocomplete_fields = ["business_owner", "technical_owner"]
    readonly_fields = [
        "status",
        "risk_score",
        "discovered_at",
        "status_changed_at",
        "created_at",
        "catalog_entry",
        "merged_into",
        "discovered_by_key",
    ]
    inlines = [ConnectorAppInline]
    actions = [
        "revoke",
        "merge",
        "dismiss_by_ingest_key",
    ]  # governance adds suspend and resume, with the workflow services they call

    def has_merge_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_connector")

    @admin.action(description="Merge into one of them (one product)", permissions=["merge"])
    def merge(self, request, queryset):
        if queryset.count() < 2:
            self.message_user(
                request, "Select the connectors that are one product (two or more).", messages.ERROR
            )
            return None
        form = MergeForm(request.POST if "apply" in request.POST else None, choices=queryset)

        def apply(data):
            survivor = data["survivor"]
            others = [c for c in queryset if c.pk != survivor.pk]
            for merged in others:
                connector_merge(survivor=survivor, merged=merged, actor=request.user)
            return f"{len(others)} connector(s) merged into '{survivor.name}'."

        return with_form(self, request, queryset, "Merge connectors", form, apply)

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

    def has_dismiss_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_connector")

    @admin.action(
        description="Dismiss everything their ingest key discovered (asks for a reason)",
        permissions=["dismiss"],
    )
    def dismiss_by_ingest_key(self, request, queryset):
        keys = {pk for pk in queryset.values_list("discovered_by_key", flat=True) if pk is not None}
        if not keys:
            self.message_user(request, "None of these was discovered by an ingest key.", messages.ERROR)
            return None
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            count = connectors_dismiss_discovered_by_keys(
                key_ids=keys, actor=request.user, reason=form.cleaned_data["reason"]
            )
            self.message_user(request, f"{count} discovered connector(s) dismissed.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Dismiss every connector still discovered by the ingest key(s) that found these",
            "form": form,
            "objects": queryset,
            "opts": self.model._meta,
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "portal/admin_reason.html", context)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_active_grants=Count("grants", filter=Q(grants__status=Grant.Status.ACTIVE)))
        )

    @admin.display(ordering="_active_grants", description="active grants")
    def active_grants(self, obj: Connector) -> int:
        return obj._active_grants


class MergeForm(forms.Form):
    survivor = forms.ModelChoiceField(
        queryset=Connector.objects.none(), help_text="The connector that stays."
    )

    def __init__(self, *args, choices, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["survivor"].queryset = Connector.objects.filter(pk__in=[c.pk for c in choices])


@admin.register(ConnectorApp)
class ConnectorAppAdmin(admin.ModelAdmin):
    list_display = ["client_id", "name", "connector", "source", "publisher", "verified", "last_seen"]
    list_filter = ["source", "verified"]
    search_fields = ["client_id", "name", "publisher", "connector__name"]
    list_select_related = ["connector", "source"]
    autocomplete_fields = ["connector"]
    actions = ["split"]

    def has_split_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_connector")

    @admin.action(description="Split off into a connector of its own", permissions=["split"])
    def split(self, request, queryset):
        apply_each(self, request, queryset, lambda a: connector_split(app=a, actor=request.user), "split off")


class CatalogUploadForm(forms.Form):
    file = forms.FileField(help_text="A catalog JSON file (the format of connectors/data/catalog.json).")


@admin.register(CatalogEntry)
class CatalogEntryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "publisher", "kind", "risk", "updated_at"]
    list_filter = ["kind", "risk"]
    search_fields = ["name", "slug", "publisher"]
    readonly_fields = ["updated_at"]
    change_list_template = "admin/connectors/catalogentry/change_list.html"

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", upload, name="connectors_catalogentry_upload"), *super().get_urls()]

    def upload_view(self, request):
        """Import an uploaded catalog file: entries by slug are created or updated, one audit event."""
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = CatalogUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                apps = catalog.load(upload.read(5_000_001)[:5_000_000])
            except catalog.CatalogError as exc:
                form.add_error("file", str(exc))
            else:
                counts = catalog.catalog_import(apps=apps, actor=request.user, origin=f"upload:{upload.name}")
                self.message_user(
                    request,
                    f"Catalog imported: {counts['apps']} apps, {counts['new']} new, "
                    f"{counts['changed']} changed.",
                    messages.SUCCESS,
                )
                return redirect("admin:connectors_catalogentry_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a catalog file",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/connectors/catalogentry/upload.html", context)


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
    # "held": the person is suspended and offboarding holds the grant (see governance.offboarding).
    list_filter = ["status", ("held_at", admin.EmptyFieldListFilter), "kind", "consent_type", "source"]
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
        "revoke_next_attempt_at",
        "held_at",
        "hold_reason",
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
        "warning_count",
    ]
    list_filter = ["outcome", "source"]
    list_select_related = ["source"]
    search_fields = ["source__name", "error"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="warnings")
    def warning_count(self, obj: SyncRun) -> str:
        return ", ".join(f"{w.get('capability')}: {w.get('state')}" for w in obj.warnings or []) or "—"
