"""Benchmark the audit reports on PostgreSQL at scale (not a test): ``python -m bench.reports``.

Creates a throwaway database, fills it with INSERT ... SELECT generate_series (default 100,000
grants and 1,000,000 audit events), then measures through the Django test client:

* the dashboard ``/audit/`` and the busiest connector's activity page (median of several runs,
  queries per request, which must not vary between runs or with the data size);
* the event search page;
* a streamed export of every event (rows/s), and the export's peak Python memory with
  tracemalloc for the last 30 days and for all events, to show it does not grow with rows.

The generated events carry valid-looking chain fields (contiguous sequences; ``prev_hash`` equal
to the previous row's ``hash``; 64 hex characters) but the hashes are sha256 of the sequence
number, not of the canonical event, so the chain does not verify. The reports never read it.

Flags: ``--events``, ``--grants``, ``--identities``, ``--devices``, ``--connectors`` for smaller
(or larger) sizes, ``--runs``, ``--keep`` to keep the database, ``--admin-url`` for the server,
``--requested-indexes`` to time the pages again with the covering indexes requested from the
lead, ``--skip-pages`` / ``--skip-export`` / ``--skip-trace`` to run parts, ``--jit off``.
Page times depend on the machine's load: the output prints the load average before timing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import tracemalloc
from typing import Any

import psycopg

DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--identities", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=30_000)
    parser.add_argument("--connectors", type=int, default=500)
    parser.add_argument("--days", type=int, default=180, help="events are spread over this many days")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per page (after one warm-up)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-trace", action="store_true", help="skip the (slow) tracemalloc export runs")
    parser.add_argument(
        "--requested-indexes",
        action="store_true",
        help="time the pages again after creating the covering indexes the report asks the lead for",
    )
    parser.add_argument(
        "--jit", choices=["server", "off"], default="server", help="PostgreSQL JIT for the bench's connection"
    )
    return parser.parse_args()


def _db_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _insert_series(model, count: int, exprs: dict[str, str], source: str = "") -> None:
    """INSERT ``count`` rows with SQL expressions over ``i``; other columns take their defaults."""
    from django.db import connection

    columns, selects, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.attname in exprs:
            selects.append(exprs[field.attname].replace("%", "%%"))  # modulo, not a placeholder
        elif field.primary_key or field.null and not field.has_default():
            continue
        else:
            selects.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
        columns.append(connection.ops.quote_name(field.column))
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} "
        f"FROM {source.replace('%', '%%') or f'generate_series(1, {int(count)}) AS g(i)'}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _timed(label: str, fn) -> Any:
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<44} {time.perf_counter() - start:8.1f} s", flush=True)
    return result


def generate(args: argparse.Namespace) -> None:
    """Fill the register and the trail; ids start at 1 in a fresh database."""
    from django.db import connection

    from audit.models import AuditChainHead
    from connectors.models import Connector, Device, Grant, Identity, IdentitySource

    source = IdentitySource.objects.create(kind="okta", name="bench", base_url="http://127.0.0.1:1/okta")
    n_c, n_i, n_d, n_g, n_e = args.connectors, args.identities, args.devices, args.grants, args.events
    statuses = [s.value for s in Connector.Status]
    status_sql = "(ARRAY[{}])[1 + (i % {})]".format(", ".join(f"'{s}'" for s in statuses), len(statuses))
    print("generating:")
    _timed(
        f"{n_c:,} connectors",
        lambda: _insert_series(
            Connector,
            n_c,
            {
                "name": "'AI connector ' || i",
                "vendor": "'Vendor ' || (i % 37)",
                "status": status_sql,
                "risk": "(ARRAY['low','medium','high','critical'])[1 + (i % 4)]",
                "discovered_at": "now() - (random() * interval '84 days')",
                "status_changed_at": "now() - (random() * interval '120 days')",
            },
        ),
    )
    _timed(
        f"{n_i:,} identities",
        lambda: _insert_series(
            Identity,
            n_i,
            {
                "source_id": str(source.pk),
                "external_id": "'bench-person-' || i",
                "email": "'person' || i || '@example.com'",
                "name": "'Person ' || i",
                "department": "'Dept ' || (i % 20)",
            },
        ),
    )
    _timed(
        f"{n_d:,} devices (30% unmanaged)",
        lambda: _insert_series(
            Device,
            n_d,
            {
                "source_id": str(source.pk),
                "external_id": "'bench-device-' || i",
                "name": "'DEVICE-' || lpad(i::text, 6, '0')",
                "platform": "(ARRAY['macOS','Windows','Linux','iOS'])[1 + (i % 4)]",
                "managed": "(i % 10) >= 3",
                "compliant": "(i % 10) >= 3",
                "owner_id": f"1 + (i % {n_i})",
            },
        ),
    )
    # Skewed: connector ids near 1 get most of the grants and events, like real adoption.
    skewed_connector = f"1 + floor(power(random(), 2) * {n_c})::int"
    _timed(
        f"{n_g:,} grants",
        lambda: _insert_series(
            Grant,
            n_g,
            {
                "connector_id": skewed_connector,
                "source_id": str(source.pk),
                "identity_id": f"1 + floor(random() * {n_i})::int",
                "device_id": f"CASE WHEN i % 2 = 0 THEN 1 + floor(random() * {n_d})::int END",
                "external_id": "'bench-grant-' || i",
                "status": "CASE WHEN i % 10 = 0 THEN 'revoked' ELSE 'active' END",
                "revoked_at": "CASE WHEN i % 10 = 0 THEN now() END",
                "last_used_at": "now() - (random() * interval '90 days')",
            },
        ),
    )
    _timed(f"{n_e:,} audit events", lambda: _insert_events(n_e, n_i, n_d, n_c, args.days))
    with connection.cursor() as cursor:
        cursor.execute("SELECT sequence, hash FROM audit_auditevent ORDER BY sequence DESC LIMIT 1")
        sequence, head_hash = cursor.fetchone() or (0, "0" * 64)
    AuditChainHead.objects.update_or_create(pk=1, defaults={"sequence": sequence, "hash": head_hash})


def _insert_events(n_e: int, n_i: int, n_d: int, n_c: int, days: int) -> None:
    from audit.models import AuditEvent

    step = days * 86400.0 / max(n_e, 1)
    at = f"now() - interval '{days} days' + (i * {step}) * interval '1 second'"
    exprs = {
        "sequence": "i",
        "occurred_at": at,
        "recorded_at": at,
        "action": "CASE WHEN i % 50 = 0 THEN 'signin' WHEN i % 20 = 0 THEN 'token.refreshed' "
        "WHEN i % 12 = 0 THEN 'ai.prompt' ELSE 'ai.tool_call' END",
        "outcome": "CASE WHEN i % 97 = 0 THEN 'denied' ELSE 'success' END",
        "actor_identity_id": "ident",
        "actor_label": "'person' || ident || '@example.com'",
        "device_id": f"CASE WHEN i % 10 <> 0 THEN 1 + ((ident * 7 + i % 3) % {n_d}) END",
        "connector_id": "conn",
        "ip": "('10.' || (i % 250) || '.' || (i % 200) || '.' || (i % 7 + 1))::inet",
        "user_agent": "'Claude/1.0 (bench gateway)'",
        "correlation_id": "'req-' || i",
        "data": "jsonb_build_object('resource', 'drive:/doc-' || (i % 5000), 'tool', 'search_files')",
        "prev_hash": "CASE WHEN i = 1 THEN repeat('0', 64) "
        "ELSE encode(sha256((i - 1)::text::bytea), 'hex') END",
        "hash": "encode(sha256(i::text::bytea), 'hex')",
    }
    # Identity and connector drawn once per row in a subquery so actor_label matches actor_identity.
    source = (
        f"(SELECT i, 1 + floor(random() * {n_i})::int AS ident, "
        f"1 + floor(power(random(), 2) * {n_c})::int AS conn FROM generate_series(1, {int(n_e)}) AS g(i)) s"
    )
    _insert_series(AuditEvent, n_e, exprs, source=source)


# What the reports would gain from covering indexes on the audit table (a request to the lead; the
# bench creates them only in its throwaway database). Aggregates over one connector's or one
# person's events then read the index alone instead of one random heap page per event.
REQUESTED_INDEXES = [
    "CREATE INDEX audit_connector_time_cover_idx ON audit_auditevent "
    "(connector_id, occurred_at DESC) INCLUDE (actor_identity_id, device_id, action)",
    "CREATE INDEX audit_identity_time_cover_idx ON audit_auditevent "
    "(actor_identity_id, occurred_at DESC) INCLUDE (connector_id, device_id, action)",
]


def _median_get(client, url: str, runs: int) -> tuple[float, float, float, int, int]:
    """Return (median ms, max ms, median ms in SQL, queries per request, status) after a warm-up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)
    times, sql_times, counts = [], [], set()
    status = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
        status = response.status_code
        counts.add(len(queries))
        sql_times.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
    if len(counts) != 1:
        raise SystemExit(f"query count varied between runs of {url}: {sorted(counts)}")
    return statistics.median(times), max(times), statistics.median(sql_times), counts.pop(), status


