"""Portal benchmark on a throwaway PostgreSQL database: ``python -m bench.portal``.

Builds a register of 10,000 connectors owned by 1,000 business owners (each owner holding the three
django-guardian object permissions on each of their connectors, in ``ConnectorUserObjectPermission``),
with grants and open requests, then renders "My connectors" and the decisions inbox through the real
views (Django's test client, whole request path) for an owner and for an IAM staff member. Prints the
median time of several runs, the number of queries, and whether any SQL statement carries a long
``IN (...)`` list of ids (the pages must scope by joins, never by lists of primary keys).

Setup rows are bulk-inserted (not through the services: a benchmark of pages, not of writes).
The database is created under a random name and dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LONG_IN = re.compile(r"\bIN \((?:\s*(?:%s|'?[\w-]+'?)\s*,){9,}", re.IGNORECASE)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=1_000)
    parser.add_argument("--employees", type=int, default=2_000)
    parser.add_argument("--grants-per-connector", type=int, default=3)
    parser.add_argument("--requests-per-connector", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def _configure(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(24))
    os.environ.setdefault("LANYARD_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())
    os.environ.setdefault("LANYARD_AUDIT_SIGNING_KEY", base64.b64encode(os.urandom(32)).decode())
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    os.environ["DEBUG"] = "0"
    import importlib

    import django
    from django.conf import settings

    base = importlib.import_module("lanyard.settings")
    values = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    values["ALLOWED_HOSTS"] = ["testserver"]
    values["SECURE_SSL_REDIRECT"] = False
    values["DATABASES"]["default"]["CONN_MAX_AGE"] = None
    values["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    values["STORAGES"] = {
        **values["STORAGES"],
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.configure(**values)
    django.setup()


def _populate(args: argparse.Namespace) -> dict:
    from django.contrib.auth.models import Group, Permission
    from django.db import transaction
    from django.utils import timezone

    from connectors.models import Connector, Grant, Identity, IdentitySource, Risk
    from governance.models import ConnectorRequest, ConnectorUserObjectPermission, User

    now = timezone.now()
    risks = [Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL]
    with transaction.atomic():
        source = IdentitySource.objects.create(kind="okta", name="bench", base_url="https://bench.invalid")
        owners = User.objects.bulk_create(
            [User(username=f"owner{i}", email=f"owner{i}@bench.example") for i in range(args.owners)],
            batch_size=2000,
        )
        employees = User.objects.bulk_create(
            [User(username=f"emp{i}", email=f"emp{i}@bench.example") for i in range(args.employees)],
            batch_size=2000,
        )
        managers = Identity.objects.bulk_create(
            [
                Identity(
                    source=source, external_id=f"mgr{i}", email=f"mgr{i}@bench.example", name=f"Manager {i}"
                )
                for i in range(max(1, args.employees // 20))
            ]
        )
        identities = Identity.objects.bulk_create(
            [
                Identity(
                    source=source,
                    external_id=f"emp{i}",
                    email=u.email,
                    name=f"Employee {i}",
                    user=u,
                    manager=managers[i % len(managers)],
                )
                for i, u in enumerate(employees)
            ],
            batch_size=2000,
        )
        connectors = Connector.objects.bulk_create(
            [
                Connector(
                    name=f"Connector {i:05d}",
                    vendor=f"Vendor {i % 400}",
                    status=Connector.Status.ACTIVE if i % 10 else Connector.Status.DISCOVERED,
                    risk=risks[i % 4],
                    business_owner=owners[i % len(owners)] if i % 10 else None,
                )
                for i in range(args.connectors)
            ],
            batch_size=2000,
        )
        perms = {p.codename: p for p in Permission.objects.filter(content_type__app_label="connectors")}
        ConnectorUserObjectPermission.objects.bulk_create(
            [
                ConnectorUserObjectPermission(
                    user_id=c.business_owner_id, permission=perms[code], content_object=c
                )
                for c in connectors
                if c.business_owner_id
                for code in ("view_connector", "decide_connector", "revoke_connector")
            ],
            batch_size=5000,
        )
        grants = []
        for i, c in enumerate(connectors):
            for j in range(args.grants_per_connector):
                k = (i * args.grants_per_connector + j) % len(identities)
                grants.append(
                    Grant(
                        connector=c,
                        source=source,
                        identity=identities[k],
                        external_id=f"g{i}-{j}",
                        last_used_at=now,
                    )
                )
        Grant.objects.bulk_create(grants, batch_size=5000)
        statuses = [ConnectorRequest.Status.PENDING_OWNER, ConnectorRequest.Status.PENDING_IAM]
        requests = []
        for i, c in enumerate(connectors):
            if not c.business_owner_id:
                continue
            for j in range(args.requests_per_connector):
                requests.append(
                    ConnectorRequest(
                        connector=c,
                        kind=ConnectorRequest.Kind.EXISTING,
                        status=statuses[(i + j) % 2],
                        requester=employees[(i * 7 + j) % len(employees)],
                        justification="Benchmark request.",
                        scopes=["Calendars.Read"],
                    )
                )
        ConnectorRequest.objects.bulk_create(requests, batch_size=5000)
        iam = User.objects.create(username="iam", email="iam@bench.example", is_staff=True)
        iam.groups.add(Group.objects.get(name="IAM staff"))
    owner = owners[len(owners) // 2 + 1]  # i % 10 == 0 connectors are ownerless shadow ones
    return {
        "owner": owner,
        "iam": iam,
        "owner_connectors": Connector.objects.filter(business_owner=owner).count(),
        "owner_pending": ConnectorRequest.objects.filter(
            connector__business_owner=owner, status=ConnectorRequest.Status.PENDING_OWNER
        ).count(),
        "iam_pending": ConnectorRequest.objects.filter(status=ConnectorRequest.Status.PENDING_IAM).count(),
        "rows": {
            "connectors": len(connectors),
            "owners": len(owners),
            "object permissions": ConnectorUserObjectPermission.objects.count(),
            "grants": len(grants),
            "requests": len(requests),
        },
    }


def _measure(user, url: str, runs: int) -> tuple[float, int, bool]:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    response = client.get(url)  # warm: permission caches, templates, plans
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(runs):
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200
    long_in = any(LONG_IN.search(q["sql"]) for q in ctx.captured_queries)
    return statistics.median(times), len(ctx.captured_queries), long_in


def _explain(user) -> str:
    """Return PostgreSQL's plan for the owner inbox query, to show the permission join uses its index."""
    from django.db import connection

    from governance.selectors import inbox

    qs = inbox(user).order_by("created_at", "pk")[:25]
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> None:
    args = _args()
    import psycopg

    name = f"lanyard_bench_portal_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.server, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = args.server.rsplit("/", 1)[0]
    try:
        _configure(f"{base}/{name}")
        from django.core.management import call_command
        from django.urls import reverse

        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        data = _populate(args)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        rows = ", ".join(f"{v:,} {k}" for k, v in data["rows"].items())
        print(f"setup: {rows} in {time.perf_counter() - t0:.1f}s")
        print(
            f"owner under test owns {data['owner_connectors']} connectors with {data['owner_pending']} "
            f"requests waiting for them; {data['iam_pending']:,} requests wait for IAM"
        )
        cases = [
            ("owner", "My connectors", reverse("portal:my_connectors")),
            ("owner", "My connectors, sorted by holders", reverse("portal:my_connectors") + "?sort=-holders"),
            ("owner", "Decisions inbox", reverse("portal:inbox")),
            ("iam", "Decisions inbox", reverse("portal:inbox")),
            (
                "iam",
                "Decisions inbox, risk=high, sorted",
                reverse("portal:inbox") + "?risk=high&sort=-created_at",
            ),
            ("iam", "Decisions inbox, page 40", reverse("portal:inbox") + "?page=40"),
            ("iam", "My connectors (IAM owns none)", reverse("portal:my_connectors")),
        ]
        print(f"\nmedian of {args.runs} runs, whole request through the view:")
        print(f"{'who':<6} {'page':<38} {'median ms':>10} {'queries':>8}  long IN list")
        for who, label, url in cases:
            median, queries, long_in = _measure(data[who], url, args.runs)
            print(f"{who:<6} {label:<38} {median * 1000:>10.1f} {queries:>8}  {'YES' if long_in else 'no'}")
        print("\nPostgreSQL plan of the owner's inbox query:")
        print(_explain(data["owner"]))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")
        admin.close()


if __name__ == "__main__":
    main()
