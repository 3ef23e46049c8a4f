"""Prometheus: /metrics is not public; requests, SQL, sync, revocation, ingest and the chain are counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.services import ingest_key_create
from audit.tasks import checkpoint
from connectors.models import Grant
from connectors.services import grant_revoke
from connectors.sync import sync_source
from tests.factories import GrantFactory
from tests.ops.conftest import METRICS_TOKEN, samples, value
from tests.simtools import make_source

pytestmark = pytest.mark.django_db


def test_metrics_are_refused_without_the_token_or_an_allowed_network(client, settings):
    settings.LANYARD_METRICS_TOKEN = ""
    settings.LANYARD_METRICS_ALLOWED_NETWORKS = []
    refused = client.get("/metrics")
    assert refused.status_code == 403
    assert b"LANYARD_METRICS_ALLOWED_NETWORKS" in refused.content
    assert b"lanyard_" not in refused.content

    settings.LANYARD_METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"] == 'Bearer realm="metrics"'
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain; version=")


def test_metrics_answer_an_allowed_network_and_refuse_others(client, settings):
    settings.LANYARD_METRICS_TOKEN = ""
    settings.LANYARD_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not-an-address").status_code == 403


def test_requests_and_sql_are_counted_by_route(client, scrape):
    before = scrape()
    client.get("/health/ready?format=json")
    after = scrape()
    route = {"method": "GET", "route": "health/ready", "status": "200"}
    assert (
        value(after, "lanyard_http_requests_total", **route)
        == value(before, "lanyard_http_requests_total", **route) + 1
    )
    assert value(after, "lanyard_db_queries_total", alias="default") > value(
        before, "lanyard_db_queries_total", alias="default"
    )


def test_a_sync_is_timed_and_its_rows_counted_per_source_and_outcome(sim, scrape):
    source = make_source(sim, "okta", name="Okta metrics")
    before = scrape()
    run = sync_source(source)
    assert run.outcome == "succeeded"
    after = scrape()
    labels = {"source_kind": "okta", "source": "Okta metrics", "outcome": "succeeded"}
    assert (
        value(after, "lanyard_sync_duration_seconds_count", **labels)
        == value(before, "lanyard_sync_duration_seconds_count", **labels) + 1
    )
    assert (
        value(after, "lanyard_sync_rows_total", kind="seen", **labels)
        - value(before, "lanyard_sync_rows_total", kind="seen", **labels)
        == run.seen
        > 0
    )
    age = value(after, "lanyard_sync_last_success_age_seconds", source_kind="okta", source="Okta metrics")
    assert 0 <= age < 60
    assert value(after, "lanyard_sync_interval_seconds", source_kind="okta", source="Okta metrics") == 3600


def test_revocations_are_counted_by_outcome_and_pending_ones_gauged(
    sim, scrape, iam, settings, django_capture_on_commit_callbacks
):
    settings.LANYARD_REVOKE_SWEEP_MINUTES = 5
    source = make_source(sim, "okta")
    sync_source(source)
    GrantFactory(revoking=True, revoke_requested_at=timezone.now() - timedelta(hours=1))
    before = scrape()
    assert value(before, "lanyard_revocations_pending", age="any") == 1
    assert value(before, "lanyard_revocations_pending", age="past_sweep") == 1
    grant = Grant.objects.filter(source=source, status=Grant.Status.ACTIVE).order_by("pk").first()
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="metrics test")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    after = scrape()
    assert (
        value(after, "lanyard_revocations_total", outcome="revoked")
        == value(before, "lanyard_revocations_total", outcome="revoked") + 1
    )


def test_ingested_events_and_rejected_batches_are_counted(client, scrape, iam):
    _, raw = ingest_key_create(name="metrics-gw", actor=iam)
    before = scrape()
    event = {
        "id": "evt-m1",
        "time": "2026-11-29T10:15:00Z",
        "actor": {"email": "x@example.com"},
        "connector": {"mcp_server_url": "https://mcp.example.com/sse"},
        "action": "tool_call",
        "outcome": "success",
    }
    ok = client.post(
        "/api/v1/events",
        data=json.dumps({"events": [event]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert ok.status_code == 200, ok.content
    bad = client.post(
        "/api/v1/events",
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert bad.status_code == 400
    assert client.post("/api/v1/events", data="[]", content_type="application/json").status_code == 401
    after = scrape()
    assert value(after, "lanyard_ingest_events_total") == value(before, "lanyard_ingest_events_total") + 1
    for status in ("400", "401"):
        assert (
            value(after, "lanyard_ingest_rejected_batches_total", status=status)
            == value(before, "lanyard_ingest_rejected_batches_total", status=status) + 1
        )


def test_chain_length_and_checkpoint_age_come_from_the_database(scrape):
    from audit.models import AuditChainHead

    checkpoint.delay()
    data = scrape()
    head = AuditChainHead.objects.values_list("sequence", flat=True).first() or 0
    assert value(data, "lanyard_audit_chain_length") == head
    assert 0 <= value(data, "lanyard_audit_checkpoint_age_seconds") < 60


def test_multiprocess_mode_sums_every_process(tmp_path):
    """Two worker processes count into PROMETHEUS_MULTIPROC_DIR; a third (the web) reports the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = textwrap.dedent(
        """
        from telemetry import metrics
        metrics.REVOCATIONS.labels("revoked").inc(3)
        metrics.TASKS.labels("connectors.revoke_grant_at_idp", "SUCCESS").inc()
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    scrape = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from telemetry import metrics; sys.stdout.write(metrics.exposition().decode())",
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    data = samples(scrape)
    assert value(data, "lanyard_revocations_total", outcome="revoked") == 6
    assert (
        value(data, "lanyard_celery_tasks_total", task="connectors.revoke_grant_at_idp", state="SUCCESS") == 2
    )


def test_cache_reads_are_hits_or_misses_and_writes_are_counted(scrape):
    from django.core.cache import cache
    from prometheus_client import REGISTRY

    def read(name, **labels):
        return REGISTRY.get_sample_value(name, {"backend": "locmem", **labels}) or 0.0

    names = [("lanyard_cache_gets_total", {"result": r}) for r in ("hit", "miss")] + [
        ("lanyard_cache_operations_total", {"operation": o}) for o in ("set", "delete")
    ]
    before = [read(n, **labels) for n, labels in names]
    cache.set("metrics-test-key", "v")
    assert cache.get("metrics-test-key") == "v"
    assert cache.get("metrics-test-absent") is None
    assert cache.get("metrics-test-absent", "fallback") == "fallback"
    assert cache.get_many(["metrics-test-key", "metrics-test-absent"]) == {"metrics-test-key": "v"}
    cache.delete("metrics-test-key")
    after = [read(n, **labels) for n, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 3, 1, 1]
    exposed = scrape()
    assert value(exposed, "lanyard_cache_gets_total", backend="locmem", result="hit") >= after[0]


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("redis://127.0.0.1:6379/0", "telemetry.cache.RedisCache"),
        ("filecache:///tmp/lanyard-cache", "telemetry.cache.FileBasedCache"),
        ("locmemcache://", "telemetry.cache.LocMemCache"),
        ("dbcache://cache_table", "telemetry.cache.DatabaseCache"),
        ("pymemcache://127.0.0.1:11211", "django.core.cache.backends.memcached.PyLibMCCache"),
    ],
)
def test_the_configured_cache_backend_is_its_counted_twin(url, backend):
    """Production's CACHE_URL picks the kind; settings swap in the counted backend of that kind."""
    script = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    env = {**os.environ, "CACHE_URL": url, "DJANGO_SETTINGS_MODULE": "lanyard.settings", "DEBUG": "true"}
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip().splitlines()[-1] == backend


@pytest.mark.services
def test_the_redis_backend_counts_each_key_of_a_many_call_once():
    """Redis implements get_many/set_many itself (one round trip): each key counts once, not twice."""
    from django.conf import settings as django_settings
    from prometheus_client import REGISTRY

    from telemetry.cache import RedisCache

    redis_url = django_settings.CELERY_BROKER_URL
    if not redis_url.startswith("redis://"):
        pytest.fail("CELERY_BROKER_URL is not Redis: the services pass needs it")
    cache = RedisCache(redis_url, {"KEY_PREFIX": "metrics-test"})

    def read(name, **labels):
        return REGISTRY.get_sample_value(name, {"backend": "redis", **labels}) or 0.0

    before = (read("lanyard_cache_gets_total", result="hit"), read("lanyard_cache_gets_total", result="miss"))
    sets = read("lanyard_cache_operations_total", operation="set")
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    cache.delete_many(["a", "b"])
    assert read("lanyard_cache_gets_total", result="hit") - before[0] == 2
    assert read("lanyard_cache_gets_total", result="miss") - before[1] == 1
    assert read("lanyard_cache_operations_total", operation="set") - sets == 2
