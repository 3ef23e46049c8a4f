"""Audit trail benchmark on a throwaway PostgreSQL database: ``python -m bench.audit``.

Measures, in one run:
1. setup: the register (grants) by bulk insert, then the chain (events) through ``record_batch``;
2. ingest throughput through the real ``POST /api/v1/events`` view, in-process with Django's test
   client (the whole request path: middleware, key check, rate limit, validation, resolution,
   chain write; no socket or WSGI server in front);
3. ``audit_verify`` rate over the whole chain;
4. cost per recorded event of recording one grant change: our chain (``record`` per change, and
   ``record_batch``) vs django-auditlog 3.4.1 (``pip install -e '.[bench]'``) vs a raw PostgreSQL
   ``COPY`` of the same audit rows (the physical limit).

Sizes are flags (defaults are the full run); try ``--events 20000 --grants 5000`` first.
The database is created under a random name and dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the chain before measuring")
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--ingest", type=int, default=100_000, help="events posted through the API")
    parser.add_argument("--batch", type=int, default=1000, help="events per API request")
    parser.add_argument("--clients", type=int, default=4, help="gateways posting at once over HTTP")
    parser.add_argument("--compare", type=int, default=5_000, help="changes recorded per compared method")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="audit_verify processes")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def _admin_connection(server: str):
    import psycopg

    return psycopg.connect(server, autocommit=True)


def _configure(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(24))
    os.environ.setdefault("LANYARD_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())
    os.environ["LANYARD_AUDIT_SIGNING_KEY"] = base64.b64encode(os.urandom(32)).decode()
    # Roll-ups that ingest schedules go to an in-memory queue nobody reads: the usage roll-up is a
    # worker's job, measured on its own after the ingest.
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ["CACHE_URL"] = "locmemcache://"
    os.environ["DEBUG"] = "0"
    import importlib

    import django
    from django.conf import settings

    base = importlib.import_module("lanyard.settings")
    values = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    values["INSTALLED_APPS"] = [*values["INSTALLED_APPS"], "auditlog"]
    values["ALLOWED_HOSTS"] = ["testserver"]
    values["SECURE_SSL_REDIRECT"] = False
    values["DATABASES"]["default"]["CONN_MAX_AGE"] = None
    values["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    settings.configure(**values)
    django.setup()


def _rate(n: int, seconds: float) -> str:
    return f"{n:,} in {seconds:.2f}s = {n / seconds:,.0f}/s"


def _setup_register(n_grants: int):
    from connectors.models import Connector, ConnectorApp, Device, Grant, Identity, IdentitySource

    people = max(1, n_grants // 5)
    apps = max(1, min(1000, n_grants // 100))
    source = IdentitySource.objects.create(kind="google_workspace", name="Bench Google", base_url="http://x")
    Identity.objects.bulk_create(
        (
            Identity(source=source, external_id=f"u{i}", email=f"user{i}@bench.example", name=f"User {i}")
            for i in range(people)
        ),
        batch_size=5000,
    )
    identities = list(Identity.objects.order_by("pk").values_list("pk", flat=True))
    Device.objects.bulk_create(
        (
            Device(source=source, external_id=f"DEV-{i}", name=f"LAPTOP-{i}", owner_id=identities[i])
            for i in range(people)
        ),
        batch_size=5000,
    )
    Connector.objects.bulk_create(
        (Connector(name=f"AI app {i}", status=Connector.Status.ACTIVE) for i in range(apps)), batch_size=5000
    )
    connectors = list(Connector.objects.order_by("pk").values_list("pk", flat=True))
    ConnectorApp.objects.bulk_create(
        ConnectorApp(connector_id=c, source=source, client_id=f"client-{i}") for i, c in enumerate(connectors)
    )
    # grant g links person g % people to app g // people (distinct pairs)
    Grant.objects.bulk_create(
        (
            Grant(
                connector_id=connectors[(g // people) % apps],
                source=source,
                identity_id=identities[g % people],
                external_id=f"grant-{g}",
            )
            for g in range(n_grants)
        ),
        batch_size=5000,
    )
    return source, people, apps


def _fill_chain(n_events: int, n_grants: int) -> None:
    from audit.services import record_batch
    from connectors.models import Grant

    grants = list(Grant.objects.order_by("pk").values_list("pk", "connector_id", "identity_id"))
    size = 10_000
    for start in range(0, n_events, size):
        batch = []
        for i in range(start, min(start + size, n_events)):
            pk, connector, identity = grants[i % len(grants)]
            batch.append(
                {
                    "action": "idp.token_used",
                    "actor_label": f"user{identity}@bench.example",
                    "grant": pk,
                    "connector": connector,
                    "external_id": f"fill:{i}",
                    "data": {"n": i},
                }
            )
        record_batch(batch)


def _key() -> str:
    from audit.services import ingest_key_create

    _, raw = ingest_key_create(
        name=f"bench gateway {secrets.token_hex(4)}", actor="bench", rate_limit_per_minute=10**9
    )
    return raw


def _bodies(n_events: int, batch: int, people: int, apps: int) -> list[bytes]:
    """Request bodies as a gateway sends them: current times, one event per person in turn."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    bodies = []
    for start in range(0, n_events, batch):
        events = []
        for i in range(start, min(start + batch, n_events)):
            person = i % people
            events.append(
                {
                    "id": f"evt-{i}",
                    "time": (now + timedelta(microseconds=i)).isoformat(),
                    "actor": {"email": f"user{person}@bench.example"},
                    "device": {"id": f"DEV-{person}"},
                    "connector": {"source": "Bench Google", "client_id": f"client-{(i // people) % apps}"},
                    "action": "tool_call",
                    "resource": f"drive:file/{i}",
                    "ip": "203.0.113.9",
                    "user_agent": "bench/1.0",
                }
            )
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def _ingest(n_events: int, batch: int, people: int, apps: int) -> tuple[int, float]:
    """One gateway posting batches one after another, through the view in this process."""
    from django.test import Client

    raw = _key()
    client = Client()
    bodies = _bodies(n_events, batch, people, apps)
    accepted = 0
    started = time.perf_counter()
    for body in bodies:
        response = client.post(
            "/api/v1/events", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
        )
        if response.status_code != 200:
            raise SystemExit(f"ingest failed: {response.status_code} {response.content[:300]!r}")
        accepted += response.json()["accepted"]
    return accepted, time.perf_counter() - started


