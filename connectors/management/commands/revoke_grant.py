"""Revoke one grant: mark it revoking and call its IdP (through the task queue)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connectors.models import Grant, IllegalTransition
from connectors.services import grant_revoke


class Command(BaseCommand):
    help = "Revoke a grant by id; tenant-wide (AllPrincipals) consents need --confirm-tenant-wide."

    def add_arguments(self, parser) -> None:
        parser.add_argument("grant_id", type=int)
        parser.add_argument("--reason", default="revoked from the command line")
        parser.add_argument(
            "--confirm-tenant-wide",
            action="store_true",
            help="confirm revoking a consent that covers every user of the tenant",
        )

    def handle(self, *args, grant_id: int, reason: str, confirm_tenant_wide: bool, **options) -> None:
        grant = Grant.objects.filter(pk=grant_id).first()
        if grant is None:
            raise CommandError(f"No grant with id {grant_id}.")
        try:
            grant = grant_revoke(
                grant=grant,
                actor="manage.py revoke_grant",
                reason=reason,
                confirm_tenant_wide=confirm_tenant_wide,
            )
        except IllegalTransition as exc:
            raise CommandError(str(exc)) from None
        grant.refresh_from_db()
        self.stdout.write(f"Grant {grant.pk} ({grant.external_id}): {grant.status}")
        if grant.revoke_error:
            self.stdout.write(f"last IdP error: {grant.revoke_error}")
