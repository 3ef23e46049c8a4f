"""Print the audit signing public key (PEM) and its key id, for outside verifiers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import SigningKeyError, key_id, public_key, public_key_pem


class Command(BaseCommand):
    help = "Print the public key that verifies audit checkpoints, with its key id."

    def handle(self, **options) -> None:
        try:
            key = public_key()
        except SigningKeyError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"# key id: {key_id(key)}")
        self.stdout.write(public_key_pem(key), ending="")
