"""``manage.py audit_rotate_signing_key``: register the next checkpoint key, endorsed by the current one."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import SigningKeyError, key_id, parse_private_key, signing_key_rotate


class Command(BaseCommand):
    help = (
        "Register a new Ed25519 checkpoint signing key as the successor of the configured one (which "
        "signs the handover). Then point LANYARD_AUDIT_SIGNING_KEY(_FILE) at it and restart."
    )

    def add_arguments(self, parser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--new-key-file", metavar="PATH", help="The new private key (PEM or base64 raw).")
        which.add_argument(
            "--generate",
            metavar="PATH",
            help="Generate the new private key into PATH (mode 0600; must not exist).",
        )

    def handle(self, **options) -> None:
        try:
            if options["generate"]:
                path = Path(options["generate"])
                new_key = Ed25519PrivateKey.generate()
                pem = new_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
            else:
                path = Path(options["new_key_file"])
                new_key = parse_private_key(path.read_text())
            registered = signing_key_rotate(new_key=new_key, actor="manage.py audit_rotate_signing_key")
        except OSError as exc:
            raise CommandError(f"cannot use the new key file: {exc}")
        except SigningKeyError as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"Registered audit signing key {registered.key_id}, endorsed by {registered.previous_key_id}."
        )
        self.stdout.write(
            f"Next: set LANYARD_AUDIT_SIGNING_KEY_FILE={path} on every process and restart them; the first "
            f"checkpoint signed by {key_id(new_key.public_key())} retires {registered.previous_key_id}."
        )
        self.stdout.write("Publish the new public key (manage.py audit_public_key --all) to your verifiers.")
