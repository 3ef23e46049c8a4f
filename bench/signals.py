"""Shared Signals receiver benchmark on a throwaway PostgreSQL database: ``python -m bench.signals``.

Measures, in one run, through the real ``POST /ssf/receive/<id>`` view in-process (Django's test
client: middleware, body reader, PyJWT signature and claim checks, the one INSERT of the verified
SET; no socket or WSGI server in front), on one process = one web worker:

1. receiver throughput (SETs/s) for CAEP ``session-revoked`` SETs (verified and stored, answered
   202), with the SQL statements per SET; the processor does not run meanwhile (its task waits in
   the broker);
2. the processor draining that backlog (``received_process_pending``: match, record, bulk audit),
   SETs/s, in the same process;
3. SET → revocation enqueued latency for RISC ``account-disabled`` SETs about people holding grants,
   across the async hop: from the request's start to the last of the person's revocation tasks
   published, with the processor run by a real Celery worker (solo pool, in a thread of this
   process, consuming only the processor's task, over kombu's in-memory transport polled every
   5 ms); p50, p95;
4. the signature check alone (PyJWT ``verify``), for scale;
5. the transmitter: Lanyard revoke → SET delivered to a push receiver (a threaded HTTP server on
   127.0.0.1 that verifies each SET's signature): from the call to ``grant_revoke`` (its transaction,
   the outbox row and audit event in it, the commit) to the receiver holding the verified SET. The
   push task runs in-process on commit (Celery eager, the code a warm worker runs, without the
   broker hop).

Issue 15's targets: ≥ 500 SETs/s on one web worker with signature checks; ≤ 200 ms p50 from an IdP
SET received to Lanyard's revocation enqueued. The SETs are RS256-signed by the simulator's Okta
transmitter (``simulator/ssf.py``), whose JWKS is served over HTTP and cached after the first fetch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.audit import _admin_connection  # noqa: E402

BENCH_QUEUE = "bench-ssf"
PROCESSOR = "signals.process_received"
REVOKE = "connectors.revoke_grant_at_idp"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=5000, help="session-revoked SETs for the throughput")
    parser.add_argument("--people", type=int, default=2000, help="identities in the register")
    parser.add_argument("--disabled", type=int, default=300, help="account-disabled SETs (latency)")
    parser.add_argument("--grants-each", type=int, default=3, help="IdP grants per person")
    parser.add_argument(
        "--threads",
        type=lambda v: [int(n) for n in v.split(",") if n.strip() and int(n)],
        default=[4],
        help="also measure the throughput with this many request threads in the one process "
        "(comma-separated counts, e.g. 4,8; 0: skip)",
    )
    parser.add_argument("--revokes", type=int, default=200, help="revocations pushed by the transmitter")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def _configure(db_url: str) -> None:
    import base64
    import importlib
    import secrets

    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(24))
    os.environ.setdefault("LANYARD_ENCRYPTION_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    os.environ["CELERY_BROKER_URL"] = "memory://"  # revocations are queued, not run: we time the enqueue
    os.environ["CACHE_URL"] = "locmemcache://"
    os.environ["DEBUG"] = "0"
    import django
    from django.conf import settings
    from kombu import Queue

    base = importlib.import_module("lanyard.settings")
    values = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    # The bench's worker thread takes the processor's task alone (the revocations it queues stay
    # queued: we time their enqueue), and polls the in-memory broker every 5 ms (default: 1 s).
    values["CELERY_TASK_QUEUES"] = [
        *values["CELERY_TASK_QUEUES"],
        Queue(BENCH_QUEUE, routing_key=BENCH_QUEUE),
    ]
    values["CELERY_TASK_ROUTES"] = {**values["CELERY_TASK_ROUTES"], PROCESSOR: {"queue": BENCH_QUEUE}}
    values["CELERY_BROKER_TRANSPORT_OPTIONS"] = {"polling_interval": 0.005}
    values["ALLOWED_HOSTS"] = ["testserver"]
    values["SECURE_SSL_REDIRECT"] = False
    values["DATABASES"]["default"]["CONN_MAX_AGE"] = None
    values["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    settings.configure(**values)
    django.setup()


def _register(people: int, grants_each: int):
    from connectors.models import Connector, Grant, Identity, IdentitySource

    source = IdentitySource.objects.create(kind="okta", name="Bench Okta", base_url="http://okta.invalid")
    Identity.objects.bulk_create(
        Identity(source=source, external_id=f"00u{i}", email=f"user{i}@bench.example") for i in range(people)
    )
    connector = Connector.objects.create(name="Bench AI", status=Connector.Status.ACTIVE)
    ids = list(Identity.objects.order_by("pk").values_list("pk", flat=True))
    Grant.objects.bulk_create(
        (
            Grant(connector=connector, source=source, identity_id=pk, external_id=f"g{pk}-{j}")
            for pk in ids
            for j in range(grants_each)
        ),
        batch_size=5000,
    )
    return source


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def _run(args: argparse.Namespace) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    import simulator
    from audit.models import AuditEvent
    from connectors.models import Grant
    from signals import services
    from signals.models import ReceivedSet, ReceiverStream

    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
    )
    call_command("migrate", verbosity=0)
    source = _register(args.people, args.grants_each)
    sim = simulator.start(seed=1, identities=5, grants=5, events=0)
    try:
        issuer = sim.ssf_issuer("okta")
        stream = ReceiverStream.objects.create(
            name="bench",
            source=source,
            issuer=issuer,
            jwks_url=f"{issuer}/jwks",
            audience="https://bench/ssf",
        )
        ssf = sim.sim.ssf

        def token(event: str, n: int) -> str:
            subject = {
                "format": "complex",
                "user": {"format": "email", "email": f"user{n % args.people}@bench.example"},
            }
            return ssf.build(
                sim.url, None, provider="okta", event=event, aud=stream.audience, subject=subject
            )[1]

        client = Client()
        url = f"/ssf/receive/{stream.pk}"

        def post(body: str) -> int:
            return client.post(url, data=body, content_type="application/secevent+jwt").status_code

        assert post(token("session-revoked", 0)) == 202  # warms the JWKS cache and the connection

        tokens = [token("session-revoked", i) for i in range(args.sets)]
        assert post(tokens[0]) == 202  # the stream read again (building the tokens outlasts its cache)
        with CaptureQueriesContext(connection) as captured:
            assert post(tokens[1]) == 202
        per_set = len(captured)
        started = time.perf_counter()
        statuses = [post(t) for t in tokens[2:]]
        elapsed = time.perf_counter() - started
        assert set(statuses) == {202}, set(statuses)
        measured = len(tokens) - 2
        print(
            f"throughput: {measured:,} session-revoked SETs in {elapsed:.2f}s = "
            f"**{measured / elapsed:,.0f} SETs/s** ({elapsed / measured * 1000:.2f} ms each, "
            f"{per_set} SQL statements per SET; target 500/s)"
        )
        flush_ms = _commit_ms(connection)
        print(
            f"one durable INSERT + commit alone (the WAL flush a stored SET waits for): {flush_ms:.2f} ms "
            f"= at most {1000 / flush_ms:,.0f} commits/s one after another"
        )
        for threads in args.threads:
            threaded = [token("session-revoked", i) for i in range(args.sets)]
            rate = _threaded(url, threaded, threads)
            print(
                f"throughput, {threads} request threads in the one process (a gthread worker; "
                f"their commits share WAL flushes): {len(threaded):,} SETs = **{rate:,.0f} SETs/s**"
            )
        pending = ReceivedSet.objects.filter(processed_at__isnull=True).count()
        started = time.perf_counter()
        done = services.received_process_pending(budget_seconds=3600)
        elapsed = time.perf_counter() - started
        assert done.processed == pending and not done.failed and not done.retry, (done, pending)
        assert AuditEvent.objects.filter(action="ssf.set_received").count() == ReceivedSet.objects.count()
        print(
            f"processor: {pending:,} pending SETs acted on and audited in {elapsed:.2f}s = "
            f"**{pending / elapsed:,.0f} SETs/s** (batches of {settings.LANYARD_SSF_PROCESS_BATCH})"
        )

        latencies = _latency(args, token, post)
        revoking = Grant.objects.filter(status=Grant.Status.REVOKING).count()
        assert revoking == len(latencies) * args.grants_each, (revoking, len(latencies) * args.grants_each)
        print(
            f"SET → revocation enqueued (request start → the last revocation task published by the "
            f"processor, a real worker): {len(latencies)} account-disabled SETs ({args.grants_each} grants "
            f"each, {revoking:,} revocations queued): p50 **{statistics.median(latencies):.1f} ms**, "
            f"p95 {_pct(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms (target ≤ 200 ms p50)"
        )

        sample = tokens[:2000]
        started = time.perf_counter()
        for t in sample:
            services.verify(stream, t)
        elapsed = time.perf_counter() - started
        print(f"signature + claims check alone: {len(sample) / elapsed:,.0f} SETs/s")
        print(f"received SETs recorded: {ReceivedSet.objects.count():,}")
        _transmitter(args)
    finally:
        sim.stop()


def _commit_ms(connection, n: int = 500) -> float:
    """The time of one durable single-row INSERT and its commit (autocommit), on this database."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, v text)")
        started = time.perf_counter()
        for _ in range(n):
            cursor.execute("INSERT INTO bench_commit (v) VALUES ('x')")
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_commit")
    return elapsed / n * 1000


