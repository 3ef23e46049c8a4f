"""Link every identity into people (what each sync does after its users): for existing data."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from connectors.people import link_people


class Command(BaseCommand):
    help = "Group identities of the same human across sources into people (idempotent)."

    def handle(self, *args, **options):
        stats = link_people()
        self.stdout.write(
            "people: " + (", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "no change")
        )
