from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_migrate

        from .iam_group import on_post_migrate

        post_migrate.connect(on_post_migrate, dispatch_uid="governance.iam_staff_group")

        from connectors.signals import connector_merged, identity_status_changed, sync_succeeded

        from .attestations import check_attestation_settings
        from .offboarding import check_offboarding_settings, on_identity_status_changed, on_sync_succeeded

        identity_status_changed.connect(on_identity_status_changed, dispatch_uid="governance.offboarding")
        sync_succeeded.connect(on_sync_succeeded, dispatch_uid="governance.offboarding_reconcile")
        checks.register(check_attestation_settings)
        checks.register(check_offboarding_settings)

        from .merging import on_connector_merged

        connector_merged.connect(on_connector_merged, dispatch_uid="governance.connector_merged")

        from . import signin

        signin.connect()
        checks.register(signin.check_proxy_settings)
        from telemetry import health

        from .health import PendingEmail

        health.register(PendingEmail)
