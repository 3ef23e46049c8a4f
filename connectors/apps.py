from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connector register"

    def ready(self) -> None:
        from telemetry import health, metrics

        from . import health as connector_health

        health.register(connector_health.SyncFreshness)
        health.register(connector_health.RevocationsFlowing)
        metrics.register_collector("connectors", connector_health.collect)
