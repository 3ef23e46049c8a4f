"""``manage.py pep_key create NAME`` — a key for a policy enforcement point; ``list``; ``revoke NAME``.

The key is a gateway key (``audit.IngestKey``) with the decision scopes; it is printed once and only
its hash is kept. IAM staff manage the same keys in the admin (Audit trail → Gateway keys).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from audit.models import IngestKey
from audit.services import IngestKeyAlreadyRevoked, ingest_key_create, ingest_key_revoke

SCOPES = {
    "evaluate": IngestKey.Scope.ACCESS_EVALUATE,
    "search": IngestKey.Scope.ACCESS_SEARCH,
    "events": IngestKey.Scope.EVENTS_WRITE,
}


class Command(BaseCommand):
    help = "Create, list or revoke the keys policy enforcement points ask the decision point with."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="Create a key and print it once.")
        create.add_argument("name")
        create.add_argument(
            "--scope",
            action="append",
            choices=sorted(SCOPES),
            help="evaluate, search, events (repeatable; default: evaluate and search).",
        )
        create.add_argument(
            "--no-devices",
            action="store_true",
            help="The PEP cannot name devices (Lanyard's own MCP gateway): the defaults ask none of it.",
        )
        create.add_argument(
            "--per-minute", type=int, default=None, help="Decisions per minute (default 120,000)."
        )
        create.add_argument(
            "--replace",
            action="store_true",
            help="Revoke an existing key of that name first (kept, renamed).",
        )
        create.add_argument("--quiet", action="store_true", help="Print only the key.")
        sub.add_parser("list", help="List the keys with decision scopes.")
        revoke = sub.add_parser("revoke", help="Revoke a key: it stops authenticating at once.")
        revoke.add_argument("name")

    def handle(self, *args, verb: str, **options) -> None:
        getattr(self, f"_{verb}")(**options)

    def _create(
        self, *, name: str, scope, no_devices: bool, per_minute, replace: bool, quiet: bool, **_
    ) -> None:
        scopes = [SCOPES[s] for s in (scope or ["evaluate", "search"])]
        with transaction.atomic():
            old = IngestKey.objects.select_for_update().filter(name=name).first()
            if old is not None:
                if not replace:
                    raise CommandError(f"A key named {name!r} exists; revoke it, or pass --replace.")
                if old.revoked_at is None:
                    ingest_key_revoke(key=old, actor=None)
                IngestKey.objects.filter(pk=old.pk).update(
                    name=f"{name} (replaced {timezone.now():%Y-%m-%d %H:%M:%S})"[:100]
                )
            key, raw = ingest_key_create(
                name=name,
                actor=None,
                scopes=scopes,
                decisions_per_minute=per_minute,
                reports_devices=not no_devices,
            )
        if quiet:
            self.stdout.write(raw)
            return
        self.stdout.write(f"Created key {key.name!r} (prefix {key.prefix}), scopes: {', '.join(key.scopes)}.")
        self.stdout.write("Give it to the gateway now; it is not shown again:")
        self.stdout.write(f"  {raw}")

    def _list(self, **_) -> None:
        for key in IngestKey.objects.order_by("name"):
            if not {IngestKey.Scope.ACCESS_EVALUATE, IngestKey.Scope.ACCESS_SEARCH} & set(key.scopes):
                continue
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            devices = "names devices" if key.reports_devices else "no devices"
            self.stdout.write(
                f""
                f"{key.name}\t{key.prefix}\t{','.join(key.scopes)}\t{devices}\t{key.decisions_per_minute}/min\t{state}"
            )

    def _revoke(self, *, name: str, **_) -> None:
        key = IngestKey.objects.filter(name=name).first()
        if key is None:
            raise CommandError(f"No key named {name!r}.")
        try:
            ingest_key_revoke(key=key, actor=None)
        except IngestKeyAlreadyRevoked as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked {name!r}.")
