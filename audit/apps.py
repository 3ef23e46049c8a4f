from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        checks.register(check_signing_key, checks.Tags.security)

        from telemetry import health, metrics

        from . import health as audit_health

        health.register(audit_health.CheckpointAge)
        metrics.register_collector("audit", audit_health.collect)


def check_signing_key(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse to run without a checkpoint signing key outside DEBUG (and report an unreadable one)."""
    from django.conf import settings

    from .checkpoints import SigningKeyError, private_key, signing_key_configured

    if not signing_key_configured():
        if settings.DEBUG:
            return []
        return [
            checks.Error(
                "No audit signing key is configured.",
                hint="Set LANYARD_AUDIT_SIGNING_KEY (PEM or base64 Ed25519 private key) or "
                "LANYARD_AUDIT_SIGNING_KEY_FILE. Generate one with `openssl genpkey -algorithm ed25519`.",
                id="lanyard.E001",
            )
        ]
    try:
        private_key()
    except SigningKeyError as exc:
        return [checks.Error(str(exc), id="lanyard.E002")]
    return []
