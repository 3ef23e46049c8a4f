"""MCP gateway benchmark on a throwaway PostgreSQL database: ``python -m bench.gateway``.

Real processes on 127.0.0.1, as in production:

- the upstream: the SDK's ``MCPServer`` (``gateway.demo_upstream``, the team wiki) under uvicorn, checking
  the credential only the gateway holds;
- the decision point: Lanyard's web (gunicorn, ``--pdp-workers`` sync workers), asked by the gateway
  over HTTP with its PEP key (AuthZEN ``/access/v1/evaluation``), on the same database;
- the gateway: ``manage.py run_gateway`` (one uvicorn process), its events flushed to the audit chain.

Measured in one run with the SDK's own client (``ClientSession`` over Streamable HTTP, one session per
client, initialised once):

1. ``tools/call`` latency, sequential, straight to the upstream and through the gateway; the added
   latency is the difference of the percentiles (p50, p99). Target: ≤ 5 ms p50, ≤ 20 ms p99.
2. calls/s through the one gateway process with ``--clients`` concurrent sessions. Target: ≥ 500/s.
3. SIGTERM under load: while clients keep calling, the gateway gets SIGTERM; every call a client saw
   succeed must be on the audit chain (``gateway.tool_call`` events) once the process has exited.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.audit import _admin_connection  # noqa: E402

UPSTREAM_KEY = "bench-upstream-key-" + secrets.token_hex(8)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls for the latency")
    parser.add_argument("--clients", type=int, default=16, help="concurrent sessions for the throughput")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--pdp-workers", type=int, default=2, help="gunicorn workers of the PDP")
    parser.add_argument(
        "--cache-seconds", type=float, default=1.0, help="the gateway's LANYARD_GATEWAY_CACHE_SECONDS"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(db_url: str, ports: dict[str, int]) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))},
        "DJANGO_SETTINGS_MODULE": "lanyard.settings",
        "DEBUG": "false",
        "DATABASE_URL": db_url,
        "SECRET_KEY": "bench-" + secrets.token_hex(24),
        "LANYARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LANYARD_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CACHE_URL": "locmemcache://",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LANYARD_BASE_URL": f"http://127.0.0.1:{ports['web']}",
        "LANYARD_PDP_URL": f"http://127.0.0.1:{ports['web']}",
        "LANYARD_GATEWAY_PORT": str(ports["gateway"]),
        "LANYARD_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def _setup(env: dict[str, str]) -> str:
    """Migrate, register the connector and its endpoint, mint a gateway token; return the raw token."""
    os.environ.update(env)
    import django

    django.setup()
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    from audit.models import IngestKey
    from audit.services import ingest_key_create
    from connectors.models import Connector, Identity, Risk
    from gateway.models import Endpoint
    from gateway.services import endpoint_url, gateway_grant_record
    from governance.models import User

    call_command("migrate", verbosity=0)
    owner = User.objects.create_user("owner@bench.example", "owner@bench.example", secrets.token_hex(8))
    person = User.objects.create_user("ann@bench.example", "ann@bench.example", secrets.token_hex(8))
    Identity.objects.create(email=person.email, external_id="ann", user=person)
    connector = Connector.objects.create(
        name="Team Wiki MCP",
        kind=Connector.Kind.MCP_SERVER,
        status=Connector.Status.ACTIVE,
        business_owner=owner,
        risk=Risk.LOW,
    )
    endpoint = Endpoint.objects.create(
        connector=connector, slug="team-wiki", upstream_url=f"http://127.0.0.1:{env['UPSTREAM_PORT']}/mcp"
    )
    endpoint.set_credentials({"headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"}})
    endpoint.save()
    app = get_application_model().objects.create(
        name="Bench MCP client",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1/callback",
    )
    raw = secrets.token_urlsafe(32)
    token = get_access_token_model().objects.create(
        user=person,
        application=app,
        token=raw,
        scope="mcp",
        expires=timezone.now() + timedelta(hours=2),
        resource=[endpoint_url("team-wiki")],
    )
    if gateway_grant_record(token=token) is None:
        raise SystemExit("the gateway token was not recorded as a grant")
    _key, env["LANYARD_PDP_KEY"] = ingest_key_create(
        name="Bench gateway", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE], reports_devices=False
    )
    return raw


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait(url: str, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


@contextlib.asynccontextmanager
async def _session(url: str, token: str):
    """One SDK client session (Streamable HTTP), initialised."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def _latency(url: str, token: str, calls: int) -> list[float]:
    async with _session(url, token) as session:
        for _ in range(20):  # warm the connections and both processes
            await session.call_tool("search", {"query": "expenses"})
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            result = await session.call_tool("search", {"query": "expenses"})
            times.append((time.perf_counter() - start) * 1000)
            if result.is_error:
                raise SystemExit(f"the call failed: {result.content}")
        return times


async def _load(url: str, token: str, clients: int, seconds: float, stop: asyncio.Event | None = None):
    """Run ``clients`` sessions calling until ``seconds`` pass (or ``stop``); return (ok, failed)."""
    import anyio

    deadline = time.monotonic() + seconds
    counts = {"ok": 0, "failed": 0}

    async def calls(session) -> None:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            try:
                with anyio.fail_after(10):
                    result = await session.call_tool("search", {"query": "load"})
            except Exception:
                counts["failed"] += 1
                if stop is not None:
                    return
                continue
            counts["ok" if not result.is_error else "failed"] += 1

    async def one() -> None:
        # A session whose server went away (the SIGTERM run) ends in the SDK's task group: a refused
        # or cut call, counted as failed, never a success.
        try:
            async with _session(url, token) as session:
                await calls(session)
        except (Exception, BaseExceptionGroup, asyncio.CancelledError):
            counts["failed"] += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return counts["ok"], counts["failed"]