def _threaded(url: str, tokens: list[str], threads: int) -> float:
    """Post the tokens from ``threads`` threads of this process at once; return SETs/s."""
    import threading

    from django.db import connection
    from django.test import Client

    chunks = [tokens[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    failures: list[int] = []

    def run(chunk: list[str]) -> None:
        client = Client()
        try:
            connection.ensure_connection()  # each thread has its own connection, opened first
            barrier.wait()
            for body in chunk:
                status = client.post(url, data=body, content_type="application/secevent+jwt").status_code
                if status != 202:
                    failures.append(status)
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    assert not failures, failures[:5]
    return len(tokens) / elapsed


def _latency(args: argparse.Namespace, token, post) -> list[float]:
    """Post account-disabled SETs one at a time; time each to its revocations' publication."""
    import threading

    from celery import current_app
    from celery.contrib.testing.worker import start_worker
    from celery.signals import after_task_publish

    published: list[float] = []
    lock = threading.Condition()

    def on_publish(sender=None, **kwargs) -> None:
        if sender == REVOKE:
            with lock:
                published.append(time.perf_counter())
                lock.notify_all()

    after_task_publish.connect(on_publish, weak=False)
    latencies = []
    n = min(args.disabled, args.people - 1)
    disabled = [token("account-disabled", i + 1) for i in range(n)]
    try:
        with start_worker(
            current_app, pool="solo", perform_ping_check=False, queues=[BENCH_QUEUE], loglevel="error"
        ):
            for body in disabled:
                before = len(published)
                t0 = time.perf_counter()
                assert post(body) == 202
                with lock:
                    if not lock.wait_for(lambda b=before: len(published) >= b + args.grants_each, 30):
                        raise AssertionError("the processor did not enqueue the revocations in 30 s")
                    latencies.append((published[before + args.grants_each - 1] - t0) * 1000)
    finally:
        after_task_publish.disconnect(on_publish)
    return latencies


def _transmitter(args: argparse.Namespace) -> None:
    from celery import current_app

    from connectors.models import Connector, Grant, Identity
    from connectors.services import grant_revoke
    from signals import keys
    from signals.models import OutboxSet
    from signals.streams import receiver_create, stream_create
    from tests.signals.txtools import PushReceiver

    receiver, _ = receiver_create(name="bench gateway", audience="https://bench-gateway", actor="bench")
    push = PushReceiver(
        audience="https://bench-gateway", issuer=keys.settings.LANYARD_SSF_ISSUER, jwks=keys.jwks()
    )
    current_app.conf.task_always_eager = True
    try:
        stream_create(
            receiver=receiver,
            data={"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": push.url}},
        )
        connector = Connector.objects.first()
        people = list(Identity.objects.order_by("-pk").values_list("pk", flat=True)[: args.revokes + 1])
        grants = [
            Grant.objects.create(
                connector=connector, identity_id=pk, external_id=f"portal-{pk}", kind="portal_credential"
            )
            for pk in people
        ]
        grant_revoke(grant=grants[0], actor="bench", reason="warm-up")  # key created, connections warm
        latencies = []
        for grant in grants[1:]:
            t0 = time.perf_counter()
            grant_revoke(grant=grant, actor="bench", reason="bench")
            latencies.append((push.times[-1] - t0) * 1000)
        delivered = OutboxSet.objects.filter(state="delivered").count()
        assert delivered == len(grants) == len(push.received), (delivered, len(grants), len(push.received))
        print(
            f"revoke → SET delivered to a push receiver: {len(latencies)} portal grants revoked, each SET "
            f"signed ({keys.settings.LANYARD_SSF_SIGNING_ALG}), pushed over HTTP and verified: "
            f"p50 **{statistics.median(latencies):.1f} ms**, p95 {_pct(latencies, 0.95):.1f} ms, "
            f"max {max(latencies):.1f} ms (target ≤ 1 s p50)"
        )
    finally:
        current_app.conf.task_always_eager = False
        push.stop()


def main() -> None:
    args = _args()
    name = f"lanyard_bench_signals_{os.getpid()}"
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


if __name__ == "__main__":
    main()
