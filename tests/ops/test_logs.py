"""Structured logs: JSON lines with request, user, task and sync-run ids; never a credential."""

from __future__ import annotations

import json

import pytest
import structlog
from django.conf import settings as django_settings
from django.core import mail

from audit.services import ingest_key_create
from connectors.models import Grant
from connectors.services import grant_revoke
from connectors.sync import sync_source
from telemetry.logs import logging_config
from tests.conftest import enrol_totp
from tests.factories import UserFactory
from tests.ops.conftest import METRICS_TOKEN
from tests.simtools import make_source

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-77"


def test_request_lines_carry_request_id_and_user_and_hide_query_strings(client, iam, log_lines):
    client.force_login(iam)
    client.get("/ops/health/?format=json&token=abc123-secret-token")
    lines = [line for line in log_lines() if line.get("logger", "").startswith("django_structlog")]
    finished = next(line for line in lines if line["event"] == "request_finished")
    assert finished["user_id"] == iam.pk
    assert finished["request_id"]
    assert finished["request"] == "GET /ops/health/?[redacted]"
    assert all("abc123-secret-token" not in json.dumps(line) for line in log_lines())


def test_a_sync_binds_its_run_id_to_every_line(sim, log_lines, settings):
    source = make_source(sim, "github", name="GitHub logs")
    run = sync_source(source)
    lines = [line for line in log_lines() if line.get("sync_run_id") == run.pk]
    assert any(line["event"].startswith("sync succeeded in ") for line in lines), lines
    assert all(line["source"] == "GitHub logs" for line in lines)
    assert not any(line.get("sync_run_id") for line in log_lines() if line not in lines)


def test_production_logs_are_json_and_the_demo_readable():
    assert django_settings.LANYARD_LOG_FORMAT in ("json", "console")
    json_fmt = logging_config("json", "INFO")["formatters"]["structured"]["processors"][-1]
    console = logging_config("console", "INFO")["formatters"]["structured"]["processors"][-1]
    assert isinstance(json_fmt, structlog.processors.JSONRenderer)
    assert isinstance(console, structlog.dev.ConsoleRenderer)


def _secrets(sim) -> list[str]:
    found = [django_settings.SECRET_KEY, *django_settings.LANYARD_ENCRYPTION_KEYS, PASSWORD, METRICS_TOKEN]
    for spec in sim.credentials().values():
        for key, value in spec["credentials"].items():
            if not isinstance(value, str) or value.startswith("http") or len(value) < 16:
                continue
            if any(word in key for word in ("secret", "token", "key", "password")):
                if "PRIVATE KEY" in value:
                    found.extend(line for line in value.splitlines()[1:-1] if len(line) > 40)
                else:
                    found.append(value)
    return found


def test_representative_flows_never_log_a_credential(
    client, sim, iam, log_lines, settings, django_capture_on_commit_callbacks
):
    """Login, sync every provider, revoke, ingest, scrape metrics and send email; grep every line."""
    settings.LANYARD_METRICS_TOKEN = METRICS_TOKEN
    person = UserFactory(email="logs.person@example.com")
    person.set_password(PASSWORD)
    person.save()
    totp = enrol_totp(UserFactory(email="logs.staff@example.com", is_staff=True))
    client.post("/accounts/login/", {"login": person.email, "password": PASSWORD})
    client.post("/accounts/login/", {"login": person.email, "password": PASSWORD + "-wrong"})
    sources = [make_source(sim, kind) for kind in ("google_workspace", "microsoft_entra", "okta", "github")]
    for source in sources:
        assert sync_source(source).outcome == "succeeded"
    grant = Grant.objects.filter(source=sources[2], status=Grant.Status.ACTIVE).order_by("pk").first()
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=grant, actor=iam, reason="log test")
    _, raw_key = ingest_key_create(name="log-gw", actor=iam)
    client.post(
        "/api/v1/events", data="{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}"
    )
    client.post(
        "/api/v1/events",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer lyk_bad_guess",
    )
    client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")

    text = "\n".join(json.dumps(line) for line in log_lines())
    assert len(text) > 1000, "the flows logged almost nothing: the capture is broken"
    assert '"request_finished"' in text
    for secret in [*_secrets(sim), raw_key, totp]:
        assert secret not in text, f"a credential appears in the logs: {secret[:6]}…"
    assert mail.outbox is not None
