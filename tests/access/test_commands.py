"""manage.py pep_key (create once-printed keys, replace, list, revoke) and pdp_demo."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import IngestKey


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_pep_key_create_prints_the_key_once_and_keeps_its_hash(db, client, world):
    raw = run("pep_key", "create", "envoy", "--quiet").strip()
    key = IngestKey.objects.get(name="envoy")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.scopes == ["access:evaluate", "access:search"]
    assert key.reports_devices is True
    response = client.post(
        "/access/v1/evaluation",
        world.question(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.json()["decision"] is True


def test_pep_key_for_a_gateway_that_cannot_see_devices(db):
    run("pep_key", "create", "lanyard-gateway", "--no-devices", "--scope", "evaluate", "--per-minute", "5000")
    key = IngestKey.objects.get(name="lanyard-gateway")
    assert (key.reports_devices, key.scopes, key.decisions_per_minute) == (False, ["access:evaluate"], 5000)


def test_pep_key_create_twice_needs_replace(db):
    first = run("pep_key", "create", "kong2", "--quiet").strip()
    with pytest.raises(CommandError, match="exists"):
        run("pep_key", "create", "kong2")
    second = run("pep_key", "create", "kong2", "--replace", "--quiet").strip()
    assert first != second
    old = IngestKey.objects.get(key_hash=hashlib.sha256(first.encode()).hexdigest())
    assert old.revoked_at is not None and old.name.startswith("kong2 (replaced ")
    assert IngestKey.objects.get(name="kong2").revoked_at is None


def test_pep_key_list_and_revoke(db):
    run("pep_key", "create", "zuplo")
    assert "zuplo" in run("pep_key", "list")
    assert "Revoked" in run("pep_key", "revoke", "zuplo")
    assert IngestKey.objects.get(name="zuplo").revoked_at is not None
    with pytest.raises(CommandError):
        run("pep_key", "revoke", "zuplo")


def test_pdp_demo_prints_decisions_with_reasons(world):
    from connectors.models import Connector
    from tests.factories import ConnectorFactory, GrantFactory

    suspended = ConnectorFactory(
        name="Paused AI", status=Connector.Status.SUSPENDED, business_owner=world.owner
    )
    GrantFactory(connector=suspended, identity=world.identity)
    out = run("pdp_demo")
    assert "PERMIT ann@example.com calls a tool of Notes AI" in out
    assert "DENY   ... the same without naming a device" in out
    assert "Paused AI is suspended by IAM" in out
    assert "recorded it as shadow AI" in out


def test_pdp_demo_with_nothing_to_ask(db):
    with pytest.raises(CommandError, match="no active grants"):
        run("pdp_demo")
