"""Health: the load balancers' probes, Lanyard's own checks on the IAM page, and the check registry."""

from __future__ import annotations

import dataclasses
import socket
from datetime import timedelta

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from audit.tasks import checkpoint
from lanyard.celery import app, heartbeat
from telemetry import health
from tests.factories import GrantFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db


def _checks(response) -> dict[str, dict]:
    return {c["check"]: c for c in response.json()["checks"]}


@pytest.fixture
def all_well():
    """Beat ran its heartbeat and a checkpoint was signed a moment ago."""
    heartbeat.delay()
    checkpoint.delay()


def test_liveness_answers_anyone_without_consulting_dependencies(client):
    response = client.get("/health/live", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": []}
    assert "no-cache" in response["Cache-Control"]


def test_readiness_checks_database_cache_broker_and_migrations(client):
    response = client.get("/health/ready?format=json")
    assert response.status_code == 200, response.content
    checks = _checks(response)
    assert set(checks) == {"Database", "Cache", "Broker", "Migrations"}
    assert all(c["ok"] for c in checks.values())


def test_readiness_fails_when_the_broker_is_down_and_does_not_name_its_url(client):
    # Celery copies the broker URL into broker_write_url once its configuration is read: set both.
    previous = app.conf.broker_url, app.conf.broker_write_url
    app.conf.broker_url = app.conf.broker_write_url = "redis://:hunter2-broker-pw@127.0.0.1:1/0"
    try:
        response = client.get("/health/ready?format=json")
    finally:
        app.conf.broker_url, app.conf.broker_write_url = previous
    assert response.status_code == 500
    broker = _checks(response)["Broker"]
    assert not broker["ok"]
    assert "start Redis or fix CELERY_BROKER_URL" in broker["message"]
    assert b"hunter2" not in response.content


def test_readiness_fails_while_a_migration_is_not_applied(client):
    MigrationRecorder.Migration.objects.filter(app="audit").order_by("-name").first().delete()
    response = client.get("/health/ready?format=json")
    assert response.status_code == 500
    message = _checks(response)["Migrations"]["message"]
    assert "1 migration(s) not applied (audit." in message
    assert "manage.py migrate" in message


def test_the_operations_page_is_for_iam_staff_only(client, outsider, owner):
    assert client.get("/ops/health/").status_code == 302  # to the login page
    for person in (outsider, owner):
        client.force_login(person)
        assert client.get("/ops/health/").status_code == 403
        assert client.get("/ops/health/?format=json").status_code == 403


def test_iam_sees_every_check_on_the_page_and_as_json(client, iam, all_well):
    IdentitySourceFactory(name="Okta prod", last_success_at=timezone.now())
    client.force_login(iam)
    page = client.get("/ops/health/")
    assert page.status_code == 200, page.content
    html = page.content.decode()
    assert "All checks pass." in html
    for title in (
        "Identity-source syncs on time",
        "Revocations completing",
        "Audit checkpoint age",
        "Beat alive (heartbeat)",
        "Pending email",
        "Migrations applied",
    ):
        assert title in html
    checks = _checks(client.get("/ops/health/?format=json"))
    assert {
        "Database",
        "Cache",
        "Broker",
        "Migrations",
        "BeatAlive",
        "SyncFreshness",
        "RevocationsFlowing",
        "CheckpointAge",
        "PendingEmail",
    } <= set(checks)
    assert all(c["ok"] for c in checks.values()), checks


def test_a_source_late_on_its_interval_is_named_with_what_to_do(client, iam, all_well):
    IdentitySourceFactory(name="Fresh", last_success_at=timezone.now() - timedelta(minutes=30))
    IdentitySourceFactory(
        name="Entra prod",
        sync_interval=timedelta(hours=1),
        last_success_at=timezone.now() - timedelta(hours=5),
    )
    IdentitySourceFactory(name="Never", last_success_at=None)
    IdentitySourceFactory(name="Off", enabled=False, last_success_at=None)
    client.force_login(iam)
    response = client.get("/ops/health/?format=json")
    assert response.status_code == 500
    sync = _checks(response)["SyncFreshness"]
    assert sync["severity"] == "unavailable"
    assert "'Entra prod' last synced successfully 5 h ago (interval 60 min)" in sync["message"]
    assert "'Never' has never synced successfully" in sync["message"]
    assert "Fresh" not in sync["message"] and "Off" not in sync["message"]
    assert "`sync` queue" in sync["message"]


def test_revocations_left_revoking_past_the_sweep_period_are_a_warning(client, iam, all_well, settings):
    settings.LANYARD_REVOKE_SWEEP_MINUTES = 5
    now = timezone.now()
    GrantFactory(revoking=True, revoke_requested_at=now - timedelta(minutes=1))
    GrantFactory(
        revoking=True, revoke_requested_at=now - timedelta(minutes=50), revoke_error="HTTP 503 from Okta"
    )
    GrantFactory(revoking=True, revoke_requested_at=now - timedelta(minutes=20))
    client.force_login(iam)
    check = _checks(client.get("/ops/health/?format=json"))["RevocationsFlowing"]
    assert check["severity"] == "warning"
    assert check["message"].startswith("2 grant(s) still revoking after the 5 min sweep period")
    assert "the oldest for 50 min (last IdP error: HTTP 503 from Okta)" in check["message"]
    assert "`revoke` queue" in check["message"]


def test_checkpoints_late_or_missing_fail(client, iam, settings):
    heartbeat.delay()
    client.force_login(iam)
    missing = _checks(client.get("/ops/health/?format=json"))["CheckpointAge"]
    assert "No audit checkpoint was ever signed" in missing["message"]
    checkpoint.delay()
    assert _checks(client.get("/ops/health/?format=json"))["CheckpointAge"]["ok"]
    settings.LANYARD_AUDIT_CHECKPOINT_MINUTES = 60
    later = timezone.now() + timedelta(hours=3)
    from unittest import mock

    with mock.patch("django.utils.timezone.now", return_value=later):
        late = _checks(client.get("/ops/health/?format=json"))["CheckpointAge"]
    assert late["message"].startswith("Last audit checkpoint 3 h ago (due every 60 min)")


def test_beat_alive_follows_the_heartbeat(client, iam, settings):
    from django.core.cache import cache

    cache.delete(health.HEARTBEAT_KEY)
    client.force_login(iam)
    never = _checks(client.get("/ops/health/?format=json"))["BeatAlive"]
    assert "No heartbeat was ever recorded" in never["message"]
    settings.LANYARD_HEARTBEAT_SECONDS = 60
    health.heartbeat_record(timezone.now() - timedelta(minutes=10))
    stale = _checks(client.get("/ops/health/?format=json"))["BeatAlive"]
    assert stale["message"].startswith("Last heartbeat 10 min ago (expected every 60 s)")
    heartbeat.delay()
    assert _checks(client.get("/ops/health/?format=json"))["BeatAlive"]["ok"]


def test_a_mail_backlog_is_a_warning(client, iam, all_well, monkeypatch, settings):
    settings.LANYARD_HEALTH_MAIL_BACKLOG = 100
    monkeypatch.setattr("governance.health.mail_queue_depth", lambda: 250)
    client.force_login(iam)
    check = _checks(client.get("/ops/health/?format=json"))["PendingEmail"]
    assert check["severity"] == "warning"
    assert check["message"].startswith("250 emails wait in the `mail` queue (threshold 100)")


def test_an_app_adds_a_check_by_registering_it(client, iam, all_well):
    @dataclasses.dataclass
    class GatewayReachable(health.HealthCheck):
        title = "Gateway reachable"

        def run(self) -> None:
            raise health.ServiceUnavailable(
                "The gateway does not answer on 127.0.0.1:8901: start run_gateway."
            )

    health.register(GatewayReachable)
    try:
        client.force_login(iam)
        response = client.get("/ops/health/")
        assert response.status_code == 500
        assert "Gateway reachable" in response.content.decode()
        assert "start run_gateway" in response.content.decode()
        assert "GatewayReachable" not in {
            c for c, _ in [(k.__name__, o) for k, o in health.registered("ready")]
        }
    finally:
        health._registry[health.LANYARD].pop(f"{GatewayReachable.__module__}.{GatewayReachable.__qualname__}")


def test_the_gateway_is_checked_once_connectors_are_served_through_it(client, iam, all_well, settings):
    from gateway.models import Endpoint
    from tests.factories import ConnectorFactory

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        settings.LANYARD_GATEWAY_URL = f"http://127.0.0.1:{s.getsockname()[1]}"
    client.force_login(iam)
    assert _checks(client.get("/ops/health/?format=json"))["GatewayReady"]["ok"]  # nothing served yet

    Endpoint.objects.create(connector=ConnectorFactory(), slug="wiki", upstream_url="http://127.0.0.1:9/mcp")
    check = _checks(client.get("/ops/health/?format=json"))["GatewayReady"]
    assert check["severity"] == "unavailable"
    assert check["message"].startswith(
        f"The MCP gateway does not answer at {settings.LANYARD_GATEWAY_URL}/readyz"
    )
    assert "1 connector(s) are served through it" in check["message"]
    assert "run_gateway" in check["message"]
