"""System checks for the attestation settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ..models import AttestationCampaign


def check_attestation_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """System check: the attestation schedule settings make sense."""
    from django.core.checks import Error

    errors = []
    if settings.LANYARD_ATTESTATION_SCHEDULE not in ("", "monthly", "quarterly"):
        errors.append(
            Error(
                "LANYARD_ATTESTATION_SCHEDULE must be empty, 'monthly' or 'quarterly'.",
                id="lanyard.E101",
            )
        )
    if settings.LANYARD_ATTESTATION_POLICY not in AttestationCampaign.Policy.values:
        errors.append(Error("LANYARD_ATTESTATION_POLICY must be 'revoke' or 'flag'.", id="lanyard.E102"))
    days = settings.LANYARD_ATTESTATION_REMINDER_DAYS
    if any(d <= 0 or d >= settings.LANYARD_ATTESTATION_DEADLINE_DAYS for d in days):
        errors.append(
            Error(
                "LANYARD_ATTESTATION_REMINDER_DAYS must be whole days between 1 and the deadline days.",
                id="lanyard.E103",
            )
        )
    return errors