def _ingest_http(
    n_events: int, batch: int, people: int, apps: int, db_url: str, clients: int
) -> tuple[int, float, int]:
    """Several gateways posting at once over HTTP to gunicorn run with the production config.

    Returns events accepted, seconds, and the number of web workers.
    """
    import socket
    import subprocess
    import threading

    import httpx

    raw = _key()
    bodies = _bodies(n_events, batch, people, apps)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "PYTHONPATH": str(ROOT),
    }
    workers = int(env.get("WEB_CONCURRENCY") or (os.cpu_count() or 1) * 2 + 1)
    log = open(ROOT / "var" / "bench-gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "lanyard.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {log.name}")
            time.sleep(0.2)
        # Warm every worker (imports, first queries) with small batches of their own.
        warm = _bodies(10 * workers * 4, 10, people, apps)
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            for body in warm:
                http.post("/api/v1/events", content=body.replace(b'"evt-', b'"warm-'))
        queue = list(reversed(bodies))
        lock = threading.Lock()
        accepted = [0]
        failures: list[str] = []

        def gateway() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                while True:
                    with lock:
                        if not queue or failures:
                            return
                        body = queue.pop()
                    response = http.post("/api/v1/events", content=body)
                    with lock:
                        if response.status_code != 200:
                            failures.append(f"{response.status_code} {response.content[:300]!r}")
                        else:
                            accepted[0] += response.json()["accepted"]

        threads = [threading.Thread(target=gateway) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        if failures:
            raise SystemExit(f"ingest over HTTP failed: {failures[0]}")
        return accepted[0], seconds, workers
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _compare(n: int, rounds: int = 5) -> dict[str, float]:
    """Seconds per change for each way of recording it (median of interleaved rounds)."""
    import statistics

    from auditlog.models import LogEntry
    from auditlog.registry import auditlog
    from django.db import connection, transaction
    from django.utils import timezone

    from audit.models import AuditEvent
    from audit.services import record, record_batch
    from connectors.models import Grant

    grants = list(Grant.objects.order_by("pk").select_related("connector")[:n])
    # The commit's disk flush is the same for every method and, on a shared disk, noisier than
    # the differences measured here.
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")

    def bare(part):
        for g in part:
            with transaction.atomic():
                g.last_used_at = timezone.now()
                g.save(update_fields=["last_used_at"])

    def ours(part):
        for g in part:
            with transaction.atomic():
                g.last_used_at = timezone.now()
                g.save(update_fields=["last_used_at"])
                record(
                    "grant.used",
                    grant=g,
                    connector=g.connector,
                    target=g,
                    data={"last_used_at": g.last_used_at},
                )

    def theirs(part):
        auditlog.register(Grant, include_fields=["last_used_at"])
        try:
            bare(part)
        finally:
            auditlog.unregister(Grant)

    def bare_batch(part):
        now = timezone.now()
        with transaction.atomic():
            for g in part:
                g.last_used_at = now
            Grant.objects.bulk_update(part, ["last_used_at"])

    def ours_batch(part):
        now = timezone.now()
        with transaction.atomic():
            for g in part:
                g.last_used_at = now
            Grant.objects.bulk_update(part, ["last_used_at"])
            record_batch(
                {
                    "action": "grant.used",
                    "grant": g,
                    "connector": g.connector,
                    "target": g,
                    "data": {"last_used_at": now},
                }
                for g in part
            )

    methods = {
        "bare save": bare,
        "chain: save + record()": ours,
        "auditlog: save (+ LogEntry)": theirs,
        "bare bulk_update": bare_batch,
        "chain: bulk_update + record_batch()": ours_batch,
    }
    samples: dict[str, list[float]] = {name: [] for name in methods}
    size = max(1, n // rounds)
    for r in range(rounds):
        part = grants[r * size : (r + 1) * size]
        for name, method in methods.items():
            started = time.perf_counter()
            method(part)
            samples[name].append((time.perf_counter() - started) / len(part))
    assert LogEntry.objects.count() >= size * rounds
    results = {name: statistics.median(values) for name, values in samples.items()}

    # The physical limit: COPY the same audit rows (as our chain wrote them) into a scratch table
    # with the same columns and indexes.
    fields = [f for f in AuditEvent._meta.concrete_fields if f.column != "id"]
    columns = [f.column for f in fields]
    rows = list(
        AuditEvent.objects.filter(action="grant.used")
        .order_by("sequence")
        .values_list(*[f.attname for f in fields])[:n]
    )
    data_at = columns.index("data")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_copy (LIKE audit_auditevent INCLUDING ALL)")
    sql = f"COPY bench_copy ({', '.join(columns)}) FROM STDIN"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(sql) as out:
        for row in rows:
            row = list(row)
            row[data_at] = json.dumps(row[data_at])
            out.write_row(row)
    results["raw COPY of the same rows"] = (time.perf_counter() - started) / len(rows)
    return results


def main() -> None:
    args = _args()
    try:
        import auditlog  # noqa: F401
    except ImportError:
        raise SystemExit("bench.audit compares with django-auditlog: pip install -e '.[bench]'")
    name = f"lanyard_bench_audit_{os.getpid()}"
    admin = _admin_connection(args.server)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = args.server.rsplit("/", 1)[0]
    try:
        _configure(f"{base}/{name}")
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"kept database {name}")
        else:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection

    from audit.verify import verify

    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
    )
    call_command("migrate", verbosity=0)

    started = time.perf_counter()
    _, people, apps = _setup_register(args.grants)
    print(
        f"setup: register with {args.grants:,} grants ({people:,} people, {apps:,} apps) "
        f"in {time.perf_counter() - started:.1f}s"
    )

    started = time.perf_counter()
    _fill_chain(args.events, args.grants)
    print(f"setup: chain via record_batch: {_rate(args.events, time.perf_counter() - started)}")

    with connection.cursor() as cursor:  # what autovacuum would have done on a live database
        cursor.execute("VACUUM (ANALYZE)")

    from activity.usage import usage_rollup

    usage_rollup()  # the chain so far: the mark starts at the ingest
    accepted, seconds = _ingest(args.ingest, args.batch, people, apps)
    print(
        f"ingest API, one gateway ({args.batch}/request, in-process test client, one after another): "
        f"{_rate(accepted, seconds)}  [target 10,000/s]"
    )
    db_url = connection.settings_dict
    db_url = f"postgres://{db_url['USER']}@{db_url['HOST']}:{db_url['PORT']}/{db_url['NAME']}"
    http_accepted, http_seconds, web_workers = _ingest_http(
        args.ingest, args.batch, people, apps, db_url, args.clients
    )
    print(
        f"ingest API, {args.clients} gateways at once over HTTP to gunicorn ({web_workers} workers, "
        f"gunicorn.conf.py): {_rate(http_accepted, http_seconds)}  [target 10,000/s]"
    )
    started = time.perf_counter()
    rolled = usage_rollup()
    rollup_seconds = time.perf_counter() - started
    print(
        f"usage roll-up of both ingests (a worker's job, off the request path): "
        f"{_rate(rolled.events, rollup_seconds)}; {rolled.grants:,} grant and {rolled.devices:,} device "
        "rows moved forward"
    )

    from audit.checkpoints import checkpoint_create

    checkpoint_create()
    for workers in sorted({1, args.workers}):
        result = verify(workers=workers)
        if not result.ok:
            raise SystemExit(f"verify failed: {result.first_problem}")
        print(
            f"audit_verify ({workers} process{'es' if workers > 1 else ''}): "
            f"{_rate(result.events, result.seconds)}  [target 200,000/s]"
        )

    results = _compare(args.compare)
    print(
        f"\nrecording one grant change, {args.compare:,} changes each, median of 5 interleaved rounds "
        "(synchronous_commit=off), per change:"
    )
    for label, seconds in results.items():
        print(f"  {label:40s} {seconds * 1e6:9.1f} µs")
    ours = results["chain: save + record()"] - results["bare save"]
    theirs = results["auditlog: save (+ LogEntry)"] - results["bare save"]
    ours_bulk = results["chain: bulk_update + record_batch()"] - results["bare bulk_update"]
    copy = results["raw COPY of the same rows"]
    print("\ncost of the audit record alone (minus the same change unaudited):")
    print(f"  chain record()        {ours * 1e6:9.1f} µs/event")
    print(f"  django-auditlog       {theirs * 1e6:9.1f} µs/event")
    print(f"  chain record_batch()  {ours_bulk * 1e6:9.1f} µs/event")
    print(f"  raw COPY              {copy * 1e6:9.1f} µs/event")
    print("ratios:")
    print(f"  chain record() / auditlog       {ours / theirs:6.2f}x")
    print(f"  chain record_batch() / auditlog {ours_bulk / theirs:6.2f}x")
    print(f"  chain record_batch() / COPY     {ours_bulk / copy:6.2f}x")
    print(f"  chain record() / COPY           {ours / copy:6.2f}x")


if __name__ == "__main__":
    main()