def _time_pages(client, pages: list[tuple[str, str]], runs: int, title: str) -> None:
    print(f"\nload average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"pages, {title} (median of {runs} runs after a warm-up; target < 200 ms):")
    for label, url in pages:
        median, worst, sql, queries, status = _median_get(client, url, runs)
        verdict = "ok" if median < 200 else "MISSED"
        print(
            f"  {label:<58} {median:7.1f} ms (max {worst:7.1f}, SQL {sql:6.1f})"
            f"  {queries:2d} queries  {status}  {verdict}"
        )


def _export(client, url: str, *, trace: bool) -> tuple[int, float, int, int]:
    """Stream an export to nowhere; return (lines, seconds, tracemalloc peak bytes, maxrss growth KiB)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    response = client.get(url)
    lines = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    response.close()
    return lines, elapsed, peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before


def measure(args: argparse.Namespace) -> None:
    """Time the pages and the exports through the Django test client."""
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.urls import reverse

    from audit.models import AuditEvent
    from governance.models import User

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    user = User.objects.create(username="bench-iam", email="bench.iam@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name="IAM staff"))
    client = Client()
    client.force_login(user)
    busiest = (
        AuditEvent.objects.order_by()
        .values("connector_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("connector_id", "n")
        .first()
    )
    connector_id, connector_events = busiest
    activity = reverse("audit:connector_activity", args=[connector_id])
    pages = [
        ("dashboard /audit/", reverse("audit:dashboard")),
        (f"connector activity, busiest ({connector_events:,} events), 30 days", activity),
        ("connector activity, same, all time", activity + "?period=all"),
        ("connector activity, same, all time, page 20", activity + "?period=all&page=20"),
        ("event search, 30 days", reverse("audit:events")),
        ("event search, one identity, all time", reverse("audit:events") + "?identity=42&period=all"),
        ("identity view, all time", reverse("audit:identity", args=[42]) + "?period=all"),
    ]
    if not args.skip_pages:
        _time_pages(client, pages, args.runs, "existing indexes")
    if args.requested_indexes and not args.skip_pages:
        with connection.cursor() as cursor:
            for sql in REQUESTED_INDEXES:
                cursor.execute(sql)
            cursor.execute("VACUUM ANALYZE audit_auditevent")
        _time_pages(client, pages, args.runs, "with the requested covering indexes")
    if args.skip_export:
        return
    print("\nexports (streamed through the test client, lines counted and discarded):")
    for fmt in ("csv", "jsonl", "ocsf"):
        url = reverse("audit:events_export", args=[fmt]) + "?period=all"
        lines, elapsed, _, rss = _export(client, url, trace=False)
        rows = lines - 1 if fmt == "csv" else lines
        print(
            f"  {fmt.upper():<5} all events {rows:>10,} rows in {elapsed:6.1f} s"
            f" = {rows / elapsed:>9,.0f} rows/s"
            f"   ru_maxrss growth {rss / 1024:6.1f} MiB"
        )
    if args.skip_trace:
        return
    print("  peak Python memory while streaming OCSF (tracemalloc; slower while tracing):")
    for label, period in (("last 7 days", "7d"), ("last 30 days", "30d"), ("all events", "all")):
        url = reverse("audit:events_export", args=["ocsf"]) + f"?period={period}"
        lines, elapsed, peak, _ = _export(client, url, trace=True)
        print(f"    {label:<12} {lines:>10,} rows   peak {peak / 1024 / 1024:6.2f} MiB")


def main() -> None:
    args = _parse()
    name = f"lanyard_bench_reports_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    print(f"database {name} created")
    try:
        os.environ["DATABASE_URL"] = _db_url(args.admin_url, name)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lanyard.test_settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        # Not setup_test_environment(): its template instrumentation would inflate page times.
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        if args.jit == "off":
            from django.db.backends.signals import connection_created

            def _jit_off(sender, connection, **kwargs) -> None:
                with connection.cursor() as cursor:
                    cursor.execute("SET jit = off")

            connection_created.connect(_jit_off, weak=False)
        _timed("migrate", lambda: call_command("migrate", verbosity=0))
        generate(args)
        measure(args)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"database {name} dropped")


if __name__ == "__main__":
    sys.exit(main())
