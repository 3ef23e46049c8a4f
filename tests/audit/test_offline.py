"""The offline verifier: an exported bundle checked with the public key alone, without Django."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from audit import offline
from audit.chain import event_hash, values_of
from audit.checkpoints import checkpoint_create, message, public_key_pem
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import record
from audit.witness import record_line

pytestmark = pytest.mark.django_db


@pytest.fixture
def bundle(tmp_path, signing_key):
    """Twelve varied events, checkpoints at 6 and 10, two events after; exported and a published key."""
    record("test.event", data={"n": 0, "text": "ünïcode ✓", "nested": {"b": [1, 2.5, None], "a": True}})
    record("test.event", ip="::ffff:10.0.0.1", user_agent="curl/8", correlation_id="req-1")
    record("test.event", ip="2001:db8::1", data={"big": 10**20, "neg": -1.25})
    for n in range(3, 6):
        record("test.event", data={"n": n}, external_id=f"ext-{n}", actor_label="gateway")
    checkpoint_create()
    for n in range(6, 10):
        record("test.event", data={"n": n})
    checkpoint_create()
    record("test.event", data={"n": 10})
    record("test.event", data={"n": 11})
    directory = tmp_path / "bundle"
    call_command("audit_export_bundle", str(directory), stdout=io.StringIO())
    published = tmp_path / "published.pem"
    published.write_text(public_key_pem(signing_key.public_key()))
    return directory, published


def run(directory: Path, key: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--events",
        str(directory / "events.jsonl"),
        "--checkpoints",
        str(directory / "checkpoints.jsonl"),
        "--public-key",
        str(key),
        *extra,
    ]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = offline.main(argv)
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def edit_lines(path: Path, change) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


def test_a_clean_export_verifies_and_names_the_unsigned_tail(bundle):
    code, out, err = run(*bundle)

    assert code == 0, err
    assert "12 events (1..12), 2 checkpoints" in out
    assert "the last 2 events are not covered by a checkpoint" in out
    assert "OK: the export verifies" in out


def test_its_hashes_are_the_applications(bundle):
    directory, _ = bundle
    exported = [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()]

    for event, stored in zip(exported, AuditEvent.objects.order_by("sequence"), strict=True):
        assert offline.event_hash(event) == event_hash(values_of(stored)) == stored.hash
    for cp in AuditCheckpoint.objects.all():
        line = {
            "created_at": cp.created_at.isoformat(),
            **{k: getattr(cp, k) for k in ("sequence", "head_hash", "prev_signature", "key_id")},
        }
        assert offline.checkpoint_message(line) == message(
            sequence=cp.sequence,
            head_hash=cp.head_hash,
            prev_signature=cp.prev_signature,
            created_at=cp.created_at,
            key=cp.key_id,
        )


def test_it_imports_no_django_and_runs_as_a_module(bundle):
    directory, key = bundle
    probe = "import sys, audit.offline; sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))"

    assert subprocess.run([sys.executable, "-c", probe], cwd=settings.BASE_DIR).returncode == 0
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit.offline",
            "--events",
            str(directory / "events.jsonl"),
            "--checkpoints",
            str(directory / "checkpoints.jsonl"),
            "--public-key",
            str(key),
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_an_edited_event_is_caught(bundle):
    directory, key = bundle
    edit_lines(
        directory / "events.jsonl", lambda ls: [ls[0], ls[1], ls[2].replace('"gateway"', '"nobody"'), *ls[3:]]
    )
    edit_lines(
        directory / "events.jsonl", lambda ls: [*ls[:3], ls[3].replace('"gateway"', '"someone"'), *ls[4:]]
    )

    code, _, err = run(directory, key)

    assert code == 1
    assert "events.jsonl:4: sequence 4: hash does not match its contents (edited)" in err


def test_a_deleted_event_is_caught(bundle):
    directory, key = bundle
    edit_lines(directory / "events.jsonl", lambda ls: ls[:4] + ls[5:])

    code, _, err = run(directory, key)

    assert code == 1
    assert "sequence 6 after 4 (missing" in err


def test_reordered_events_are_caught(bundle):
    directory, key = bundle
    edit_lines(directory / "events.jsonl", lambda ls: [*ls[:6], ls[7], ls[6], *ls[8:]])

    code, _, err = run(directory, key)

    assert code == 1
    assert "sequence 8 after 6" in err


def test_a_truncated_export_is_caught_by_the_checkpoint(bundle):
    directory, key = bundle
    edit_lines(directory / "events.jsonl", lambda ls: ls[:8])

    code, _, err = run(directory, key)

    assert code == 1
    assert "signed sequence 10 but the events end at 8 (truncated)" in err


def test_a_torn_last_line_is_caught(bundle):
    directory, key = bundle
    edit_lines(directory / "events.jsonl", lambda ls: [*ls[:-1], ls[-1][:40]])

    code, _, err = run(directory, key)

    assert code == 1
    assert "unterminated line" in err


def test_a_forged_checkpoint_is_caught(bundle):
    directory, key = bundle
    other = Ed25519PrivateKey.generate()

    def forge(lines: list[str]) -> list[str]:
        last = json.loads(lines[-1])
        last["head_hash"] = "a" * 64
        body = offline.checkpoint_message(last)
        last["signature"] = base64.b64encode(other.sign(body)).decode()
        return [*lines[:-1], json.dumps(last) + "\n"]

    edit_lines(directory / "checkpoints.jsonl", forge)

    code, _, err = run(directory, key)

    assert code == 1
    assert "signature does not verify (forged or edited)" in err


def test_a_rewritten_export_with_recomputed_hashes_is_caught_by_the_checkpoints(bundle):
    directory, key = bundle

    def rewrite(lines: list[str]) -> list[str]:
        events = [json.loads(line) for line in lines]
        events[2]["action"] = "test.forged"
        prev = events[1]["hash"]
        for event in events[2:]:
            event["prev_hash"] = prev
            event["hash"] = prev = offline.event_hash(event)
        return [json.dumps(e) + "\n" for e in events]

    edit_lines(directory / "events.jsonl", rewrite)

    code, _, err = run(directory, key)

    assert code == 1
    assert "sequence 6:" in err and "signed another hash (rewritten)" in err


def test_a_dropped_checkpoint_is_caught(bundle):
    directory, key = bundle
    edit_lines(directory / "checkpoints.jsonl", lambda ls: ls[1:])

    code, _, err = run(directory, key)

    assert code == 1
    assert "does not cover the previous checkpoint" in err


def test_another_key_is_refused(bundle, tmp_path):
    directory, _ = bundle
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))

    code, _, err = run(directory, stranger)

    assert code == 1
    assert "signed by unknown key" in err


def test_the_witness_matches_and_catches_a_replaced_bundle(
    bundle, witness_dir, tmp_path, tamper, signing_key
):
    directory, key = bundle
    code, out, err = run(directory, key, "--witness", str(witness_dir))
    assert code == 0, err
    assert "2 witness records" in out

    # The database's operator wipes everything and exports a fresh, consistent, shorter trail.
    tamper(
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditcheckpoint",
        "DELETE FROM audit_auditchainhead",
    )
    with override_settings(LANYARD_AUDIT_WITNESS_DIR=str(witness_dir.parent / "elsewhere")):
        record("test.event")
        replacement = checkpoint_create()
    fresh = tmp_path / "fresh"
    call_command("audit_export_bundle", str(fresh), stdout=io.StringIO())

    assert run(fresh, key)[0] == 0  # consistent on its own
    code, _, err = run(fresh, key, "--witness", str(witness_dir))
    assert code == 1
    assert f"checkpoint {replacement.id} is not in the witness" in err
    assert "signed sequence 10 but the events end at 1 (truncated)" in err


def test_unreadable_input_exits_2(tmp_path, bundle):
    directory, key = bundle

    assert run(tmp_path / "nowhere", key)[0] == 2
    assert run(directory, tmp_path / "missing.pem")[0] == 2


def test_a_downloaded_object_store_witness_is_read_recursively(bundle, tmp_path):
    directory, key = bundle
    downloaded = tmp_path / "s3-copy"
    for cp in AuditCheckpoint.objects.order_by("id"):
        target = downloaded / f"{cp.created_at:%Y/%m/%d}" / f"{cp.id:012d}-{cp.sequence}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(record_line(cp))

    code, out, err = run(directory, key, "--witness", str(downloaded))

    assert code == 0, err
    assert "2 witness records" in out
