"""Connect the simulated Okta and Google SSF transmitters to this Lanyard's receiver (the demo).

For each simulated Okta / Google Workspace identity source (``setup_simulator_sources``) it creates or
updates a receiver stream and registers its push URL with the simulator, so a person suspended or
deprovisioned at the simulator (``POST /_sim/mutate {"op": "set_status"}``) is pushed to Lanyard as a
RISC SET and offboarded at once. It talks to the simulator's control API over HTTP: no app imports
the simulator.
"""

from __future__ import annotations

import httpx
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse

from connectors.models import IdentitySource
from signals.models import ReceiverStream

PROVIDERS = {"okta": IdentitySource.Kind.OKTA, "google": IdentitySource.Kind.GOOGLE_WORKSPACE}


class Command(BaseCommand):
    help = "Create receiver streams for the simulator's Okta and Google SSF transmitters and register them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8900", help="the simulator's base URL")
        parser.add_argument(
            "--receiver",
            default="http://127.0.0.1:8000",
            help="this Lanyard's base URL, as the simulator reaches it",
        )

    def handle(self, *args, url: str, receiver: str, **options) -> None:
        url, receiver = url.rstrip("/"), receiver.rstrip("/")
        audience = f"{receiver}/ssf"
        with httpx.Client(base_url=url, timeout=30) as sim:
            for provider, kind in PROVIDERS.items():
                source = (
                    IdentitySource.objects.filter(kind=kind, base_url__startswith=f"{url}/")
                    .order_by("pk")
                    .first()
                )
                if source is None:
                    self.stdout.write(f"no simulated {provider} source: run setup_simulator_sources first")
                    continue
                issuer = f"{url}/ssf/{provider}"
                with transaction.atomic():
                    stream, created = ReceiverStream.objects.update_or_create(
                        name=f"{source.name} SSF",
                        defaults={
                            "source": source,
                            "issuer": issuer,
                            "jwks_url": f"{issuer}/jwks",
                            "configuration_url": f"{issuer}/.well-known/ssf-configuration",
                            "audience": audience,
                            "enabled": True,
                        },
                    )
                push = receiver + reverse("signals:receive", args=[stream.pk])
                try:
                    sim.request("DELETE", "/_sim/ssf/streams", json={"provider": provider}).raise_for_status()
                    sim.post(
                        "/_sim/ssf/streams", json={"provider": provider, "url": push, "aud": audience}
                    ).raise_for_status()
                except httpx.HTTPError as exc:
                    raise CommandError(
                        f"Cannot register the stream with the simulator at {url}: {exc}"
                    ) from None
                self.stdout.write(f"{'created' if created else 'updated'} {stream.name}: {issuer} -> {push}")
