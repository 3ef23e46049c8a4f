"""Rotating the checkpoint signing key: endorsed successors, verified across the rotation everywhere."""

from __future__ import annotations

import base64
import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.checkpoints import (
    SigningKeyError,
    checkpoint_create,
    key_id,
    message,
    public_key_pem,
)
from audit.models import AppendOnlyError, AuditCheckpoint, AuditEvent, AuditSigningKey
from audit.services import record
from audit.verify import verify
from tests.audit.test_offline import run as run_offline
from tests.audit.test_verify import run_verify

pytestmark = pytest.mark.django_db


def configure(settings, key: Ed25519PrivateKey) -> None:
    settings.LANYARD_AUDIT_SIGNING_KEY = base64.b64encode(key.private_bytes_raw()).decode()


def write_key(tmp_path, key: Ed25519PrivateKey, name: str) -> str:
    path = tmp_path / name
    path.write_text(base64.b64encode(key.private_bytes_raw()).decode())
    return str(path)


@pytest.fixture
def rotated(settings, tmp_path, signing_key):
    """Events and checkpoints under the first key, a rotation, then more under the second key."""
    first = signing_key
    for n in range(4):
        record("test.event", data={"n": n})
    checkpoint_create()
    second = Ed25519PrivateKey.generate()
    out = io.StringIO()
    call_command(
        "audit_rotate_signing_key", "--new-key-file", write_key(tmp_path, second, "new.key"), stdout=out
    )
    assert f"Registered audit signing key {key_id(second.public_key())}" in out.getvalue()
    record("test.event", data={"n": 4})
    checkpoint_create()  # the old key still signs until the processes are switched over
    configure(settings, second)
    for n in range(5, 8):
        record("test.event", data={"n": n})
    checkpoint_create()
    record("test.event", data={"n": 8})
    checkpoint_create()
    return first, second


def forge(key: Ed25519PrivateKey, *, prev_key: str | None = None, kid: str | None = None) -> AuditCheckpoint:
    """Append a checkpoint over the head signed by ``key``, as someone holding it (and the database) would."""
    previous = AuditCheckpoint.objects.order_by("-id").first()
    last = AuditEvent.objects.order_by("-sequence").first()
    fields = {
        "sequence": last.sequence,
        "head_hash": last.hash,
        "prev_signature": previous.signature,
        "created_at": previous.created_at,
    }
    kid = kid or key_id(key.public_key())
    prev_key = previous.key_id if prev_key is None else prev_key
    signature = key.sign(message(**fields, key=kid, prev_key=prev_key))
    return AuditCheckpoint.objects.create(
        **fields, key_id=kid, prev_key_id=prev_key, signature=base64.b64encode(signature).decode()
    )


def test_checkpoints_after_a_rotation_are_signed_by_the_new_key_and_name_the_old_one(rotated):
    first, second = (key_id(k.public_key()) for k in rotated)
    cps = list(AuditCheckpoint.objects.order_by("id").values_list("key_id", "prev_key_id"))
    assert cps == [(first, ""), (first, first), (second, first), (second, second)]
    keys = list(AuditSigningKey.objects.order_by("id").values_list("key_id", "previous_key_id"))
    assert keys == [(first, ""), (second, first)]
    event = AuditEvent.objects.get(action="audit.signing_key_rotated")
    assert event.data == {"key_id": second, "previous_key_id": first}


def test_audit_verify_passes_across_the_rotation_with_the_keys_in_the_database(rotated, tmp_path):
    code, out, err = run_verify()
    assert code == 0, err
    assert "4 checkpoints checked" in out
    # An auditor who trusts only the first published key: the endorsement carries trust to the second.
    published = tmp_path / "first.pem"
    published.write_text(public_key_pem(rotated[0].public_key()))
    code, _, err = run_verify("--public-key", str(published))
    assert code == 0, err


def test_the_offline_verifier_passes_on_an_export_spanning_the_rotation(rotated, tmp_path):
    directory = tmp_path / "bundle"
    call_command("audit_export_bundle", str(directory), stdout=io.StringIO())
    published = tmp_path / "first.pem"
    published.write_text(public_key_pem(rotated[0].public_key()))

    code, out, err = run_offline(
        directory, published, "--signing-keys", str(directory / "audit-signing-keys.jsonl")
    )
    assert code == 0, err
    assert "10 events (1..10), 4 checkpoints" in out
    assert key_id(rotated[1].public_key()) in out

    # Without the key list the second key is unknown to someone holding only the first.
    code, _, err = run_offline(directory, published)
    assert code == 1
    assert f"signed by unknown key {key_id(rotated[1].public_key())}" in err


