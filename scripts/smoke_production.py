"""`make smoke-production`: start the production recipe on this machine and walk a journey over HTTP.

PostgreSQL and Redis must answer (as in CI); nothing is skipped. Starts deploy/Procfile.production under
honcho (gunicorn with two workers, a worker on sync+default, a worker on revoke+mail, one redbeat
beat) against a throwaway database and a dedicated Redis database, with the simulated IdP tenant, then:

 1. /health/live and /health/ready answer 200;
 2. IAM logs in (allauth form, CSRF and session cookies as a browser does);
 3. beat's `sync_due_sources` and the sync worker sync every simulated source (seen on /ops/health/);
 4. IAM approves a pending request; the requester's email lands in the file mailbox (mail worker);
 5. IAM revokes an Okta grant from a connector page; the simulator no longer has it (revoke worker);
 6. a gateway posts an ingest batch with its key, then asks the decision point (AuthZEN) about the
    shadow MCP server the batch discovered: denied, with the reason;
 7. /metrics (bearer token) shows request, sync, revocation and ingest metrics from web and workers;
 8. the gateway (manage.py run_gateway) is ready (/readyz: database and the PDP), Lanyard's health page
    sees it ready, and its /metrics needs the token;
 9. everything is stopped with SIGTERM (gunicorn drains, Celery warm-shuts down) within 40 s.

Environment: SMOKE_POSTGRES (default postgres://postgres@127.0.0.1:5432), SMOKE_REDIS_URL (default
redis://127.0.0.1:6379/14: flushed before and after); SMOKE_KEEP=1 keeps the logs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[smoke {time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (httpx.HTTPError, ValueError, OSError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(step)
    fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not match:
        fail(f"no CSRF token on {path} ({page.status_code})")
    return match.group(1)


def main() -> None:
    pg_base = os.environ.get("SMOKE_POSTGRES", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    redis_url = os.environ.get("SMOKE_REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        admin = psycopg.connect(f"{pg_base}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        fail(f"PostgreSQL unreachable at {pg_base}: {exc}")
    try:
        r = redis.Redis.from_url(redis_url, socket_timeout=5)
        r.ping()
    except redis.RedisError as exc:
        fail(f"Redis unreachable at {redis_url}: {exc}")
    r.flushdb()
    db = f"lanyard_smoke_{os.getpid()}"
    admin.execute(f'CREATE DATABASE "{db}"')
    tmp = Path(tempfile.mkdtemp(prefix="lanyard-smoke-"))
    procs: list[subprocess.Popen] = []
    try:
        run(tmp, db, pg_base, redis_url, procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        r.flushdb()
        if not os.environ.get("SMOKE_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"kept the processes' logs in {tmp}")


def run(tmp: Path, db: str, pg_base: str, redis_url: str, procs: list[subprocess.Popen]) -> None:
    web_port, sim_port, gateway_port = free_port(), free_port(), free_port()
    web, sim_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    key_file = tmp / "audit-signing-key.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    metrics_token = secrets.token_urlsafe(24)
    (tmp / "metrics").mkdir()
    mailbox = tmp / "mail"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))},
        "DJANGO_SETTINGS_MODULE": "lanyard.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LANYARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "LANYARD_AUDIT_SIGNING_KEY_FILE": str(key_file),
        "DATABASE_URL": f"{pg_base}/{db}",
        "CELERY_BROKER_URL": redis_url,
        "CACHE_URL": redis_url,
        "EMAIL_URL": f"filemail://{mailbox}",
        "LANYARD_VAR_DIR": str(tmp / "var"),
        "STATIC_ROOT": str(tmp / "static"),
        "LANYARD_BASE_URL": web,
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on the loopback: no TLS proxy in front of gunicorn here.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "LANYARD_METRICS_TOKEN": metrics_token,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "GUNICORN_BIND": f"127.0.0.1:{web_port}",
        "WEB_CONCURRENCY": "2",
        "SYNC_CONCURRENCY": "1",
        "REVOKE_CONCURRENCY": "1",
        "LANYARD_HEARTBEAT_SECONDS": "5",
        "CELERY_REDBEAT_KEY_PREFIX": f"lanyard:smoke-{os.getpid()}:",
        "PYTHONUNBUFFERED": "1",
        "LANYARD_GATEWAY_PORT": str(gateway_port),
        "LANYARD_GATEWAY_URL": gateway,
        "LANYARD_PDP_URL": web,
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            fail(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    say("migrate and collectstatic (a fresh PostgreSQL database)")
    manage("migrate", "--no-input")
    manage("collectstatic", "--no-input")
    sim_log = (tmp / "simulator.log").open("w")
    sim = subprocess.Popen(
        [PY, "-m", "simulator", "--port", str(sim_port), "--identities", "24", "--grants", "40"],
        cwd=ROOT,
        env=env,
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(sim)
    wait_for(lambda: httpx.get(f"{sim_url}/_sim/state", timeout=2).status_code == 200, 60, "the simulator")
    manage("setup_simulator_sources", "--url", sim_url)
    manage("seed_demo", "--identities", "80")
    raw_key = (
        manage(
            "shell",
            "-c",
            "from audit.services import ingest_key_create; from governance.models import User;"
            "iam = User.objects.get(email='iam@lanyard.demo');"
            "print(ingest_key_create(name='smoke gateway', actor=iam,"
            " scopes=['events:write', 'access:evaluate'])[1])",
        )
        .strip()
        .splitlines()[-1]
    )

    env["LANYARD_PDP_KEY"] = (
        manage("pep_key", "create", "Lanyard gateway", "--no-devices", "--scope", "evaluate", "--quiet")
        .strip()
        .splitlines()[-1]
    )
    # One connector served through the gateway, so Lanyard's own check on the gateway is live.
    manage(
        "shell",
        "-c",
        "from connectors.models import Connector; from gateway.models import Endpoint;"
        "c = Connector.objects.order_by('pk').first();"
        "Endpoint.objects.create(connector=c, slug='smoke-wiki', upstream_url='http://127.0.0.1:9/mcp')",
    )

    say(
        "start deploy/Procfile.production under honcho "
        "(gunicorn x2, sync and revoke workers, one beat, the gateway)"
    )
    log = (tmp / "honcho.log").open("w")
    honcho = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "honcho"),
            "-f",
            "deploy/Procfile.production",
            "-d",
            str(ROOT),
            "start",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(honcho)
    try:
        journey(web, sim_url, raw_key, metrics_token, mailbox)
        gateway_journey(web, gateway, metrics_token)
    except SystemExit:
        print((tmp / "honcho.log").read_text()[-6000:], file=sys.stderr)
        raise

    say("SIGTERM to honcho: gunicorn drains, Celery warm-shuts down, beat releases its lock")
    os.killpg(honcho.pid, signal.SIGTERM)
    try:
        honcho.wait(40)
    except subprocess.TimeoutExpired:
        fail("the recipe did not stop within 40 s of SIGTERM")
    text = (tmp / "honcho.log").read_text()
    for needle in ("Handling signal: term", "beat: Releasing lock"):
        if needle not in text:
            fail(f"no '{needle}' in the processes' log on shutdown")
    # Correlation: the revoke worker's lines carry the task id and the id of the web request that
    # queued the task; the sync worker's carry the sync run id.
    correlated = {"revoke": False, "sync": False}
    for line in text.splitlines():
        name, _, payload = line.partition("| ")
        if not payload.startswith("{"):
            continue
        try:
            record = json.loads(payload)
        except ValueError:
            continue
        if "worker-revoke" in name and record.get("task_id") and record.get("request_id"):
            correlated["revoke"] = True
        if "worker-sync" in name and record.get("sync_run_id") and record.get("task_id"):
            correlated["sync"] = True
    if not all(correlated.values()):
        fail(f"worker log lines lack correlation ids: {correlated}")
    if metrics_token in text or raw_key in text or env["LANYARD_PDP_KEY"] in text:
        fail("a credential appears in the processes' log")
    os.killpg(sim.pid, signal.SIGTERM)
    sim.wait(10)
    say(
        "PASS: the production recipe ran the journey and stopped cleanly "
        f"in {time.monotonic() - STARTED:.0f} s"
    )


def journey(web: str, sim_url: str, raw_key: str, metrics_token: str, mailbox: Path) -> None:
    client = httpx.Client(base_url=web, timeout=20, follow_redirects=True)
    wait_for(lambda: client.get("/health/live").status_code == 200, 60, "gunicorn")
    ready = wait_for(
        lambda: (resp := client.get("/health/ready?format=json")).status_code == 200 and resp.json(),
        60,
        "/health/ready",
    )
    say(f"/health/ready: {', '.join(c['check'] + ' ' + c['message'] for c in ready['checks'])}")

    token = csrf(client, "/accounts/login/")
    login = client.post(
        "/accounts/login/",
        data={"login": "iam@lanyard.demo", "password": "lanyard-demo-2026", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{web}/accounts/login/"},
    )
    if "Sign out" not in login.text:
        fail(f"IAM could not log in ({login.status_code} at {login.url})")
    say("IAM logged in")

    def synced():
        checks = {c["check"]: c for c in client.get("/ops/health/?format=json").json()["checks"]}
        return checks["SyncFreshness"]["ok"] and checks["BeatAlive"]["ok"] and checks

    checks = wait_for(synced, 100, "beat and the sync worker to sync every simulated source", step=2)
    say("beat scheduled and the sync worker synced every source; beat heartbeat fresh")
    not_ok = {k: v["message"] for k, v in checks.items() if not v["ok"]}
    if set(not_ok) - {"CheckpointAge"}:
        fail(f"health checks failing after the sync: {not_ok}")

    inbox = client.get("/inbox/").text
    pending = re.findall(r'href="/requests/(\d+)/"', inbox)
    if not pending:
        fail("no request awaits IAM in the inbox")
    pk = pending[0]
    earlier = set(mailbox.glob("*.log"))  # the seed's emails (launch, new requests) are already there
    page = client.get(f"/requests/{pk}/").text
    step = "iam" if 'name="step" value="iam"' in page else "owner"
    decided = client.post(
        f"/requests/{pk}/decide/",
        data={
            "step": step,
            "decision": "approve",
            "reason": "smoke",
            "csrfmiddlewaretoken": csrf(client, f"/requests/{pk}/"),
        },
        headers={"Referer": f"{web}/requests/{pk}/"},
    )
    if decided.status_code != 200 or "approved" not in decided.text:
        fail(f"approving request {pk} failed ({decided.status_code})")
    say(f"IAM approved request {pk} ({step} step)")

    def mailed():
        new = set(mailbox.glob("*.log")) - earlier
        return [
            p
            for p in new
            if f"/requests/{pk}/" in (text := p.read_text(errors="replace")) and "was approved by" in text
        ]

    wait_for(mailed, 30, "the decision email in the file mailbox")
    time.sleep(1.5)
    if len(mailed()) != 1:
        fail(f"the decision email arrived {len(mailed())} times")
    say("the requester's email arrived in the file mailbox (mail worker)")

    okta_before = httpx.get(f"{sim_url}/_sim/state").json()["providers"]["okta"]["grants"]
    shadow = client.get("/connectors/shadow/").text
    grant_pk = None
    for connector in dict.fromkeys(re.findall(r'href="/connectors/(\d+)/"', shadow)):
        page = client.get(f"/connectors/{connector}/").text
        for row in re.findall(r"<tr.*?</tr>", page, flags=re.S):
            match = re.search(r'data-test="revoke-grant-(\d+)"', row)
            if match and "Okta" in row:
                grant_pk = match.group(1)
                break
        if grant_pk:
            break
    if grant_pk is None:
        fail("no revocable Okta grant on any shadow connector's page")
    revoked = client.post(
        f"/grants/{grant_pk}/revoke/",
        data={"reason": "smoke", "csrfmiddlewaretoken": csrf(client, f"/connectors/{connector}/")},
        headers={"Referer": f"{web}/connectors/{connector}/"},
    )
    if revoked.status_code != 200:
        fail(f"revoking grant {grant_pk} failed ({revoked.status_code})")
    wait_for(
        lambda: httpx.get(f"{sim_url}/_sim/state").json()["providers"]["okta"]["grants"] == okta_before - 1,
        30,
        "the grant to be gone at the simulated Okta",
    )
    say(f"IAM revoked grant {grant_pk}; the revoke worker removed it at the simulated Okta")

    event = {
        "id": "smoke-1",
        "time": "2026-11-29T10:15:00Z",
        "actor": {"email": "employee@lanyard.demo"},
        "connector": {"mcp_server_url": "https://mcp.smoke.example/sse"},
        "action": "tool_call",
        "outcome": "success",
    }
    ingest = httpx.post(
        f"{web}/api/v1/events", json={"events": [event]}, headers={"Authorization": f"Bearer {raw_key}"}
    )
    if ingest.status_code != 200 or ingest.json().get("accepted") != 1:
        fail(f"ingest refused the batch: {ingest.status_code} {ingest.text[:300]}")
    say("a gateway's ingest batch was accepted")

    question = {
        "subject": {"type": "identity", "id": "employee@lanyard.demo", "properties": {"device": "none"}},
        "action": {"name": "tools/call"},
        "resource": {"type": "mcp_server", "id": "https://mcp.smoke.example/sse"},
    }
    answer = httpx.post(
        f"{web}/access/v1/evaluation",
        json=question,
        headers={"Authorization": f"Bearer {raw_key}", "X-Request-ID": "smoke-pdp"},
    )
    if answer.status_code != 200 or answer.headers.get("X-Request-ID") != "smoke-pdp":
        fail(f"the decision point answered {answer.status_code}: {answer.text[:300]}")
    body = answer.json()
    if body["decision"] is not False or "shadow" not in body["context"].get("reason", ""):
        fail(f"the decision point permitted a shadow MCP server, or gave no reason: {body}")
    say(f"the decision point denied the shadow MCP server: {body['context']['reason']}")

    if httpx.get(f"{web}/metrics").status_code not in (401, 403):
        fail("/metrics answered without the token")
    text = httpx.get(f"{web}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}).text
    for needle in (
        'lanyard_http_requests_total{method="GET",route="health/ready",status="200"}',
        'lanyard_sync_duration_seconds_count{outcome="succeeded",source="',
        'lanyard_revocations_total{outcome="revoked"}',
        "lanyard_ingest_events_total 1.0",
        'lanyard_pdp_decisions_total{outcome="deny"} 1.0',
        'lanyard_celery_tasks_total{state="SUCCESS",task="connectors.sync_source"}',
        "lanyard_audit_chain_length",
        'lanyard_revocations_pending{age="any"} 0.0',
    ):
        if needle not in text:
            fail(f"/metrics lacks {needle}")
    say("/metrics shows web and worker metrics (multiprocess mode)")
    final = client.get("/health/ready?format=json")
    if final.status_code != 200:
        fail(f"/health/ready after the journey: {final.text}")


def gateway_journey(web: str, gateway: str, metrics_token: str) -> None:
    """The gateway process of the recipe: ready (database and PDP), checked by Lanyard, metrics served."""
    ready = wait_for(
        lambda: (resp := httpx.get(f"{gateway}/readyz", timeout=5)).status_code == 200 and resp.json(),
        60,
        "the gateway's /readyz",
    )
    say(f"gateway /readyz: {ready['checks']}")
    client = httpx.Client(base_url=web, timeout=20, follow_redirects=True)
    token = csrf(client, "/accounts/login/")
    client.post(
        "/accounts/login/",
        data={"login": "iam@lanyard.demo", "password": "lanyard-demo-2026", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{web}/accounts/login/"},
    )
    checks = {c["check"]: c for c in client.get("/ops/health/?format=json").json()["checks"]}
    if not checks.get("GatewayReady", {}).get("ok"):
        fail(f"Lanyard's check on its gateway failed: {checks.get('GatewayReady')}")
    say("Lanyard's health page sees the gateway ready")
    if httpx.get(f"{gateway}/metrics").status_code != 401:
        fail("the gateway's /metrics answered without the token")
    text = httpx.get(f"{gateway}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}).text
    # Multiprocess mode: the gateway writes into the same directory, so any process reports all of them.
    if 'lanyard_http_requests_total{method="GET",route="health/ready"' not in text:
        fail("the gateway's /metrics does not show the shared (multiprocess) metrics")
    say("the gateway's /metrics answers with the token, with every process's metrics")


if __name__ == "__main__":
    main()
