"""The witness: checkpoints written outside the database, and audit_verify comparing with them."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import encode_datetime, event_hash, values_of
from audit.checkpoints import checkpoint_create, key_id, message
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import record
from audit.verify import verify
from audit.witness import FileWitness, WitnessError, configured_witness, record_line

pytestmark = pytest.mark.django_db


def lines(directory) -> list[dict]:
    return [
        json.loads(line) for path in sorted(directory.iterdir()) for line in path.read_text().splitlines()
    ]


@pytest.fixture
def chain():
    for n in range(6):
        record("test.event", data={"n": n})
    first = checkpoint_create()
    for n in range(6, 10):
        record("test.event", data={"n": n})
    second = checkpoint_create()
    return first, second


def test_each_checkpoint_is_appended_to_the_days_file(chain, witness_dir):
    first, second = chain

    (path,) = witness_dir.iterdir()
    assert path.name == f"checkpoints-{first.created_at:%Y-%m-%d}.jsonl"
    assert lines(witness_dir) == [
        {
            "v": 1,
            "id": cp.id,
            "created_at": encode_datetime(cp.created_at),
            "sequence": cp.sequence,
            "head_hash": cp.head_hash,
            "prev_signature": cp.prev_signature,
            "signature": cp.signature,
            "key_id": cp.key_id,
            "prev_key_id": cp.prev_key_id,
        }
        for cp in (first, second)
    ]
    result = verify()
    assert result.ok and result.witnessed == 2


def test_the_file_is_opened_for_appending_only(chain, witness_dir, monkeypatch):
    flags = []
    real_open = os.open

    def spy(path, flag, *args):
        flags.append(flag)
        return real_open(path, flag, *args)

    monkeypatch.setattr(os, "open", spy)
    checkpoint_create()

    assert flags and all(f & os.O_APPEND and not f & os.O_TRUNC for f in flags)
    assert len(lines(witness_dir)) == 3


def test_a_full_rewrite_inside_the_database_is_caught_only_by_the_witness(chain, tamper):
    # Events, checkpoints and head gone together: nothing inside the database remembers them.
    tamper(
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditcheckpoint",
        "DELETE FROM audit_auditchainhead",
    )

    assert verify(witness=None).ok
    problem = verify().first_problem
    assert problem.sequence == 1
    assert "the witness's checkpoint" in problem.reason and "events removed from the tail" in problem.reason


def test_a_tail_cut_with_head_and_checkpoints_rewound_is_caught_by_the_witness(chain, tamper):
    first, second = chain
    keep = AuditEvent.objects.get(sequence=7)
    tamper(
        "DELETE FROM audit_auditevent WHERE sequence > 7",
        f"DELETE FROM audit_auditcheckpoint WHERE id = {second.id}",
        f"UPDATE audit_auditchainhead SET sequence = 7, hash = '{keep.hash}'",
    )

    assert verify(witness=None).ok
    problem = verify().first_problem
    assert problem.sequence == 8
    assert f"checkpoint {second.id}" in problem.reason and "signed 10" in problem.reason


def test_a_checkpoint_rewritten_in_the_database_with_the_stolen_key_is_caught(chain, tamper, signing_key):
    # The attacker edits event 3, recomputes every later hash and re-signs both checkpoints.
    first, second = chain
    tamper("UPDATE audit_auditevent SET action = 'test.forged' WHERE sequence = 3")
    prev = AuditEvent.objects.get(sequence=2).hash
    for event in AuditEvent.objects.filter(sequence__gte=3).order_by("sequence"):
        event.prev_hash = prev
        prev = event_hash(values_of(event))
        tamper(
            f"UPDATE audit_auditevent SET prev_hash = '{event.prev_hash}', hash = '{prev}' "
            f"WHERE id = {event.id}"
        )
    prev_signature = ""
    for cp in (first, second):
        head = AuditEvent.objects.get(sequence=cp.sequence).hash
        body = message(
            sequence=cp.sequence,
            head_hash=head,
            prev_signature=prev_signature,
            created_at=cp.created_at,
            key=cp.key_id,
            prev_key=cp.prev_key_id,
        )
        signature = base64.b64encode(signing_key.sign(body)).decode()
        tamper(
            f"UPDATE audit_auditcheckpoint SET head_hash = '{head}', prev_signature = '{prev_signature}', "
            f"signature = '{signature}' WHERE id = {cp.id}"
        )
        prev_signature = signature
    tamper(f"UPDATE audit_auditchainhead SET hash = '{prev}'")

    assert verify(witness=None).ok  # consistent inside the database
    result = verify()
    assert not result.ok
    reasons = " | ".join(p.reason for p in result.problems)
    assert f"checkpoint {first.id} differs from the witness" in reasons
    assert f"checkpoint {second.id} differs from the witness" in reasons


def test_a_forged_line_appended_to_the_witness_is_caught(chain, witness_dir):
    path = next(witness_dir.iterdir())
    forged = json.loads(path.read_text().splitlines()[-1])
    forged |= {"id": 99, "sequence": 20, "head_hash": "f" * 64}
    with path.open("a") as fh:
        fh.write(json.dumps(forged) + "\n")

    problem = verify().first_problem

    assert problem.sequence == 20
    assert "signature does not verify (forged)" in problem.reason


def test_a_garbled_or_torn_witness_line_is_reported(chain, witness_dir):
    path = next(witness_dir.iterdir())
    with path.open("a") as fh:
        fh.write('{"v": 1, "id": "x"}\n{"v": 1, "seq')

    reasons = [p.reason for p in verify().problems]

    assert any("not a witness record" in r for r in reasons)
    assert any("unterminated line" in r for r in reasons)


def test_a_checkpoint_missing_from_the_witness_is_reported(chain, settings):
    settings.LANYARD_AUDIT_WITNESS = "none"
    unwitnessed = checkpoint_create()
    settings.LANYARD_AUDIT_WITNESS = "file"

    problem = verify().first_problem

    assert f"checkpoint {unwitnessed.id} is not in the witness" in problem.reason


def test_a_witness_that_cannot_be_written_rolls_the_checkpoint_back(settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.LANYARD_AUDIT_WITNESS_DIR = str(blocker)
    record("test.event")

    with pytest.raises(WitnessError, match="cannot write the audit witness"):
        checkpoint_create()
    assert not AuditCheckpoint.objects.exists()
    with pytest.raises(CommandError, match="cannot write the audit witness"):
        call_command("audit_checkpoint", stdout=io.StringIO())


def test_no_witness_writes_nothing(settings, witness_dir):
    settings.LANYARD_AUDIT_WITNESS = "none"
    checkpoint_create()

    assert configured_witness() is None
    assert not witness_dir.exists()
    assert verify().witnessed is None


def test_an_unknown_backend_is_refused(settings):
    settings.LANYARD_AUDIT_WITNESS = "carrier-pigeon"

    with pytest.raises(WitnessError, match="file, s3 or none"):
        configured_witness()


def test_outside_tests_the_default_directory_is_under_var(settings, tmp_path, monkeypatch):
    monkeypatch.delattr(mail, "outbox")
    settings.LANYARD_AUDIT_WITNESS_DIR = ""
    settings.VAR_DIR = tmp_path

    witness = configured_witness()

    assert isinstance(witness, FileWitness)
    assert witness.directory == tmp_path / "audit-witness"


def test_the_command_compares_with_a_given_witness_directory_or_none(chain, tamper, tmp_path, witness_dir):
    tamper(
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditcheckpoint",
        "DELETE FROM audit_auditchainhead",
    )
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in witness_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    out, err = io.StringIO(), io.StringIO()

    call_command("audit_verify", "--no-witness", stdout=out, stderr=err)
    assert "no witness" in out.getvalue() and "OK" in out.getvalue()
    with pytest.raises(SystemExit) as exit_:
        call_command("audit_verify", "--witness-dir", str(copy), stdout=out, stderr=err)
    assert exit_.value.code == 1
    assert "2 witness records compared" in out.getvalue()
    assert "events removed from the tail" in err.getvalue()


def test_the_record_line_is_one_sorted_json_object(chain):
    first, _ = chain

    line = record_line(first)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert list(json.loads(line)) == sorted(json.loads(line))
    assert json.loads(line)["key_id"] == key_id()


def test_a_deliberate_flush_sets_the_file_witness_aside(chain, settings, witness_dir, monkeypatch):
    monkeypatch.delattr(mail, "outbox")  # outside the test environment, DEBUG on
    settings.DEBUG = True
    out = io.StringIO()

    call_command("flush", interactive=False, verbosity=0, stdout=out)

    assert not witness_dir.exists()
    (aside,) = witness_dir.parent.glob("witness.wiped-*")
    assert len(lines(aside)) == 2
    assert "moved aside" in out.getvalue()
    assert verify().ok