def test_a_checkpoint_forged_with_an_unregistered_key_fails_both_verifiers(rotated, tmp_path):
    rogue = Ed25519PrivateKey.generate()
    forge(rogue)

    code, _, err = run_verify("--no-witness")
    assert code == 1
    assert f"unknown key {key_id(rogue.public_key())}" in err

    directory = tmp_path / "bundle"
    call_command("audit_export_bundle", str(directory), stdout=io.StringIO())
    published = tmp_path / "first.pem"
    published.write_text(public_key_pem(rotated[0].public_key()))
    code, _, err = run_offline(
        directory, published, "--signing-keys", str(directory / "audit-signing-keys.jsonl")
    )
    assert code == 1
    assert f"signed by unknown key {key_id(rogue.public_key())}" in err


def test_a_key_slipped_into_the_register_without_an_endorsement_is_not_trusted(rotated, tmp_path):
    rogue = Ed25519PrivateKey.generate()
    AuditSigningKey.objects.create(
        key_id=key_id(rogue.public_key()),
        public_key=public_key_pem(rogue.public_key()),
        previous_key_id=key_id(rotated[1].public_key()),
        endorsement=base64.b64encode(rogue.sign(b"self-endorsed")).decode(),
    )
    forge(rogue)

    result = verify(witness=None)
    reasons = [p.reason for p in result.problems]
    assert any("endorsement" in r and "does not verify" in r for r in reasons)
    assert any(f"unknown key {key_id(rogue.public_key())}" in r for r in reasons)

    directory = tmp_path / "bundle"
    call_command("audit_export_bundle", str(directory), stdout=io.StringIO())
    published = tmp_path / "first.pem"
    published.write_text(public_key_pem(rotated[0].public_key()))
    code, _, err = run_offline(
        directory, published, "--signing-keys", str(directory / "audit-signing-keys.jsonl")
    )
    assert code == 1
    assert "does not verify" in err


def test_the_retired_key_cannot_sign_after_its_successor(rotated, settings):
    configure(settings, rotated[0])
    with pytest.raises(SigningKeyError, match="retired"):
        checkpoint_create()
    # Someone holding the old key writes the checkpoint directly: the verifier refuses it.
    forge(rotated[0])
    code, _, err = run_verify("--no-witness")
    assert code == 1
    assert "retired since" in err


def test_a_checkpoint_whose_previous_key_reference_is_inconsistent_fails(rotated):
    forge(rotated[1], prev_key="0123456789abcdef")  # validly signed, but names another previous key
    code, _, err = run_verify("--no-witness")
    assert code == 1
    assert "names 0123456789abcdef as the previous key" in err


def test_a_key_change_without_a_rotation_is_refused(rotated, settings):
    configure(settings, Ed25519PrivateKey.generate())
    with pytest.raises(SigningKeyError, match="not registered"):
        checkpoint_create()


def test_rotating_needs_the_current_key_to_be_the_newest_and_a_new_key(rotated, settings, tmp_path):
    configure(settings, rotated[1])
    with pytest.raises(CommandError, match="already registered"):
        call_command("audit_rotate_signing_key", "--new-key-file", write_key(tmp_path, rotated[0], "old.key"))
    configure(settings, rotated[0])
    with pytest.raises(CommandError, match="not the newest registered key"):
        call_command("audit_rotate_signing_key", "--generate", str(tmp_path / "third.key"))
    with pytest.raises(CommandError, match="cannot use the new key file"):
        call_command("audit_rotate_signing_key", "--new-key-file", str(tmp_path / "missing.key"))


def test_generate_writes_a_private_key_file_only_the_owner_reads(signing_key, settings, tmp_path):
    path = tmp_path / "next.key"
    call_command("audit_rotate_signing_key", "--generate", str(path), stdout=io.StringIO())
    assert path.stat().st_mode & 0o077 == 0
    settings.LANYARD_AUDIT_SIGNING_KEY = ""
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = str(path)
    cp = checkpoint_create()  # the first checkpoint at all, signed by the second registered key
    assert AuditSigningKey.objects.count() == 2
    assert (cp.key_id, cp.prev_key_id) == (AuditSigningKey.objects.last().key_id, "")
    assert verify(witness=None).ok
    with pytest.raises(CommandError, match="cannot use the new key file"):
        call_command("audit_rotate_signing_key", "--generate", str(path))  # never overwrites


def test_the_key_register_is_append_only(rotated):
    key = AuditSigningKey.objects.first()
    with pytest.raises(AppendOnlyError):
        AuditSigningKey.objects.filter(pk=key.pk).delete()
    with pytest.raises(AppendOnlyError):
        key.save()


def test_audit_public_key_all_prints_every_registered_key(rotated):
    out = io.StringIO()
    call_command("audit_public_key", "--all", stdout=out)
    text = out.getvalue()
    assert text.count("BEGIN PUBLIC KEY") == 2
    assert (
        f"# key id: {key_id(rotated[1].public_key())}, successor of {key_id(rotated[0].public_key())}" in text
    )
