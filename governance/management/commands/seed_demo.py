"""Create the demo organisation and logins. Idempotent: running it again changes nothing."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from connectors.models import Connector, ConnectorApp, Device, Grant, Identity, IdentitySource, Risk
from governance.models import User

DEMO_PASSWORD = "lanyard-demo-2026"  # noqa: S105 - printed for the local demo only
DEMO_DOMAIN = "lanyard.demo"
GATEWAY = "Demo AI gateway"
MCP_URL = "https://mcp.notes-ai.example/sse"  # an MCP server nobody registered: discovered as shadow
ACTIONS = ["chat.completion", "tool_call", "file.read", "file.search", "mail.draft"]
RESOURCES = [
    "drive:file/roadmap.docx",
    "mail:inbox",
    "repo:lanyard/main",
    "crm:account/4411",
    "calendar:week",
]
SEED_SOURCE = "Demo directory"
DEPARTMENTS = ["Engineering", "Sales", "Marketing", "Finance", "Legal", "Support", "People", "Product"]
FIRST = "Ada Ben Cleo Dev Eli Fay Gus Hana Ivo Jun Kai Lea Mo Nia Oli Pia Quin Rae Sam Tao Uma Vic Wes Zoe"
LAST = "Adams Berg Chen Diaz Evans Fox Garcia Hill Ito Jones Khan Lopez Meyer Novak Ortiz Patel Reyes Wong"

# (name, vendor, kind, client id, scopes, status, risk)
CATALOGUE = [
    (
        "ChatGPT Enterprise",
        "OpenAI",
        "oauth_app",
        "chatgpt-enterprise",
        ["https://www.googleapis.com/auth/drive.readonly"],
        "active",
        Risk.MEDIUM,
    ),
    (
        "Claude for Work",
        "Anthropic",
        "oauth_app",
        "claude-work",
        [
            "https://www.googleapis.com/auth/drive.readonly",
            "https://www.googleapis.com/auth/calendar.readonly",
        ],
        "active",
        Risk.MEDIUM,
    ),
    ("GitHub Copilot", "GitHub", "oauth_app", "copilot", ["repo:read"], "active", Risk.LOW),
    (
        "Gemini for Workspace",
        "Google",
        "plugin",
        "gemini-workspace",
        ["https://www.googleapis.com/auth/documents"],
        "suspended",
        Risk.HIGH,
    ),
    (
        "Zoom AI Companion",
        "Zoom",
        "bot",
        "zoom-ai",
        ["https://www.googleapis.com/auth/calendar"],
        "approved",
        Risk.MEDIUM,
    ),
    (
        "Notion AI",
        "Notion Labs",
        "oauth_app",
        "notion-ai",
        ["https://www.googleapis.com/auth/drive.file"],
        "pending_iam",
        Risk.MEDIUM,
    ),
    (
        "Glean Search",
        "Glean",
        "oauth_app",
        "glean",
        ["https://www.googleapis.com/auth/drive.readonly", "https://mail.google.com/"],
        "requested",
        Risk.HIGH,
    ),
    (
        "Otter.ai",
        "Otter.ai",
        "bot",
        "otter-ai",
        ["https://www.googleapis.com/auth/calendar", "https://www.googleapis.com/auth/drive"],
        "discovered",
        Risk.HIGH,
    ),
    (
        "Fireflies.ai",
        "Fireflies",
        "bot",
        "fireflies",
        ["https://www.googleapis.com/auth/calendar.readonly", "https://mail.google.com/"],
        "discovered",
        Risk.CRITICAL,
    ),
    (
        "Read AI",
        "Read AI",
        "bot",
        "read-ai",
        ["https://www.googleapis.com/auth/calendar"],
        "discovered",
        Risk.HIGH,
    ),
    ("Perplexity", "Perplexity AI", "oauth_app", "perplexity", ["openid", "email"], "discovered", Risk.LOW),
    ("Cursor", "Anysphere", "api_key", "cursor", ["repo"], "discovered", Risk.HIGH),
    (
        "Drive MCP server",
        "Community",
        "mcp_server",
        "mcp-drive",
        ["https://www.googleapis.com/auth/drive"],
        "rejected",
        Risk.CRITICAL,
    ),
    (
        "Jasper",
        "Jasper AI",
        "oauth_app",
        "jasper",
        ["https://www.googleapis.com/auth/documents"],
        "revoked",
        Risk.MEDIUM,
    ),
]


class Command(BaseCommand):
    help = "Create a realistic demo organisation and demo logins (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--identities", type=int, default=300)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--sync",
            action="store_true",
            help="first sync every enabled identity source that never synced (the simulator in `make run`)",
        )

    def handle(self, *args, identities: int, seed: int, sync: bool, **options):
        rng = random.Random(seed)
        if sync:
            self._sync_sources()
        with transaction.atomic():
            users = self._users()
            # Identities from a source other than the seed's: the simulator synced (unsourced ones are
            # people only a gateway has seen).
            sourced = Identity.objects.filter(source__isnull=False)
            simulated = sourced.exclude(source__name=SEED_SOURCE).exists()
            if not simulated:
                self._organisation(rng, identities)
            self._link_users(users)
            if simulated:
                self._merge_github_tokens(users)
                self._sanction_simulated(users)
                self._revoke_one_shadow(users)
            self._owners(users)
            self._workflow_and_campaign(users)
            self._gateway_activity(rng, users)
        for role, user in users.items():
            self.stdout.write(f"  {role:<9} {user.email:<28} password: {DEMO_PASSWORD}")
        self.stdout.write(self.style.SUCCESS("Demo data ready."))

    def _sync_sources(self) -> None:
        from connectors.sync import sync_source

        for source in IdentitySource.objects.filter(enabled=True, last_success_at__isnull=True):
            run = sync_source(source)
            self.stdout.write(
                f"  synced {source.name}: {run.outcome}, seen={run.seen} new={run.new} shadow={run.shadow}"
                + (f" error={run.error}" if run.error else "")
            )

    def _users(self) -> dict[str, User]:
        iam_group = Group.objects.get(name="IAM staff")
        users = {}
        for role, first, last, staff in [
            ("iam", "Iris", "Admin", True),
            ("iam2", "Ivan", "Second", True),
            ("owner", "Olivia", "Owner", False),
            ("manager", "Max", "Manager", False),
            ("employee", "Emma", "Employee", False),
        ]:
            email = f"{role}@{DEMO_DOMAIN}"
            user, created = User.objects.get_or_create(
                email=email,
                defaults={"username": role, "first_name": first, "last_name": last, "is_staff": staff},
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_superuser = role == "iam"
                user.save()
                if staff:
                    user.groups.add(iam_group)
            users[role] = user
        return users

    def _organisation(self, rng: random.Random, count: int) -> None:
        if IdentitySource.objects.filter(name=SEED_SOURCE).exists():
            return
        now = timezone.now()
        source = IdentitySource.objects.create(
            kind=IdentitySource.Kind.GOOGLE_WORKSPACE,
            name=SEED_SOURCE,
            base_url="https://admin.googleapis.com",
            enabled=False,
        )
        firsts, lasts = FIRST.split(), LAST.split()
        people = []
        for i in range(count):
            first, last = firsts[i % len(firsts)], lasts[(i // len(firsts)) % len(lasts)]
            status = Identity.Status.ACTIVE
            if i > 20 and i % 37 == 0:
                status = Identity.Status.SUSPENDED
            elif i > 20 and i % 53 == 0:
                status = Identity.Status.DEPROVISIONED
            people.append(
                Identity(
                    source=source,
                    external_id=f"seed-{i:05d}",
                    email=f"{first}.{last}{i}@{DEMO_DOMAIN}".lower(),
                    name=f"{first} {last}",
                    department=DEPARTMENTS[i % len(DEPARTMENTS)],
                    status=status,
                    first_seen=now - timedelta(days=400),
                    last_seen=now,
                )
            )
        people = Identity.objects.bulk_create(people)
        # A tree: person 0 is the CEO, 1-8 department heads, 9-40 managers, the rest report to a manager.
        for i, person in enumerate(people[1:], start=1):
            if i <= 8:
                person.manager = people[0]
            elif i <= 40:
                person.manager = people[1 + (i % 8)]
            else:
                person.manager = people[9 + (i % 32)]
        Identity.objects.bulk_update(people[1:], ["manager"])
        self._personas(people)
        devices = Device.objects.bulk_create(
            [
                Device(
                    source=source,
                    external_id=f"dev-{i:05d}",
                    name=f"{p.name.split()[0].upper()}-{'MBP' if i % 3 else 'WIN'}-{i:04d}",
                    platform="macOS" if i % 3 else "Windows",
                    managed=i % 7 != 0,
                    compliant=i % 11 != 0,
                    owner=p,
                    last_seen=now - timedelta(hours=i % 72),
                )
                for i, p in enumerate(people)
            ]
        )
        grants = []
        for name, vendor, kind, client_id, scopes, status, risk in CATALOGUE:
            connector = Connector.objects.create(
                name=name,
                vendor=vendor,
                kind=kind,
                status=status,
                risk=risk,
                discovered_at=now - timedelta(days=rng.randint(1, 120)) if status == "discovered" else None,
                purpose="" if status == "discovered" else f"{name} for day-to-day work",
            )
            app = ConnectorApp.objects.create(
                connector=connector, source=source, client_id=client_id, name=name
            )
            holders = rng.sample(range(len(people)), k=rng.randint(5, 60))
            for h in holders:
                revoked = status in ("revoked", "rejected")
                grants.append(
                    Grant(
                        connector=connector,
                        app=app,
                        source=source,
                        identity=people[h],
                        device=devices[h],
                        external_id=f"{people[h].external_id}:{client_id}",
                        scopes=scopes,
                        status=Grant.Status.REVOKED if revoked else Grant.Status.ACTIVE,
                        revoked_at=now - timedelta(days=3) if revoked else None,
                        revoke_reason="demo: connector withdrawn" if revoked else "",
                        first_seen=now - timedelta(days=rng.randint(30, 300)),
                        last_used_at=now - timedelta(days=rng.choice([0, 1, 2, 5, 12, 40, 120])),
                    )
                )
            audit.record(
                "connector.discovered" if status == "discovered" else "connector.registered",
                connector=connector,
                source=source,
                target=connector,
                data={"seed": True},
            )
        Grant.objects.bulk_create(grants)

    @staticmethod
    def _personas(people: list[Identity]) -> None:
        """Give the demo logins' names and emails to people of the seed organisation (see _link_users)."""
        from simulator.catalog import DEMO_PERSONAS

        manager = people[9] if len(people) > 9 else None
        employee = next((p for p in people[41:] if p.manager_id == getattr(manager, "pk", None)), None)
        chosen = {"iam": 3, "iam2": 4, "owner": 2}
        placed = {role: people[i] for role, i in chosen.items() if i < len(people)}
        placed |= {role: p for role, p in (("manager", manager), ("employee", employee)) if p is not None}
        for role, first, last, _ in DEMO_PERSONAS:
            person = placed.get(role)
            if person is not None:
                person.name, person.email = f"{first} {last}", f"{role}@{DEMO_DOMAIN}"
                person.status = Identity.Status.ACTIVE
        Identity.objects.bulk_update(list(placed.values()), ["name", "email", "status"])

    def _link_users(self, users: dict[str, User]) -> None:
        """Each demo login is a person of the organisation: link it to every identity with its email.

        The simulated tenant (simulator.catalog.DEMO_PERSONAS) and the seed organisation both give
        the logins' names and emails to people of theirs, so a login, its identity records in every
        source and its person tell one story.
        """
        from connectors.people import link_people

        for user in users.values():
            Identity.objects.filter(email__iexact=user.email, user__isnull=True).update(user=user)
        link_people()

    def _owners(self, users: dict[str, User]) -> None:
        """Give the demo owner the sanctioned connectors (through the service: permissions and audit)."""
        from governance.services import connector_set_owner

        owner, iam = users["owner"], users["iam"]
        for connector in Connector.objects.filter(
            status__in=Connector.SANCTIONED + (Connector.Status.PENDING_IAM,), business_owner__isnull=True
        ):
            connector_set_owner(connector=connector, owner=owner, actor=iam)

    def _merge_github_tokens(self, users: dict[str, User]) -> None:
        """IAM recognises coding agents' GitHub tokens as the products they belong to, once.

        A token's name is chosen by its owner, so no sync matches it to a product by itself; IAM's
        merge is the decision, and later syncs attach the token's path to the product.
        """
        from connectors.idp.github import pat_client_id
        from connectors.merging import connector_merge
        from simulator.catalog import APPS

        live = Connector.objects.exclude(status=Connector.Status.MERGED)
        for app in APPS:
            survivor = live.filter(name=app.name).order_by("pk").first()
            if survivor is None or not app.github:
                continue
            tokens = [pat_client_id(name) for name, _ in app.github]
            for merged in live.filter(apps__client_id__in=tokens).exclude(pk=survivor.pk).distinct():
                connector_merge(survivor=survivor, merged=merged, actor=users["iam"])

    def _sanction_simulated(self, users: dict[str, User]) -> None:
        """Take the apps the simulated company has sanctioned through the real workflow, once."""
        from governance.services import (
            connector_sanction,
            request_decide_iam,
            request_decide_owner,
            request_provision,
        )
        from simulator.catalog import APPS

        sanctioned = {app.name.lower() for app in APPS if app.sanctioned}
        owner, iam = users["owner"], users["iam"]
        for connector in Connector.objects.filter(status=Connector.Status.DISCOVERED).order_by("name"):
            if connector.name.lower() not in sanctioned:
                continue
            request = connector_sanction(
                connector=connector,
                actor=iam,
                owner=owner,
                justification=f"{connector.name} is on the company's approved AI tools list.",
            )
            request_decide_owner(request=request, actor=owner, approve=True, reason="Approved tools list.")
            request_decide_iam(request=request, actor=users["iam2"], approve=True, reason="Scopes reviewed.")
            request_provision(
                request=request,
                actor=iam,
                evidence="Allowed in the IdP's admin console for all staff (demo seed).",
            )

    def _revoke_one_shadow(self, users: dict[str, User]) -> None:
        """IAM triages the riskiest MCP server and revokes it everywhere: the worker calls the IdP."""
        from connectors.services import connector_revoke

        connector = (
            Connector.objects.filter(status=Connector.Status.DISCOVERED, name__icontains="MCP")
            .order_by("-risk_score", "name")
            .first()
        )
        if connector is None or Connector.objects.filter(status=Connector.Status.REVOKED).exists():
            return
        connector_revoke(
            connector=connector,
            actor=users["iam"],
            reason="Unvetted MCP server with broad data access (demo triage).",
        )
        grant = connector.grants.select_related("source").order_by("pk").first()
        if grant is not None:
            sim, provider = grant.source.base_url.rstrip("/").rsplit("/", 1)
            check = f"{sim}/_sim/grant?provider={provider}&id={grant.external_id}"
            self.stdout.write(
                f"  revoked shadow connector '{connector.name}' everywhere; once the worker has run, "
                f"{check} reports it gone"
            )

    def _workflow_and_campaign(self, users: dict[str, User]) -> None:
        from governance.attestations import demo_campaign
        from governance.demo import build_demo_workflow

        build_demo_workflow(
            iam_user=users["iam"],
            owner_user=users["owner"],
            employee_users=[users["employee"], users["manager"]],
        )
        campaign = demo_campaign(actor=users["iam"])
        self.stdout.write(
            f"  attestation campaign '{campaign.name}' running until {campaign.deadline:%Y-%m-%d}"
        )

    def _gateway_activity(self, rng: random.Random, users: dict[str, User]) -> None:
        """A week of AI activity from a demo gateway, through the ingest service like a real one.

        Mostly people using the grants they hold, from their laptops; also an MCP server nobody
        registered (discovered as shadow) and a contractor unknown to every source (flagged).
        """
        from activity.ingest import decode, events_ingest
        from audit.models import IngestKey

        if IngestKey.objects.filter(name=GATEWAY).exists():
            return
        key, _ = audit.ingest_key_create(name=GATEWAY, actor=users["iam"])
        grants = list(
            Grant.objects.filter(status=Grant.Status.ACTIVE, identity__isnull=False, source__isnull=False)
            .select_related("identity", "source", "device", "connector")
            .order_by("pk")[:400]
        )
        apps = {
            (a.connector_id, a.source_id): a.client_id
            for a in ConnectorApp.objects.filter(connector__in={g.connector_id for g in grants})
        }
        now = timezone.now()
        events = []
        for n in range(600):
            at = (now - timedelta(minutes=rng.randint(1, 7 * 24 * 60))).isoformat()
            event = {"id": f"demo-{n}", "time": at, "action": rng.choice(ACTIONS), "outcome": "success"}
            grant = rng.choice(grants) if grants and n % 20 else None
            client_id = apps.get((grant.connector_id, grant.source_id)) if grant else None
            if grant is not None and client_id:
                event["actor"] = {"email": grant.identity.email}
                event["connector"] = {"source": grant.source.name, "client_id": client_id}
                if grant.device is not None:
                    device = grant.device
                    event["device"] = {
                        "id": device.external_id,
                        "name": device.name,
                        "managed": device.managed,
                    }
                event["resource"] = rng.choice(RESOURCES)
            elif n % 40 == 0:
                event["actor"] = {
                    "email": "contractor@partner.example",
                    "name": "Contractor (not in any IdP)",
                }
                event["device"] = {"id": "BYOD-7731", "name": "Personal laptop", "platform": "Windows"}
                event["connector"] = {
                    "mcp_server_url": "https://mcp.notes-ai.example/sse",
                    "name": "Notes AI MCP",
                }
            else:
                continue
            events.append(event)
        for start in range(0, len(events), 200):
            body = json.dumps({"events": events[start : start + 200]}).encode()
            events_ingest(key=key, events=decode(body, max_events=200))
        self.stdout.write(
            f"  gateway '{GATEWAY}' posted {len(events)} AI activity events; usage times follow in the worker"
        )
