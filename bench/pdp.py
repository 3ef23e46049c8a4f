"""Decision point benchmark on a throwaway PostgreSQL database: ``python -m bench.pdp``.

Builds a register of 10,000 identities (each with a compliant laptop), 10,000 active, owned connectors
and 100,000 live grants, then measures, in one run and on the same questions:

1. **Lanyard, one evaluation**: ``POST /access/v1/evaluation`` through the whole Django request path
   (test client: key check, rate limit, body, entity loading, Cedar, recording), server time p50/p99;
2. **Lanyard, 100 evaluations**: ``POST /access/v1/evaluations`` with 100 items, median;
3. **the raw engine**: ``cedarpy.is_authorized`` (and ``is_authorized_batch``) on the very requests and
   entities Lanyard hands the engine (only the attributes the policy set reads), parsed policy set:
   the floor Lanyard's overhead is reported against;
4. **over HTTP**: one gunicorn worker (gthread, keep-alive) on this database, asked by concurrent
   keep-alive clients for ``--seconds``: single-evaluation requests per second, and decisions per
   second with 100-item batches.

The database is created under a random name and dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2_000, help="single evaluations timed")
    parser.add_argument("--batches", type=int, default=50, help="100-item batches timed")
    parser.add_argument("--seconds", type=float, default=10.0, help="HTTP throughput run length")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive HTTP clients")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


ENV: dict[str, str] = {}


def _configure(db_url: str) -> None:
    ENV.update(
        DATABASE_URL=db_url,
        SECRET_KEY="bench-" + secrets.token_hex(24),
        LANYARD_ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        LANYARD_AUDIT_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(),
        CELERY_TASK_ALWAYS_EAGER="1",
        DEBUG="0",
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
        CACHE_URL="locmemcache://",
        LOG_LEVEL="WARNING",
    )
    os.environ.update(ENV)
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "lanyard.settings"
    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
    settings.DATABASES["default"]["CONN_MAX_AGE"] = None


def _populate(args: argparse.Namespace) -> dict:
    from django.db import transaction

    from connectors.models import Connector, Device, Grant, Identity, IdentitySource, Risk
    from governance.models import User

    rng = random.Random(7)
    with transaction.atomic():
        source = IdentitySource.objects.create(kind="okta", name="bench", base_url="https://bench.invalid")
        owner = User.objects.create(username="owner", email="owner@bench.example")
        identities = Identity.objects.bulk_create(
            [
                Identity(source=source, external_id=f"u{i}", email=f"user{i}@bench.example", name=f"User {i}")
                for i in range(args.identities)
            ],
            batch_size=5000,
        )
        Device.objects.bulk_create(
            [
                Device(source=source, external_id=f"DEV-{i}", owner=identity, managed=True, compliant=True)
                for i, identity in enumerate(identities)
            ],
            batch_size=5000,
        )
        connectors = Connector.objects.bulk_create(
            [
                Connector(
                    name=f"AI connector {i}",
                    status=Connector.Status.ACTIVE,
                    business_owner=owner,
                    risk=rng.choice([Risk.LOW, Risk.MEDIUM, Risk.HIGH]),
                    mcp_server_url=f"https://mcp{i}.bench.example/mcp",
                )
                for i in range(args.connectors)
            ],
            batch_size=5000,
        )
        pairs = set()
        while len(pairs) < args.grants:
            pairs.add((rng.randrange(len(identities)), rng.randrange(len(connectors))))
        Grant.objects.bulk_create(
            [
                Grant(
                    connector=connectors[c],
                    source=source,
                    identity=identities[i],
                    external_id=f"g{i}-{c}",
                    status=Grant.Status.ACTIVE,
                )
                for i, c in sorted(pairs)
            ],
            batch_size=5000,
        )
    return {"pairs": sorted(pairs), "identities": identities, "connectors": connectors}


def _question(data: dict, pair: tuple[int, int]) -> dict:
    i, c = pair
    return {
        "subject": {"type": "identity", "id": f"user{i}@bench.example", "properties": {"device": f"DEV-{i}"}},
        "action": {"name": "tools/call"},
        "resource": {
            "type": "connector",
            "id": str(data["connectors"][c].pk),
            "properties": {"tool": "search"},
        },
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_run(url: str, raw: str, bodies: list[bytes], seconds: float, clients: int) -> tuple[int, float]:
    import httpx

    done = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        with httpx.Client(
            headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}, timeout=30
        ) as http:
            k = n
            while time.perf_counter() < stop:
                response = http.post(url, content=bodies[k % len(bodies)])
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                done[n] += 1
                k += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"HTTP run failed: {errors[0]}")
    return sum(done), time.perf_counter() - started


def main() -> None:  # noqa: PLR0915 - one linear script
    args = _args()
    import psycopg

    name = f"lanyard_bench_pdp_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.server, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = args.server.rsplit("/", 1)[0]
    gunicorn = None
    try:
        _configure(f"{base}/{name}")
        import cedarpy
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        data = _populate(args)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(
            f"setup: {args.identities:,} identities (and devices), {args.connectors:,} connectors, "
            f"{args.grants:,} grants in {time.perf_counter() - t0:.1f}s"
        )

        from access import entities as access_entities
        from access import policies, services
        from access.entities import Question
        from audit.models import IngestKey
        from audit.services import ingest_key_create

        key, raw = ingest_key_create(
            name="bench", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE], decisions_per_minute=10**9
        )
        rng = random.Random(11)
        questions = [_question(data, rng.choice(data["pairs"])) for _ in range(args.samples)]
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
        # Warm up: connections, the parsed policy set, the HR ranking.
        for body in questions[:50]:
            client.post("/access/v1/evaluation", json.dumps(body), content_type="application/json")

        # 1. Lanyard, one evaluation, whole request path.
        times, permits = [], 0
        for body in questions:
            started = time.perf_counter()
            response = client.post("/access/v1/evaluation", json.dumps(body), content_type="application/json")
            times.append((time.perf_counter() - started) * 1000)
            permits += response.json()["decision"] is True
        if permits != len(questions):
            raise SystemExit(f"only {permits} of {len(questions)} permitted: the register is not as built")

        # 3. The raw engine on the same requests and entities Lanyard built for them.
        book = policies.current()
        built = []
        for body in questions:
            ask = access_entities.Ask(Question(body["subject"], body["action"], body["resource"], {}))
            access_entities.parse(ask)
            holdings = access_entities.load([ask])
            request, ents = access_entities.entities_for(ask, holdings, services.pep_context(key))
            # What Lanyard gives the engine: only the attributes and context keys the policies read.
            built.append((policies.request_for_engine(book, request), policies.for_engine(book, ents)))
        raw_times = []
        for request, ents in built:
            started = time.perf_counter()
            answer = cedarpy.is_authorized(request, book.policies, ents)
            raw_times.append((time.perf_counter() - started) * 1000)
            assert answer.allowed
        # Lanyard's queries for one decision (after warm-up).
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            client.post("/access/v1/evaluation", json.dumps(questions[0]), content_type="application/json")
        queries = len(captured)
        if queries > 20 or os.environ.get("BENCH_SHOW_QUERIES"):
            from collections import Counter

            shapes = Counter(q["sql"][:90] for q in captured.captured_queries)
            for shape, count in shapes.most_common(8):
                print(f"  {count:>4} x {shape}")

        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            for body in questions[:300]:
                client.post("/access/v1/evaluation", json.dumps(body), content_type="application/json")
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)

        # 2. 100-item batches, and the raw engine's batch call on the same items.
        batch_times, raw_batch = [], []
        for n in range(args.batches):
            items = [_question(data, rng.choice(data["pairs"])) for _ in range(100)]
            body = json.dumps({"evaluations": items})
            started = time.perf_counter()
            response = client.post("/access/v1/evaluations", body, content_type="application/json")
            batch_times.append((time.perf_counter() - started) * 1000)
            assert len(response.json()["evaluations"]) == 100
            if n < 10:
                asks = [
                    access_entities.Ask(Question(i["subject"], i["action"], i["resource"], {})) for i in items
                ]
                for a in asks:
                    access_entities.parse(a)
                holdings = access_entities.load(asks)
                pairs = [access_entities.entities_for(a, holdings, services.pep_context(key)) for a in asks]
                all_ents = {(e["uid"]["type"], e["uid"]["id"]): e for _, es in pairs for e in es}
                started = time.perf_counter()
                cedarpy.is_authorized_batch(
                    [policies.request_for_engine(book, r) for r, _ in pairs],
                    book.policies,
                    policies.for_engine(book, list(all_ents.values())),
                )
                raw_batch.append((time.perf_counter() - started) * 1000)

        p50, p99 = statistics.median(times), _pct(times, 0.99)
        r50, r99 = statistics.median(raw_times), _pct(raw_times, 0.99)
        b50, rb50 = statistics.median(batch_times), statistics.median(raw_batch)
        print(f"\n{'':<44} {'Lanyard':>10} {'raw cedarpy':>12} {'ratio':>7}  target")
        print(f"{'one evaluation, p50 (ms)':<44} {p50:>10.2f} {r50:>12.3f} {p50 / r50:>7.0f}  <= 2 ms")
        print(f"{'one evaluation, p99 (ms)':<44} {p99:>10.2f} {r99:>12.3f} {p99 / r99:>7.0f}  <= 10 ms")
        label = "100 evaluations in one call, median (ms)"
        print(f"{label:<44} {b50:>10.2f} {rb50:>12.3f} {b50 / rb50:>7.0f}  <= 25 ms")
        print(f"queries per decision (whole request, after warm-up): {queries}")

        # 4. Over HTTP: one gunicorn worker, keep-alive clients.
        port = _free_port()
        env = {**os.environ, **ENV, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--worker-class", "gthread",
             "--threads", str(args.clients), "--keep-alive", "30", "--access-logfile", "/dev/null",
             "lanyard.wsgi"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        import httpx

        url = f"http://127.0.0.1:{port}/access/v1/evaluation"
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        single = [json.dumps(q).encode() for q in questions]
        _http_run(url, raw, single[:200], 1.0, args.clients)  # warm the worker
        n, elapsed = _http_run(url, raw, single, args.seconds, args.clients)
        batches = [
            json.dumps({"evaluations": [_question(data, rng.choice(data["pairs"])) for _ in range(100)]})
            for _ in range(20)
        ]
        batches = [b.encode() for b in batches]
        bn, belapsed = _http_run(url + "s", raw, batches, args.seconds, args.clients)
        print(f"\nover HTTP, one gunicorn worker (gthread, {args.clients} threads), {args.clients} clients:")
        print(f"  single evaluations: {n / elapsed:,.0f} decisions/s ({n:,} in {elapsed:.1f}s)")
        print(
            f"  100-item batches:   {bn * 100 / belapsed:,.0f} decisions/s ({bn:,} calls in {belapsed:.1f}s)"
        )
        print("  target: >= 1,500 decisions/s")
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            try:
                gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        from django.db import connections

        if "access.recording" in sys.modules:  # the figures still gathered, while the database is there
            sys.modules["access.recording"].flush()
        connections.close_all()
        if not args.keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")


if __name__ == "__main__":
    main()
