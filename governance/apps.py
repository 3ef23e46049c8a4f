from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from django.core import checks

        from connectors.signals import identity_status_changed

        from .attestations import check_attestation_settings
        from .offboarding import on_identity_status_changed

        identity_status_changed.connect(on_identity_status_changed, dispatch_uid="governance.offboarding")
        checks.register(check_attestation_settings)
