from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connector register"

    def ready(self) -> None:
        from . import crypto
        from .models import IdentitySource

        crypto.register_encrypted_field(IdentitySource, "credentials_encrypted")
        from telemetry import health, metrics

        from . import health as connector_health

        health.register(connector_health.SyncFreshness)
        health.register(connector_health.RevocationsFlowing)
        metrics.register_collector("connectors", connector_health.collect)
