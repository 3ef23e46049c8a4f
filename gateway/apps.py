from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "MCP gateway"

    def ready(self) -> None:
        from connectors import crypto

        from .models import Endpoint

        crypto.register_encrypted_field(Endpoint, "credentials_encrypted")  # the upstream credential
        # Receivers: issued tokens become register grants; revoked grants revoke their OAuth tokens.
        from telemetry import health

        from . import receivers  # noqa: F401
        from .health import GatewayReady

        health.register(GatewayReady)