def _recorded() -> int:
    from django.db import close_old_connections

    from audit.models import AuditEvent

    close_old_connections()
    return AuditEvent.objects.filter(action="ai.gateway.tool_call", outcome="success").count()


def _run(args: argparse.Namespace, db_url: str, tmp: Path) -> None:
    ports = {"web": _free_port(), "gateway": _free_port(), "upstream": _free_port()}
    env = _environment(db_url, ports)
    env["UPSTREAM_PORT"] = str(ports["upstream"])
    env["LANYARD_GATEWAY_CACHE_SECONDS"] = str(args.cache_seconds)
    token = _setup(env)
    from django.db import connection

    print(
        f"PostgreSQL {connection.cursor().connection.info.server_version}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}, "
        f"LANYARD_GATEWAY_CACHE_SECONDS={args.cache_seconds:g}"
    )
    py = sys.executable
    procs = []
    try:
        upstream_log, web_log, gateway_log = tmp / "upstream.log", tmp / "web.log", tmp / "gateway.log"
        upstream = _start(
            [
                py,
                "-c",
                "import sys, uvicorn; from gateway.demo_upstream import build_app;"
                f"uvicorn.run(build_app({UPSTREAM_KEY!r}), host='127.0.0.1', port={ports['upstream']},"
                " log_level='warning')",
            ],
            env,
            upstream_log,
        )
        procs.append(upstream)
        web = _start(
            [
                str(Path(py).parent / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "lanyard.wsgi",
                "--bind",
                f"127.0.0.1:{ports['web']}",
                "--workers",
                str(args.pdp_workers),
                "--access-logfile",
                "/dev/null",
            ],
            env,
            web_log,
        )
        procs.append(web)
        gateway = _start([py, "manage.py", "run_gateway", "--port", str(ports["gateway"])], env, gateway_log)
        procs.append(gateway)
        _wait(f"http://127.0.0.1:{ports['upstream']}/mcp", "the upstream", upstream, upstream_log)
        _wait(f"http://127.0.0.1:{ports['web']}/health/live", "the PDP (gunicorn)", web, web_log)
        _wait(f"http://127.0.0.1:{ports['gateway']}/readyz", "the gateway", gateway, gateway_log)

        direct_url = f"http://127.0.0.1:{ports['upstream']}/mcp"
        gateway_url = f"http://127.0.0.1:{ports['gateway']}/mcp/team-wiki"
        direct = asyncio.run(_latency(direct_url, UPSTREAM_KEY, args.calls))
        through = asyncio.run(_latency(gateway_url, token, args.calls))
        print(f"\n1. tools/call latency, {args.calls} sequential calls, one SDK client session each")
        print(f"   {'':24} {'p50':>8} {'p99':>8} {'mean':>8}")
        for name, t in (("straight to the upstream", direct), ("through the gateway", through)):
            print(f"   {name:24} {_pct(t, 0.5):7.2f}ms {_pct(t, 0.99):7.2f}ms {statistics.mean(t):7.2f}ms")
        print(
            f"   added by the gateway: p50 {_pct(through, 0.5) - _pct(direct, 0.5):.2f} ms (target ≤ 5), "
            f"p99 {_pct(through, 0.99) - _pct(direct, 0.99):.2f} ms (target ≤ 20)"
        )

        start = time.perf_counter()
        ok, failed = asyncio.run(_load(gateway_url, token, args.clients, args.seconds))
        elapsed = time.perf_counter() - start
        print(f"\n2. throughput: {args.clients} sessions, {args.seconds:.0f} s, one gateway process")
        print(f"   {ok / elapsed:,.0f} calls/s through the gateway ({ok} ok, {failed} failed; target ≥ 500)")
        start = time.perf_counter()
        d_ok, _ = asyncio.run(_load(direct_url, UPSTREAM_KEY, args.clients, min(args.seconds, 5)))
        print(
            f"   raw baseline: {d_ok / (time.perf_counter() - start):,.0f} calls/s straight to the upstream"
        )

        time.sleep(2 * float(os.environ.get("LANYARD_GATEWAY_FLUSH_SECONDS", "0.5")) + 1)
        before = _recorded()

        async def sigterm_under_load() -> tuple[int, int]:
            stop = asyncio.Event()
            load = asyncio.ensure_future(_load(gateway_url, token, args.clients, 60, stop))
            await asyncio.sleep(2)
            os.kill(gateway.pid, signal.SIGTERM)
            while gateway.poll() is None:
                await asyncio.sleep(0.05)
            stop.set()
            return await load

        ok, failed = asyncio.run(sigterm_under_load())
        exit_code = gateway.returncode
        recorded = _recorded() - before
        print(f"\n3. SIGTERM under load ({args.clients} sessions): the gateway exited with {exit_code}")
        print(f"   calls answered as successes: {ok}; refused or cut once it stopped: {failed}")
        print(
            f"   gateway.tool_call events on the chain for them: {recorded} "
            + ("(nothing lost)" if recorded >= ok else f"({ok - recorded} LOST)")
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    import tempfile

    args = _args()
    admin = _admin_connection(args.server)
    name = f"lanyard_bench_gateway_{os.getpid()}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = args.server.rsplit("/", 1)[0]
    tmp = Path(tempfile.mkdtemp(prefix="lanyard-bench-gateway-"))
    try:
        _run(args, f"{base}/{name}", tmp)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"\nprocess logs in {tmp}")


if __name__ == "__main__":
    main()
