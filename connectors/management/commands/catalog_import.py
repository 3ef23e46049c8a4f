"""Load a catalog of known AI apps (the shipped one by default) into the register."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connectors import catalog


class Command(BaseCommand):
    help = "Create or update catalog entries from a catalog JSON file (default: the shipped catalog)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(catalog.SHIPPED))

    def handle(self, *args, file: str, **options):
        path = Path(file)
        try:
            apps = catalog.load(path.read_bytes())
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from None
        except catalog.CatalogError as exc:
            raise CommandError(f"{file}: {exc}") from None
        counts = catalog.catalog_import(apps=apps, actor="system", origin=f"command:{path.name}")
        self.stdout.write(f"catalog: {counts['apps']} apps, {counts['new']} new, {counts['changed']} changed")
