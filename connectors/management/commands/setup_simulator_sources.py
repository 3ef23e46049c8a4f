"""Create or update the four identity sources of a running simulated tenant."""

from __future__ import annotations

from datetime import timedelta

import httpx
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from connectors.models import IdentitySource


class Command(BaseCommand):
    help = (
        "Point Google, Entra, Okta and GitHub identity sources at a running simulator (python -m simulator)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8900", help="the simulator's base URL")
        parser.add_argument("--interval", type=int, default=60, help="sync interval in minutes")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the simulator")

    def handle(self, *args, url: str, interval: int, timeout: float, **options) -> None:
        url = url.rstrip("/")
        try:
            response = httpx.get(f"{url}/_sim/credentials", timeout=timeout)
            response.raise_for_status()
            sources = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise CommandError(f"Cannot read credentials from the simulator at {url}: {exc}") from None
        with transaction.atomic():
            for kind, spec in sources.items():
                if kind not in IdentitySource.Kind.values:
                    continue
                source = IdentitySource.objects.filter(name=spec["name"]).first() or IdentitySource(
                    name=spec["name"]
                )
                created = source.pk is None
                source.kind = kind
                source.base_url = spec["base_url"]
                source.token_url = spec.get("token_url") or ""
                source.sync_interval = timedelta(minutes=interval)
                source.enabled = True
                source.set_credentials(spec["credentials"])
                source.save()
                self.stdout.write(f"{'created' if created else 'updated'} {source.name} -> {source.base_url}")
