"""Export the whole audit trail as a bundle an outsider verifies with ``python -m audit.offline``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import SigningKeyError
from audit.exports import write_bundle


class Command(BaseCommand):
    help = (
        "Write events.jsonl, checkpoints.jsonl, audit-signing-keys.jsonl and audit-public-key.pem "
        "into DIRECTORY, for the offline verifier (python -m audit.offline)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--database", default="default")

    def handle(self, **options) -> None:
        try:
            counts = write_bundle(options["directory"], using=options["database"])
        except (OSError, SigningKeyError) as exc:
            raise CommandError(f"cannot write the bundle: {exc}")
        self.stdout.write(
            f"{counts['events']} events, {counts['checkpoints']} checkpoints and "
            f"{counts['signing_keys']} signing keys written to {options['directory']}"
        )
        self.stdout.write(
            f"verify with: python -m audit.offline --events {options['directory']}/events.jsonl "
            f"--checkpoints {options['directory']}/checkpoints.jsonl "
            f"--signing-keys {options['directory']}/audit-signing-keys.jsonl "
            "--public-key PUBLISHED_KEY.pem [--witness WITNESS_DIR]"
        )
        self.stdout.write("(use the public key as published, not a copy travelling with the bundle)")
