"""Django's ``flush``, able to empty the append-only audit tables.

Django's test runner flushes the database between transactional tests (pytest-django's
``transactional_db``, ``live_server``); the append-only triggers would abort that. This command
runs the flush in one transaction with the audit maintenance flag set (``audit.chain.maintenance``),
so nothing else ever sees the flag. Outside tests and DEBUG it refuses to wipe the audit trail
unless ``--wipe-audit-trail`` is given: a test/maintenance escape hatch, not an everyday tool.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import transaction
from django.utils import timezone

from audit.chain import maintenance
from audit.checkpoints import in_test_environment
from audit.witness import FileWitness, configured_witness


class Command(flush.Command):
    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wipe-audit-trail",
            action="store_true",
            help="Also empty the append-only audit tables (maintenance only; the chain starts again).",
        )

    def handle(self, **options) -> None:
        if not (options.get("wipe_audit_trail") or in_test_environment() or settings.DEBUG):
            raise CommandError(
                "flush would erase the append-only audit trail; pass --wipe-audit-trail to do it anyway."
            )
        database = options["database"]
        with transaction.atomic(using=database), maintenance(using=database):
            super().handle(**options)
        if not in_test_environment():
            self._set_witness_aside()

    def _set_witness_aside(self) -> None:
        """Move the file witness aside: it remembers the wiped trail, and the new chain starts afresh.

        Kept, not deleted (the evidence of what was wiped stays on disk); an object-store witness
        cannot be cleared at all, and ``audit_verify`` will report the wipe against it.
        """
        witness = configured_witness()
        if isinstance(witness, FileWitness) and witness.directory.is_dir():
            aside = witness.directory.with_name(
                f"{witness.directory.name}.wiped-{timezone.now():%Y%m%dT%H%M%S}"
            )
            witness.directory.rename(aside)
            self.stdout.write(f"audit witness moved aside to {aside}")
