"""django-tables2 tables for the portal pages."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from connectors.models import Connector, Grant
from connectors.risk import assess

from .models import ConnectorRequest

PER_PAGE = 25


def _badge(value: str, label: str) -> str:
    return format_html('<span class="badge {}">{}</span>', value, label)


def _scopes(scopes: list[str]) -> str:
    if not scopes:
        return "—"
    return format_html_join(" ", '<code class="scope">{}</code>', ((s,) for s in scopes))


class ConnectorLinkColumn(tables.Column):
    def render(self, value, record) -> str:
        connector = record if isinstance(record, Connector) else record.connector
        return format_html(
            '<a href="{}">{}</a>', reverse("portal:connector_detail", args=[connector.pk]), value
        )


class MyConnectorsTable(tables.Table):
    name = ConnectorLinkColumn()
    status = tables.Column()
    risk = tables.Column()
    holders = tables.Column(verbose_name="Holders", attrs={"td": {"class": "num"}})
    active_grants = tables.Column(verbose_name="Active grants", attrs={"td": {"class": "num"}})
    last_used = tables.DateTimeColumn(verbose_name="Last used", format="Y-m-d H:i", default="never")
    pending_requests = tables.Column(verbose_name="Pending requests", attrs={"td": {"class": "num"}})

    class Meta:
        model = Connector
        fields = ("name", "vendor", "kind", "status", "risk")
        sequence = ("name", "vendor", "kind", "status", "risk", "holders", "active_grants", "last_used")
        attrs = {"class": "list", "id": "my-connectors"}
        empty_text = "You own no connectors."

    def render_status(self, value, record) -> str:
        return _badge(record.status, value)

    def render_risk(self, value, record) -> str:
        return _badge(record.risk, value)


class InboxTable(tables.Table):
    id = tables.Column(verbose_name="#")
    connector = ConnectorLinkColumn(accessor="connector__name", verbose_name="Connector")
    kind = tables.Column()
    status = tables.Column(verbose_name="Waiting for")
    requester = tables.Column(accessor="requester__email", verbose_name="Requester")
    scopes = tables.Column(orderable=False)
    risk = tables.Column(accessor="connector__risk", verbose_name="Risk")
    similar_sanctioned = tables.Column(
        verbose_name="Similar sanctioned", accessor="pk", empty_values=(), orderable=False
    )
    created_at = tables.DateTimeColumn(verbose_name="Asked", format="Y-m-d H:i")
    actions = tables.TemplateColumn(
        template_name="portal/_inbox_actions.html", orderable=False, verbose_name="Decide"
    )

    class Meta:
        model = ConnectorRequest
        fields = ()
        sequence = (
            "id",
            "connector",
            "kind",
            "status",
            "requester",
            "scopes",
            "risk",
            "similar_sanctioned",
            "created_at",
            "actions",
        )
        attrs = {"class": "list", "id": "inbox"}
        empty_text = "Nothing is waiting for you."

    def render_id(self, value) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("portal:request_detail", args=[value]), value)

    def render_kind(self, value, record) -> str:
        return {"new": "New", "existing": "Access", "sanction": "Sanction"}.get(record.kind, value)

    def render_status(self, value, record) -> str:
        short = {"pending_owner": "Owner", "pending_iam": "IAM", "approved": "Provisioning"}
        if record.status == "pending_owner" and not record.connector.business_owner_id:
            return _badge(record.status, "An owner (IAM assigns)")
        return _badge(record.status, short.get(record.status, value))

    def render_requester(self, value, record) -> str:
        html = format_html("{}", value)
        if record.on_behalf_of_id:
            html = format_html("{}<br><small>for {}</small>", html, record.on_behalf_of.email)
        if record.manager_name:
            html = format_html(
                "{}<br><small>manager: {} {}</small>", html, record.manager_name, record.manager_email or ""
            )
        return html

    def render_scopes(self, value) -> str:
        return _scopes(value)

    def render_similar_sanctioned(self, record) -> str:
        # Filled by the view for the current page (governance.selectors.similar_sanctioned).
        return getattr(self, "similar", {}).get(record.pk) or "—"

    def render_risk(self, value, record) -> str:
        connector = _badge(record.connector.risk, record.connector.get_risk_display())
        if not record.scopes:
            return connector
        asked = assess(record.scopes)
        return format_html(
            '{}<br><small title="{}">asked: {}</small>', connector, "; ".join(asked.reasons), asked.level
        )


class RequestsTable(tables.Table):
    id = tables.Column(verbose_name="#")
    connector = tables.Column(accessor="connector__name", verbose_name="Connector")
    kind = tables.Column()
    status = tables.Column()
    created_at = tables.DateTimeColumn(verbose_name="Asked", format="Y-m-d H:i")

    class Meta:
        model = ConnectorRequest
        fields = ()
        sequence = ("id", "connector", "kind", "status", "created_at")
        attrs = {"class": "list", "id": "my-requests"}
        empty_text = "You have made no requests."

    def render_id(self, value) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("portal:request_detail", args=[value]), value)


class TableTemplateColumn(tables.TemplateColumn):
    """A template column whose template sees its own table as ``table`` (not the page's variable)."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["table"] = kwargs["table"]
        return context


class GrantsTable(tables.Table):
    """A grant list: the user's own grants, or one connector's holders (``can_revoke`` shows the button)."""

    connector = tables.Column(accessor="connector__name", verbose_name="Connector")
    identity = tables.Column(accessor="identity__email", verbose_name="Identity", default="whole tenant")
    device = tables.Column(accessor="device__name", verbose_name="Device", default="—")
    source = tables.Column(accessor="source__name", verbose_name="Source", default="—")
    kind = tables.Column()
    scopes = tables.Column(orderable=False)
    status = tables.Column()
    last_used_at = tables.DateTimeColumn(verbose_name="Last used", format="Y-m-d H:i", default="never")
    expires_at = tables.DateTimeColumn(verbose_name="Expires", format="Y-m-d", default="—")
    actions = TableTemplateColumn(
        template_name="portal/_grant_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = Grant
        fields = ()
        sequence = (
            "connector",
            "identity",
            "device",
            "source",
            "kind",
            "scopes",
            "status",
            "last_used_at",
            "expires_at",
            "actions",
        )
        attrs = {"class": "list", "id": "grants"}
        empty_text = "No grants."

    def __init__(self, *args, can_revoke: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.can_revoke = can_revoke

    def render_scopes(self, value) -> str:
        return _scopes(value)

    def render_status(self, value, record) -> str:
        if record.is_held:
            # Still active at the IdP, but not usable while its person is suspended (offboarding's hold).
            return format_html("{} {}", _badge(record.status, value), _badge("held", "held"))
        return _badge(record.status, value)


class ShadowTable(tables.Table):
    name = ConnectorLinkColumn()
    risk = tables.Column()
    holders = tables.Column(verbose_name="Holders", attrs={"td": {"class": "num"}})
    active_grants = tables.Column(verbose_name="Active grants", attrs={"td": {"class": "num"}})
    seen_in = tables.Column(verbose_name="Seen in", default="—", orderable=False)
    last_used = tables.DateTimeColumn(verbose_name="Last used", format="Y-m-d H:i", default="never")
    discovered_at = tables.DateTimeColumn(verbose_name="Discovered", format="Y-m-d", default="—")
    actions = tables.TemplateColumn(
        template_name="portal/_shadow_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = Connector
        fields = ("name", "vendor", "kind", "risk")
        sequence = (
            "name",
            "vendor",
            "kind",
            "risk",
            "holders",
            "active_grants",
            "seen_in",
            "last_used",
            "discovered_at",
            "actions",
        )
        attrs = {"class": "list", "id": "shadow"}
        empty_text = "No shadow connectors: everything found is in the register."

    def render_risk(self, value, record) -> str:
        return _badge(record.risk, value)


class SigninEventsTable(tables.Table):
    """Sign-in security events: when, what, which account, who, from where."""

    occurred_at = tables.DateTimeColumn(verbose_name="When", format="Y-m-d H:i:s")
    action = tables.Column(verbose_name="Event")
    outcome = tables.Column()
    account = tables.Column(verbose_name="Account", accessor="data__account", default="—", orderable=False)
    actor_label = tables.Column(verbose_name="Signed-in user", default="—")
    ip = tables.Column(verbose_name="From", default="—")
    user_agent = tables.Column(verbose_name="Browser", default="—", orderable=False)
    sequence = tables.Column(verbose_name="Seq.", attrs={"td": {"class": "num"}})

    class Meta:
        attrs = {"class": "list", "id": "signin-events"}
        empty_text = "No sign-in events recorded yet."
        order_by = ("-occurred_at",)

    def render_action(self, value) -> str:
        from .signin import ACTIONS

        return format_html("<code>{}</code> {}", value, ACTIONS.get(value, ""))

    def render_outcome(self, value, record) -> str:
        return _badge(value, record.get_outcome_display())

    def render_actor_label(self, value, record) -> str:
        # A failed sign-in has no user: its label is the account typed, already in its own column.
        return value if record.actor_user_id else "—"

    def render_user_agent(self, value) -> str:
        return value[:80]
