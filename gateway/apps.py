from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "MCP gateway"

    def ready(self) -> None:
        # Receivers: issued tokens become register grants; revoked grants revoke their OAuth tokens.
        from . import receivers  # noqa: F401
