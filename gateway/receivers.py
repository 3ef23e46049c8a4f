"""Signal receivers: DOT's token issuance and the register's ended grants."""

from django.dispatch import receiver
from oauth2_provider.signals import app_authorized

from connectors.signals import grants_ended

from . import services


@receiver(app_authorized, dispatch_uid="gateway.record_grant")
def _record_grant(sender, request, token, **kwargs) -> None:
    services.gateway_grant_record(token=token)


@receiver(grants_ended, dispatch_uid="gateway.revoke_tokens")
def _revoke_tokens(sender, grant_ids, **kwargs) -> None:
    services.gateway_tokens_revoke(grant_ids=grant_ids)
