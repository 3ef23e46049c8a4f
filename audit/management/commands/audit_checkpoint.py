"""Sign a checkpoint over the audit chain head now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import SigningKeyError, checkpoint_create
from audit.witness import WitnessError


class Command(BaseCommand):
    help = "Sign the current audit chain head (covers the previous checkpoint)."

    def handle(self, **options) -> None:
        try:
            checkpoint = checkpoint_create()
        except (SigningKeyError, WitnessError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"checkpoint {checkpoint.pk} signed sequence {checkpoint.sequence} "
            f"head {checkpoint.head_hash} with key {checkpoint.key_id}"
        )
