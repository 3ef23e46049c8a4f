"""``manage.py pdp_demo``: put a few real questions to the decision point and print its answers and reasons.

The questions come from the register as it is (the demo's, or yours): a person using a connector they
hold from their own device, the same person without a device, a suspended connector, a shadow one, an
MCP server nobody registered, an identity that is offboarding. In-process by default (the decisions
are recorded like any other); ``--url`` asks a running Lanyard over HTTP with ``--key``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError

from access.entities import Question
from access.services import decide
from audit.models import IngestKey
from connectors.models import Connector, Device, Grant, Identity


def _subject(identity: Identity, device: Device | None) -> dict[str, Any]:
    props = {"device": device.external_id} if device else {}
    return {"type": "identity", "id": identity.email, "properties": props}


def _connector(c: Connector, tool: str = "search") -> dict[str, Any]:
    return {"type": "connector", "id": str(c.pk), "properties": {"tool": tool}}


class Command(BaseCommand):
    help = "Ask the decision point a few questions about the register and print the answers with reasons."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", help="Ask a running Lanyard over HTTP (e.g. http://127.0.0.1:8000).")
        parser.add_argument("--key", help="The PEP key for --url (manage.py pep_key create NAME).")

    def questions(self) -> list[tuple[str, dict]]:
        asked: list[tuple[str, dict]] = []
        live = (
            Grant.objects.filter(
                status=Grant.Status.ACTIVE,
                held_at__isnull=True,
                identity__status=Identity.Status.ACTIVE,
                connector__status=Connector.Status.ACTIVE,
                connector__business_owner__isnull=False,
                identity__devices__compliant=True,
            )
            .select_related("identity", "connector")
            .order_by("pk")
            .first()
        )
        if live is not None:
            device = live.identity.devices.filter(compliant=True).order_by("pk").first()
            who = live.identity
            asked.append(
                (
                    f"{who.email} calls a tool of {live.connector.name}, a connector they hold, from "
                    f"their laptop",
                    {
                        "subject": _subject(who, device),
                        "action": {"name": "tools/call"},
                        "resource": _connector(live.connector),
                    },
                )
            )
            asked.append(
                (
                    "... the same without naming a device",
                    {
                        "subject": _subject(who, None),
                        "action": {"name": "tools/call"},
                        "resource": _connector(live.connector),
                    },
                )
            )
            other = (
                Connector.objects.filter(status=Connector.Status.ACTIVE)
                .exclude(grants__identity=who)
                .order_by("pk")
                .first()
            )
            if other is not None:
                asked.append(
                    (
                        f"... on {other.name}, which they never requested",
                        {
                            "subject": _subject(who, device),
                            "action": {"name": "use"},
                            "resource": _connector(other),
                        },
                    )
                )
            shadow = Connector.objects.filter(status=Connector.Status.DISCOVERED).order_by("pk").first()
            if shadow is not None:
                asked.append(
                    (
                        f"... on {shadow.name}, a shadow connector",
                        {
                            "subject": _subject(who, device),
                            "action": {"name": "use"},
                            "resource": _connector(shadow),
                        },
                    )
                )
            asked.append(
                (
                    "... on an MCP server nobody registered",
                    {
                        "subject": _subject(who, device),
                        "action": {"name": "tools/call"},
                        "resource": {"type": "mcp_server", "id": "https://mcp.unregistered.example/mcp"},
                    },
                )
            )
        suspended = Connector.objects.filter(status=Connector.Status.SUSPENDED).order_by("pk").first()
        holder = (
            Grant.objects.filter(connector=suspended, identity__isnull=False)
            .select_related("identity")
            .first()
            if suspended
            else None
        )
        if holder is not None:
            asked.append(
                (
                    f"{holder.identity.email} on {suspended.name}, suspended by IAM",
                    {
                        "subject": _subject(holder.identity, holder.identity.devices.first()),
                        "action": {"name": "use"},
                        "resource": _connector(suspended),
                    },
                )
            )
        leaver = (
            Grant.objects.filter(
                identity__status__in=[Identity.Status.SUSPENDED, Identity.Status.DEPROVISIONED]
            )
            .select_related("identity", "connector")
            .order_by("pk")
            .first()
        )
        if leaver is not None:
            asked.append(
                (
                    f"{leaver.identity.email}, {leaver.identity.status} at the IdP, on "
                    f"{leaver.connector.name}",
                    {
                        "subject": _subject(leaver.identity, leaver.identity.devices.first()),
                        "action": {"name": "use"},
                        "resource": _connector(leaver.connector),
                    },
                )
            )
        return asked

    def handle(self, *args, url: str | None, key: str | None, **options) -> None:
        asked = self.questions()
        if not asked:
            raise CommandError("The register has no active grants to ask about; sync a source first.")
        if url:
            if not key:
                raise CommandError("--url needs --key (manage.py pep_key create NAME).")
            body = {"evaluations": [q for _, q in asked]}
            response = httpx.post(
                url.rstrip("/") + "/access/v1/evaluations",
                content=json.dumps(body),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                timeout=10,
            )
            if response.status_code != 200:
                raise CommandError(
                    f"The decision point answered {response.status_code}: {response.text[:300]}"
                )
            answers = [
                (a["decision"], a["context"].get("reason", ""), a["context"].get("policies", []))
                for a in response.json()["evaluations"]
            ]
        else:
            pep = IngestKey.objects.filter(name="Demo gateway").first()
            questions = [Question(q["subject"], q["action"], q["resource"], {}) for _, q in asked]
            answers = [(r.decision, r.reason, r.policies) for r in decide(questions, key=pep)]
        self.stdout.write("Access decisions (AuthZEN, Cedar):")
        for (what, _), (decision, reason, policies) in zip(asked, answers, strict=True):
            mark = "PERMIT" if decision else "DENY  "
            self.stdout.write(f"  {mark} {what}")
            self.stdout.write(f"         {reason or 'permitted by the register'} [{', '.join(policies)}]")
