"""Gateway endpoints: the upstream MCP server behind each connector, reachable at /mcp/<slug>."""

from typing import Any

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from connectors import crypto


class Endpoint(models.Model):
    """One connector (kind MCP server) published through the gateway.

    The slug names the endpoint (``<gateway>/mcp/<slug>``) and so the RFC 8707 resource every token
    for it is bound to. The upstream credential is encrypted at rest like IdP credentials
    (connectors.crypto) and never shown to the person.
    """

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"

    connector = models.OneToOneField(
        "connectors.Connector", on_delete=models.PROTECT, related_name="gateway_endpoint"
    )
    slug = models.SlugField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lower-case letters, digits and hyphens.")],
    )
    upstream_url = models.URLField(max_length=500)
    transport = models.CharField(max_length=24, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    credentials_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Name the connector's MCP server URL after its gateway endpoint when it has none.

        Gateway calls are recorded through the ingest writer, which finds the connector by that URL;
        without it each call would discover a new shadow connector.
        """
        super().save(*args, **kwargs)
        if not self.connector.mcp_server_url:
            from django.conf import settings

            url = f"{settings.LANYARD_GATEWAY_URL.rstrip('/')}/mcp/{self.slug}"
            type(self.connector).objects.filter(pk=self.connector_id, mcp_server_url="").update(
                mcp_server_url=url
            )
            self.connector.mcp_server_url = url

    @property
    def credentials(self) -> dict[str, Any]:
        """The upstream credential, e.g. ``{"headers": {"Authorization": "Bearer ..."}}``."""
        return crypto.decrypt_json(self.credentials_encrypted) if self.credentials_encrypted else {}

    def set_credentials(self, value: dict[str, Any]) -> None:
        self.credentials_encrypted = crypto.encrypt_json(value)

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)
