"""django-tables2 tables for the audit pages."""

from __future__ import annotations

from datetime import UTC
from urllib.parse import urlencode

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from audit.models import AuditEvent
from connectors.models import Connector, Device, Grant

TEMPLATE = "activity/_table.html"


class UTCDateTimeColumn(tables.Column):
    """A datetime shown in UTC with strftime: tables2's DateTimeColumn renders a template per cell."""

    def __init__(self, *args, fmt: str = "%Y-%m-%d %H:%M", **kwargs) -> None:
        self.fmt = fmt
        super().__init__(*args, **kwargs)

    def render(self, value) -> str:
        return value.astimezone(UTC).strftime(self.fmt)

    def value(self, value) -> str:
        return value.isoformat() if value else ""


def _badge(value: str, label: str) -> str:
    return format_html('<span class="badge {}">{}</span>', value, label)


class EventTable(tables.Table):
    occurred_at = UTCDateTimeColumn(verbose_name="When (UTC)", fmt="%Y-%m-%d %H:%M:%S")
    action = tables.Column()
    outcome = tables.Column()
    actor = tables.Column(verbose_name="Who", accessor="actor_label", order_by=("actor_label",))
    device = tables.Column(order_by=("device__name",))
    connector = tables.Column(order_by=("connector__name",))
    what = tables.Column(verbose_name="What", accessor="target_label", orderable=False, empty_values=())
    ip = tables.Column(verbose_name="IP", orderable=False)

    class Meta:
        model = AuditEvent
        fields = ("occurred_at", "action", "outcome", "actor", "device", "connector", "what", "ip")
        template_name = TEMPLATE
        order_by = ("-occurred_at",)
        empty_text = "No events match these filters."
        attrs = {"class": "events"}

    def __init__(self, *args, link_identities: bool = True, **kwargs) -> None:
        # Business owners see their connector's users but may not open other people's pages.
        self.link_identities = link_identities
        super().__init__(*args, **kwargs)

    def render_outcome(self, record: AuditEvent) -> str:
        return _badge(record.outcome, record.get_outcome_display())

    def render_actor(self, record: AuditEvent) -> str:
        if record.actor_identity_id and self.link_identities:
            url = reverse("audit:identity", args=[record.actor_identity_id])
            return format_html('<a href="{}">{}</a>', url, record.actor_identity.email)
        if record.actor_identity_id:
            return record.actor_identity.email
        return record.actor_label or "—"

    def render_device(self, record: AuditEvent) -> str:
        device = record.device
        managed = "" if device.managed else mark_safe(' <span class="badge high">unmanaged</span>')
        url = reverse("audit:events") + "?" + urlencode({"device": device.pk})
        return format_html('<a href="{}">{}</a>{}', url, device.name or device.external_id, managed)

    def render_connector(self, record: AuditEvent) -> str:
        url = reverse("audit:connector_activity", args=[record.connector_id])
        return format_html('<a href="{}">{}</a>', url, record.connector.name)

    def render_what(self, record: AuditEvent) -> str:
        data = record.data if isinstance(record.data, dict) else {}
        resource = data.get("resource") or data.get("tool") or record.target_label
        return str(resource) if resource else "—"


class ConnectorEventTable(EventTable):
    """Events of one connector: the connector column would repeat itself."""

    class Meta(EventTable.Meta):
        exclude = ("connector",)


class IdentityEventTable(EventTable):
    class Meta(EventTable.Meta):
        exclude = ("actor",)


class IdentityGrantTable(tables.Table):
    connector = tables.Column(order_by=("connector__name",))
    status = tables.Column()
    kind = tables.Column()
    scopes = tables.Column(orderable=False)
    device = tables.Column(order_by=("device__name",))
    first_seen = UTCDateTimeColumn(fmt="%Y-%m-%d")
    last_used_at = UTCDateTimeColumn(verbose_name="Last used")
    expires_at = UTCDateTimeColumn(verbose_name="Expires", fmt="%Y-%m-%d")

    class Meta:
        model = Grant
        fields = (
            "connector",
            "status",
            "kind",
            "scopes",
            "device",
            "first_seen",
            "last_used_at",
            "expires_at",
        )
        template_name = TEMPLATE
        empty_text = "No grants."

    def render_connector(self, record: Grant) -> str:
        url = reverse("audit:connector_activity", args=[record.connector_id])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            record.connector.name,
            _badge(record.connector.status, record.connector.get_status_display()),
        )

    def render_status(self, record: Grant) -> str:
        return _badge(record.status, record.get_status_display())

    def render_scopes(self, value: list) -> str:
        return f"{len(value)} scope{'s' if len(value) != 1 else ''}" if value else "—"


class IdentityDeviceTable(tables.Table):
    name = tables.Column(verbose_name="Device")
    platform = tables.Column()
    managed = tables.BooleanColumn()
    compliant = tables.BooleanColumn()
    last_activity = UTCDateTimeColumn(verbose_name="Last activity by this person")

    class Meta:
        model = Device
        fields = ("name", "platform", "managed", "compliant", "last_activity")
        template_name = TEMPLATE
        orderable = False
        empty_text = "No devices owned or seen."

    def render_name(self, record: Device) -> str:
        url = reverse("audit:events") + "?" + urlencode({"device": record.pk, "period": "all"})
        return format_html('<a href="{}">{}</a>', url, record.name or record.external_id)


class ConnectorTable(tables.Table):
    name = tables.Column(verbose_name="Connector")
    status = tables.Column()
    risk = tables.Column()
    business_owner = tables.Column(verbose_name="Business owner", order_by=("business_owner__email",))
    paths = tables.Column(verbose_name="Paths (sources)", default="—", orderable=False)
    active_grants = tables.Column(verbose_name="Active grants", attrs={"td": {"class": "num"}})
    last_used_at = UTCDateTimeColumn(verbose_name="Last used")
    discovered_at = UTCDateTimeColumn(verbose_name="Discovered", fmt="%Y-%m-%d")

    class Meta:
        model = Connector
        fields = (
            "name",
            "status",
            "risk",
            "business_owner",
            "paths",
            "active_grants",
            "last_used_at",
            "discovered_at",
        )
        template_name = TEMPLATE
        empty_text = "No connectors match these filters."

    def render_name(self, record: Connector) -> str:
        url = reverse("audit:connector_activity", args=[record.pk])
        return format_html('<a href="{}">{}</a>', url, record.name)

    def render_status(self, record: Connector) -> str:
        return _badge(record.status, record.get_status_display())

    def render_risk(self, record: Connector) -> str:
        return _badge(record.risk, record.get_risk_display())

    def render_business_owner(self, record: Connector) -> str:
        return record.business_owner.email

    def render_active_grants(self, value) -> str:
        return str(value or 0)
