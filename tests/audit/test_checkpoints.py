"""Signed checkpoints: key handling, the signature chain, the beat task and the commands."""

from __future__ import annotations

import base64
import io

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as django_settings
from django.core import checks, mail
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.apps import check_signing_key
from audit.checkpoints import (
    CheckpointRow,
    SigningKeyError,
    checkpoint_create,
    key_id,
    private_key,
    signature_valid,
)
from audit.models import AuditCheckpoint
from audit.services import record
from audit.tasks import checkpoint as checkpoint_task
from audit.verify import verify

pytestmark = pytest.mark.django_db


def _row(cp: AuditCheckpoint) -> CheckpointRow:
    return CheckpointRow(
        cp.id,
        cp.created_at,
        cp.sequence,
        cp.head_hash,
        cp.prev_signature,
        cp.signature,
        cp.key_id,
        cp.prev_key_id,
    )


def test_a_checkpoint_signs_the_head_and_covers_the_previous_one(signing_key):
    record("test.one")
    head = record("test.two")

    first = checkpoint_create()
    second = checkpoint_create()  # an idle period still gets one

    assert (first.sequence, first.head_hash, first.prev_signature) == (2, head.hash, "")
    assert (second.sequence, second.head_hash) == (2, head.hash)
    assert second.prev_signature == first.signature
    assert first.key_id == key_id(signing_key.public_key())
    keys = {first.key_id: signing_key.public_key()}
    assert signature_valid(_row(first), keys) and signature_valid(_row(second), keys)
    assert verify().ok


def test_a_checkpoint_of_an_empty_chain_signs_the_genesis():
    checkpoint = checkpoint_create()

    assert (checkpoint.sequence, checkpoint.head_hash) == (0, "0" * 64)


def test_the_beat_task_signs_once_per_period_even_if_delivered_twice():
    first = checkpoint_task.delay().get()
    again = checkpoint_task.delay().get()

    assert first == again
    assert AuditCheckpoint.objects.count() == 1


def test_the_beat_schedule_runs_the_checkpoint_task():
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]

    assert entry["task"] == "audit.checkpoint"
    assert entry["schedule"].total_seconds() == django_settings.LANYARD_AUDIT_CHECKPOINT_MINUTES * 60


def test_the_checkpoint_command_signs_now():
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    call_command("audit_checkpoint", stdout=out)

    assert AuditCheckpoint.objects.count() == 2
    assert "signed sequence 0" in out.getvalue()


def test_the_public_key_command_prints_pem_and_key_id(signing_key):
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)

    text = out.getvalue()
    assert f"# key id: {key_id(signing_key.public_key())}" in text
    pem = text.split("\n", 1)[1]
    loaded = serialization.load_pem_public_key(pem.encode())
    assert loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == (
        signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert "PRIVATE" not in text


def test_a_pem_key_and_a_key_file_are_accepted(settings, tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings.LANYARD_AUDIT_SIGNING_KEY = pem
    assert key_id(private_key().public_key()) == key_id(key.public_key())

    path = tmp_path / "audit.key"
    path.write_text(base64.b64encode(key.private_bytes_raw()).decode())
    settings.LANYARD_AUDIT_SIGNING_KEY = ""
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = str(path)
    assert key_id(private_key().public_key()) == key_id(key.public_key())


def test_tests_without_a_key_get_one_under_var(settings, tmp_path):
    settings.LANYARD_AUDIT_SIGNING_KEY = ""
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = ""
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path

    assert checkpoint_create().key_id == key_id(private_key().public_key())
    assert (tmp_path / "audit-signing-key.pem").exists()


def test_debug_generates_a_key_under_var_once(settings, tmp_path):
    settings.LANYARD_AUDIT_SIGNING_KEY = ""
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = ""
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path

    first = key_id(private_key().public_key())

    path = tmp_path / "audit-signing-key.pem"
    assert path.exists()
    assert path.stat().st_mode & 0o077 == 0
    assert key_id(private_key().public_key()) == first
    assert check_signing_key() == []


def test_production_without_a_key_fails_the_system_check_and_refuses_to_sign(settings, tmp_path, monkeypatch):
    monkeypatch.delattr(mail, "outbox")  # outside the test environment
    settings.LANYARD_AUDIT_SIGNING_KEY = ""
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = ""
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path

    errors = check_signing_key()

    assert [e.id for e in errors] == ["lanyard.E001"]
    assert errors[0].level == checks.ERROR
    with pytest.raises(SigningKeyError):
        checkpoint_create()
    with pytest.raises(CommandError, match="No audit signing key"):
        call_command("audit_checkpoint")
    assert not (tmp_path / "audit-signing-key.pem").exists()


def test_an_unreadable_key_fails_the_system_check(settings):
    settings.LANYARD_AUDIT_SIGNING_KEY = "not a key"

    assert [e.id for e in check_signing_key()] == ["lanyard.E002"]


def test_the_system_check_is_registered():
    assert check_signing_key in checks.registry.registry.get_checks()
