"""Print the audit signing public key (PEM) and its key id, for outside verifiers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import SigningKeyError, key_id, public_key, public_key_pem, registered_keys


class Command(BaseCommand):
    help = "Print the public key that verifies audit checkpoints, with its key id."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Print every registered signing key, oldest first, not only the configured one.",
        )

    def handle(self, **options) -> None:
        if options["all"]:
            for row in registered_keys():
                after = f", successor of {row['previous_key_id']}" if row["previous_key_id"] else " (first)"
                self.stdout.write(
                    f"# key id: {row['key_id']}{after}, registered {row['created_at']:%Y-%m-%d %H:%M:%S}Z"
                )
                self.stdout.write(row["public_key"], ending="")
            return
        try:
            key = public_key()
        except SigningKeyError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"# key id: {key_id(key)}")
        self.stdout.write(public_key_pem(key), ending="")
