"""Sync benchmark (not a test): first sync, no-change resync, memory and queries per page.

    python -m bench.sync [--identities 10000 --grants 100000] [--provider microsoft_entra]
                         [--database-url postgres://postgres@127.0.0.1:5432/lanyard_bench]
                         [--sizes 10000,100000] [--big] [--no-sqlite] [--no-postgres]

The simulated tenant runs in its own process (``simulator.spawn``), so it shares no GIL with the
sync. Each measurement runs in a fresh worker process on a fresh database: a new SQLite file under
var/bench/ and a throwaway PostgreSQL database (created, then dropped). Memory is the growth of the
worker's peak resident set (``ru_maxrss``) during the sync, after Django, the adapter and the source
are loaded: what the sync itself costs, not the interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
REGISTER_TABLES = (
    "connectors_identity",
    "connectors_device",
    "connectors_connector",
    "connectors_connectorapp",
    "connectors_grant",
)


# ---------------------------------------------------------------------------------------- worker


class Counter:
    """A database execute wrapper: statements, rows written to the register, pages loaded."""

    def __init__(self) -> None:
        self.statements = 0
        self.register_rows = 0
        self.pages = 0

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        self.statements += 1
        head = sql.lstrip()[:200]
        verb = head.split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and any(f'"{t}"' in head for t in REGISTER_TABLES):
            self.register_rows += max(context["cursor"].rowcount, 0)
        elif (
            verb == "SELECT"
            and '"external_id" IN (' in sql
            and any(
                f'FROM "{t}"' in sql for t in ("connectors_identity", "connectors_device", "connectors_grant")
            )
        ):
            self.pages += 1  # each page of users, devices or grants loads its rows once
        return result


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.db import connection

    from connectors.models import Grant, IdentitySource, SyncRun
    from connectors.sync import sync_source

    creds = json.loads(args.credentials)
    source = IdentitySource(
        kind=args.provider, name=creds["name"], base_url=creds["base_url"], token_url=creds["token_url"]
    )
    source.set_credentials(creds["credentials"])
    source.save()
    result: dict = {"database": connection.vendor}

    # Warm up imports and the adapter's first use on a tiny query, then take the baseline.
    Grant.objects.exists()
    baseline = _rss_mb()
    counter = Counter()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        run = sync_source(source)
        elapsed = time.perf_counter() - started
    if run.outcome != SyncRun.Outcome.SUCCEEDED:
        raise SystemExit(f"first sync {run.outcome}: {run.error}")
    result["first"] = {
        "seconds": round(elapsed, 2),
        "grants": run.seen,
        "grants_per_s": round(run.seen / elapsed),
        "identities": run.identities_seen,
        "shadow": run.shadow,
        "statements": counter.statements,
        "pages": counter.pages,
        "queries_per_page": round(counter.statements / max(counter.pages, 1), 2),
        "rss_growth_mb": round(_rss_mb() - baseline, 1),
    }

    counter = Counter()
    source.refresh_from_db()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        run = sync_source(source)
        elapsed = time.perf_counter() - started
    if run.outcome != SyncRun.Outcome.SUCCEEDED:
        raise SystemExit(f"resync {run.outcome}: {run.error}")
    result["resync"] = {
        "seconds": round(elapsed, 2),
        "grants_per_s": round(run.seen / elapsed),
        "rows_written": counter.register_rows,
        "changed": run.new + run.changed + run.vanished + run.shadow,
        "statements": counter.statements,
        "pages": counter.pages,
        "queries_per_page": round(counter.statements / max(counter.pages, 1), 2),
        "rss_growth_mb": round(_rss_mb() - baseline, 1),
    }
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------- orchestrator


def _env(database_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signing_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "lanyard.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + os.urandom(24).hex(),
        "LANYARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LANYARD_AUDIT_SIGNING_KEY": signing_key.decode(),
        "LANYARD_VAR_DIR": str(BENCH_DIR),
        # Anything the sync queues (offboarding of deprovisioned people) stays in this process's memory.
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
    }


class Database:
    """A fresh database for one measurement: a new SQLite file, or a PostgreSQL database made and dropped."""

    def __init__(self, kind: str, server_url: str, label: str) -> None:
        self.kind = kind
        if kind == "sqlite":
            BENCH_DIR.mkdir(parents=True, exist_ok=True)
            self.path = BENCH_DIR / f"sync-{label}-{os.getpid()}.sqlite3"
            self.url = f"sqlite:///{self.path}"
        else:
            parts = urlsplit(server_url)
            self.name = (parts.path.strip("/") or "lanyard_bench") + f"_{label}"
            self.admin_url = urlunsplit(parts._replace(path="/postgres"))
            self.url = urlunsplit(parts._replace(path="/" + self.name))

    def __enter__(self) -> Database:
        if self.kind == "sqlite":
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=_env(self.url),
            check=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "sqlite":
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}"')

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)


def measure(db_kind: str, server_url: str, sim, provider: str, label: str) -> dict:
    creds = sim.credentials()[provider]
    with Database(db_kind, server_url, label) as db:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.sync",
                "--worker",
                "--provider",
                provider,
                "--credentials",
                json.dumps(creds),
            ],
            cwd=ROOT,
            env=_env(db.url),
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise SystemExit(f"worker failed on {db_kind}:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, r: dict) -> None:
    f, s = r["first"], r["resync"]
    print(
        f"  {label:<34} first sync {f['seconds']:>7.1f} s  {f['grants_per_s']:>6} grants/s  "
        f"({f['grants']} grants, {f['identities']} identities, {f['shadow']} shadow)  "
        f"statements/page {f['queries_per_page']} (+1 COPY on PostgreSQL)  "
        f"peak RSS growth {f['rss_growth_mb']} MB"
    )
    print(
        f"  {'':<34} resync     {s['seconds']:>7.1f} s  {s['grants_per_s']:>6} grants/s  "
        f"rows written {s['rows_written']}  changes {s['changed']}  statements/page {s['queries_per_page']}  "
        f"peak RSS growth {s['rss_growth_mb']} MB",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=10_000)
    ap.add_argument("--grants", type=int, default=100_000, help="grants in the synced provider")
    ap.add_argument("--provider", default="microsoft_entra", help="source kind to sync")
    ap.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/lanyard_bench")
    ap.add_argument("--sizes", default="", help="extra grant counts (comma-separated) to show memory is flat")
    ap.add_argument("--big", action="store_true", help="also run 10x the tenant on PostgreSQL")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--credentials", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    sys.path.insert(0, str(ROOT))
    import simulator

    databases = [d for d, off in (("sqlite", args.no_sqlite), ("postgresql", args.no_postgres)) if not off]
    runs: list[tuple[int, int, list[str]]] = [(args.identities, args.grants, databases)]
    for extra in filter(None, args.sizes.split(",")):
        runs.append((args.identities, int(extra), databases[-1:]))
    if args.big:
        runs.append((args.identities * 10, args.grants * 10, ["postgresql"]))
    print(
        f"bench.sync: provider {args.provider}; "
        "peak memory = growth of the worker's ru_maxrss during the sync",
        flush=True,
    )
    for identities, grants, dbs in runs:
        started = time.perf_counter()
        sim = simulator.spawn(identities=identities, grants=grants, events=2000)
        print(
            f"tenant: {identities} identities, {grants} grants per provider "
            f"(simulator up in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        try:
            for db in dbs:
                # The sync only reads the tenant: every database sees the same one.
                result = measure(db, args.database_url, sim, args.provider, f"{grants}")
                report(f"{db} ({grants} grants)", result)
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
