"""``manage.py rotate_encryption_key``: re-encrypt every stored secret with the newest key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connectors.key_rotation import RotationError, encryption_key_check, encryption_key_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored credential with the first (newest) key of LANYARD_ENCRYPTION_KEYS, "
        "in batches; safe to interrupt and run again. --check counts what still needs an older key."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="Rows per transaction (default 200).")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; exit 1 while any value is readable only with an older key (or none).",
        )

    def handle(self, **options) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            if options["check"]:
                report = encryption_key_check()
            else:
                report = encryption_key_rotate(
                    actor="manage.py rotate_encryption_key", batch_size=options["batch_size"]
                )
        except RotationError as exc:
            raise CommandError(str(exc))
        for f in report.fields:
            if options["check"]:
                line = f"{f.label}: {f.current} under the newest key, {f.old_key} under an older key"
            else:
                line = f"{f.label}: {f.rotated} rotated, {f.current} already under the newest key"
            if f.unreadable:
                line += f", {f.unreadable} UNREADABLE with every configured key"
            self.stdout.write(line)
        if report.unreadable:
            self.stderr.write(
                f"{report.unreadable} value(s) cannot be decrypted with any configured key: "
                "keep the key that wrote them in LANYARD_ENCRYPTION_KEYS, or set the credential again."
            )
            raise SystemExit(1)
        if options["check"]:
            if report.old_key:
                self.stderr.write(
                    f"{report.old_key} value(s) still need an older key: run rotate_encryption_key "
                    "before removing it."
                )
                raise SystemExit(1)
            self.stdout.write("OK: every value is under the newest key; older keys can be removed.")
        else:
            self.stdout.write(
                f"OK: {report.rotated} value(s) re-encrypted. Check with --check, then remove the old key."
            )
