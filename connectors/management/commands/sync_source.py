"""Sync one identity source now, in this process, and print what changed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connectors.models import IdentitySource, SyncRun
from connectors.sync import sync_source


class Command(BaseCommand):
    help = "Sync one identity source (by name or id) synchronously; exit non-zero unless it succeeds."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="the source's name (or its id)")

    def handle(self, *args, source: str, **options) -> None:
        found = IdentitySource.objects.filter(name=source).first()
        if found is None and source.isdigit():
            found = IdentitySource.objects.filter(pk=int(source)).first()
        if found is None:
            names = ", ".join(IdentitySource.objects.values_list("name", flat=True)) or "none configured"
            raise CommandError(f"No identity source named {source!r} (sources: {names}).")
        run = sync_source(found)
        duration = f"{run.duration.total_seconds():.1f}s" if run.duration else "-"
        self.stdout.write(
            f"{found.name}: {run.outcome} in {duration}: seen={run.seen} new={run.new} "
            f"changed={run.changed} vanished={run.vanished} shadow={run.shadow} "
            f"identities_seen={run.identities_seen}"
        )
        if run.outcome != SyncRun.Outcome.SUCCEEDED:
            raise CommandError(run.error or f"sync {run.outcome}")
