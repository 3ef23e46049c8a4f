"""``manage.py rotate_encryption_key``: every stored secret moves to the newest key, in batches."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import call_command

from audit.models import AuditEvent
from connectors import crypto
from connectors.models import IdentitySource
from gateway.models import Endpoint
from signals.keys import active_key
from signals.models import ReceiverStream, SigningKey, TransmitterStream
from signals.streams import receiver_create
from tests.factories import ConnectorFactory, IdentitySourceFactory

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
SECRETS = {
    "client_secret": "idp-client-secret-4c1a7e",
    "upstream": "Bearer upstream-token-93ad11",
    "poll": "Bearer poll-token-5be2c0",
    "push": "Bearer push-token-77e0f4",
}


def stored_values() -> dict[str, str]:
    """Every registered encrypted value in the database, by '<model>.<field>:<pk>'."""
    out = {}
    for model, name in crypto.encrypted_fields():
        for pk, token in model._base_manager.exclude(**{name: ""}).values_list("pk", name):
            out[f"{model._meta.label}.{name}:{pk}"] = token
    return out


def plaintexts() -> dict[str, dict]:
    return {where: crypto.decrypt_json(token) for where, token in stored_values().items()}


@pytest.fixture
def secrets_under_old_key(db, settings):
    """One of every kind of encrypted value, plus a few more identity sources, all under OLD."""
    settings.LANYARD_ENCRYPTION_KEYS = [OLD]
    for n in range(5):
        source = IdentitySourceFactory(name=f"rotation-{n}")
        source.set_credentials({"client_id": f"c{n}", "client_secret": f"{SECRETS['client_secret']}-{n}"})
        source.save()
    endpoint = Endpoint(
        connector=ConnectorFactory(name="Rotation MCP"), slug="rot", upstream_url="http://x/mcp"
    )
    endpoint.set_credentials({"headers": {"Authorization": SECRETS["upstream"]}})
    endpoint.save()
    inbound = ReceiverStream(
        name="rot-in",
        source=IdentitySource.objects.first(),
        issuer="https://t",
        jwks_url="https://t/j",
        audience="https://a",
    )
    inbound.set_poll_authorization(SECRETS["poll"])
    inbound.save()
    active_key()  # a SET signing key (its private PEM is encrypted)
    receiver, _ = receiver_create(name="rot-out", actor="test")
    stream = TransmitterStream(receiver=receiver, endpoint_url="https://r/push")
    stream.set_authorization(SECRETS["push"])
    stream.save()
    before = plaintexts()
    assert len(before) == 9
    settings.LANYARD_ENCRYPTION_KEYS = [NEW, OLD]
    return before


def test_every_field_named_encrypted_is_registered_for_rotation():
    registered = {(m._meta.label, f) for m, f in crypto.encrypted_fields()}
    found = {
        (model._meta.label, f.name)
        for model in apps.get_models()
        for f in model._meta.get_fields()
        if "encrypt" in f.name
    }
    assert found == registered
    assert ("signals.SigningKey", "private_key_encrypted") in registered


def test_it_rotates_every_value_and_the_old_key_can_go(secrets_under_old_key, settings, capsys):
    call_command("rotate_encryption_key", "--batch-size", "2")
    out = capsys.readouterr().out
    assert "connectors.IdentitySource.credentials_encrypted: 5 rotated, 0 already under the newest key" in out
    assert "gateway.Endpoint.credentials_encrypted: 1 rotated" in out
    assert "signals.SigningKey.private_key_encrypted: 1 rotated" in out

    settings.LANYARD_ENCRYPTION_KEYS = [NEW]  # the old key retired
    assert plaintexts() == secrets_under_old_key
    assert all(crypto.is_current(t) for t in stored_values().values())
    endpoint = Endpoint.objects.get()
    assert endpoint.credentials == {"headers": {"Authorization": SECRETS["upstream"]}}
    assert TransmitterStream.objects.get().authorization == SECRETS["push"]
    assert ReceiverStream.objects.get().poll_authorization == SECRETS["poll"]


def test_it_records_counts_and_never_key_material(secrets_under_old_key):
    call_command("rotate_encryption_key")
    event = AuditEvent.objects.get(action="crypto.key_rotated")
    assert event.outcome == "success"
    assert event.actor_label == "manage.py rotate_encryption_key"
    assert event.data["keys"] == 2
    assert event.data["fields"]["connectors.IdentitySource.credentials_encrypted"]["rotated"] == 5
    text = str(event.data)
    for secret in (OLD, NEW, *SECRETS.values()):
        assert secret not in text


def test_a_second_run_rotates_nothing(secrets_under_old_key, capsys):
    call_command("rotate_encryption_key")
    after_first = stored_values()
    capsys.readouterr()
    call_command("rotate_encryption_key")
    out = capsys.readouterr().out
    assert "OK: 0 value(s) re-encrypted" in out
    assert "connectors.IdentitySource.credentials_encrypted: 0 rotated, 5 already under the newest key" in out
    assert stored_values() == after_first


def test_an_interrupted_run_commits_whole_batches_and_a_rerun_finishes(
    secrets_under_old_key, settings, monkeypatch
):
    real_rotate = crypto.rotate
    calls = []

    def failing_rotate(token):
        calls.append(token)
        if len(calls) == 3:  # the second batch of two identity sources fails half-way
            raise KeyboardInterrupt
        return real_rotate(token)

    monkeypatch.setattr(crypto, "rotate", failing_rotate)
    with pytest.raises(KeyboardInterrupt):
        call_command("rotate_encryption_key", "--batch-size", "2")
    current = [crypto.is_current(t) for t in stored_values().values()]
    assert current.count(True) == 2  # the first batch committed, the failed one rolled back whole
    interrupted = AuditEvent.objects.get(action="crypto.key_rotation_interrupted")
    assert interrupted.outcome == "failure"
    assert interrupted.data["fields"]["connectors.IdentitySource.credentials_encrypted"]["rotated"] == 2

    monkeypatch.setattr(crypto, "rotate", real_rotate)
    call_command("rotate_encryption_key", "--batch-size", "2")
    settings.LANYARD_ENCRYPTION_KEYS = [NEW]
    assert plaintexts() == secrets_under_old_key
    done = AuditEvent.objects.get(action="crypto.key_rotated")
    assert done.data["fields"]["connectors.IdentitySource.credentials_encrypted"] == {
        "rotated": 3,
        "current": 2,
        "old_key": 0,
        "unreadable": 0,
    }


def test_check_fails_while_an_old_key_is_needed_and_passes_after(secrets_under_old_key, capsys):
    with pytest.raises(SystemExit) as exit_:
        call_command("rotate_encryption_key", "--check")
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "9 value(s) still need an older key" in captured.err
    line = "connectors.IdentitySource.credentials_encrypted: 0 under the newest key, 5 under an older key"
    assert line in captured.out
    assert not all(crypto.is_current(t) for t in stored_values().values())  # --check changed nothing

    call_command("rotate_encryption_key")
    call_command("rotate_encryption_key", "--check")  # no SystemExit: exit status 0
    assert "older keys can be removed" in capsys.readouterr().out


def test_a_value_no_key_reads_is_reported_and_left_alone(secrets_under_old_key, settings, capsys):
    settings.LANYARD_ENCRYPTION_KEYS = [NEW]  # the old key dropped too early
    lost = SigningKey.objects.get().private_key_encrypted
    with pytest.raises(SystemExit) as exit_:
        call_command("rotate_encryption_key")
    assert exit_.value.code == 1
    assert "9 value(s) cannot be decrypted with any configured key" in capsys.readouterr().err
    assert SigningKey.objects.get().private_key_encrypted == lost
    assert AuditEvent.objects.get(action="crypto.key_rotated").outcome == "failure"
    with pytest.raises(SystemExit):
        call_command("rotate_encryption_key", "--check")


def test_it_refuses_to_run_without_configured_keys(db, settings):
    settings.LANYARD_ENCRYPTION_KEYS = []
    with pytest.raises(Exception, match="LANYARD_ENCRYPTION_KEYS is not set"):
        call_command("rotate_encryption_key")
    with pytest.raises(Exception, match="at least 1"):
        call_command("rotate_encryption_key", "--batch-size", "0")
