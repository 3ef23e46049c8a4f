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

from audit.chain import maintenance
from audit.checkpoints import in_test_environment


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
