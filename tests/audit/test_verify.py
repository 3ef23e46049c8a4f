"""audit_verify: a clean chain passes; each kind of tampering is caught at the right sequence."""

from __future__ import annotations

import base64
import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command

from audit.chain import event_hash, values_of
from audit.checkpoints import checkpoint_create, key_id, message, public_key_pem
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import record
from audit.verify import verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    """Ten events, a checkpoint at 8, two more events (the head is 10, signed at 8)."""
    for n in range(8):
        record("test.event", data={"n": n})
    checkpoint = checkpoint_create()
    for n in range(8, 10):
        record("test.event", data={"n": n})
    return checkpoint


def run_verify(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_a_clean_chain_verifies_and_reports_its_rate(chain):
    code, out, err = run_verify()

    assert code == 0, err
    assert "10 events, 1 checkpoints checked, 1 witness records compared" in out
    assert "events/s" in out
    assert "OK: chain verifies up to sequence 10" in out


def test_an_empty_chain_with_checkpoints_verifies():
    checkpoint_create()
    checkpoint_create()

    assert verify().ok


def test_an_edited_field_is_caught_at_its_sequence(chain, tamper):
    tamper("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE sequence = 4")

    code, _, err = run_verify()

    assert code == 1
    assert "FAILED at sequence 4: hash does not match" in err


def test_an_edited_data_value_is_caught(chain, tamper):
    tamper("UPDATE audit_auditevent SET data = '{\"n\": 99}' WHERE sequence = 9")

    assert str(verify().first_problem).startswith("sequence 9: hash does not match")


def test_a_deleted_event_is_caught_as_missing(chain, tamper):
    tamper("DELETE FROM audit_auditevent WHERE sequence = 5")

    code, _, err = run_verify()

    assert code == 1
    assert "FAILED at sequence 5: missing" in err


def test_two_swapped_events_are_caught_at_the_first(chain, tamper):
    tamper(
        "UPDATE audit_auditevent SET sequence = -6 WHERE sequence = 6",
        "UPDATE audit_auditevent SET sequence = 6 WHERE sequence = 7",
        "UPDATE audit_auditevent SET sequence = 7 WHERE sequence = -6",
    )

    assert verify().first_problem.sequence == 6


def test_a_truncated_tail_is_caught_through_the_latest_checkpoint(tamper):
    for n in range(10):
        record("test.event", data={"n": n})
    checkpoint_create()
    tamper("DELETE FROM audit_auditevent WHERE sequence >= 8")

    problem = verify().first_problem

    assert problem.sequence == 8
    assert "events removed from the tail" in problem.reason


def test_a_rewritten_chain_with_recomputed_hashes_is_caught_by_the_checkpoint(chain, tamper):
    # The attacker edits event 3 and recomputes every later hash, so links and hashes agree.
    tamper("UPDATE audit_auditevent SET action = 'test.forged' WHERE sequence = 3")
    prev = AuditEvent.objects.get(sequence=2).hash
    for event in AuditEvent.objects.filter(sequence__gte=3).order_by("sequence"):
        event.prev_hash = prev
        prev = event_hash(values_of(event))
        tamper(
            f"UPDATE audit_auditevent SET prev_hash = '{event.prev_hash}', hash = '{prev}' "
            f"WHERE id = {event.id}"
        )

    problem = verify().first_problem

    assert problem.sequence == 8
    assert "chain rewritten" in problem.reason


def test_a_forged_checkpoint_signature_is_caught(chain):
    other = Ed25519PrivateKey.generate()
    last = AuditEvent.objects.order_by("-sequence").first()
    forged = {
        "sequence": last.sequence,
        "head_hash": last.hash,
        "prev_signature": chain.signature,
        "created_at": chain.created_at,
    }
    signature = other.sign(message(**forged, key=chain.key_id))
    AuditCheckpoint.objects.create(
        **forged, key_id=chain.key_id, signature=base64.b64encode(signature).decode()
    )

    code, _, err = run_verify()

    assert code == 1
    assert "FAILED at sequence 10: checkpoint" in err
    assert "signature does not verify" in err


def test_an_edited_checkpoint_is_caught(chain, tamper):
    tamper(f"UPDATE audit_auditcheckpoint SET sequence = 9 WHERE id = {chain.id}")

    # From inside the database alone; the witness also sees it (tests/audit/test_witness.py).
    assert "signature does not verify" in verify(witness=None).first_problem.reason


def test_a_deleted_checkpoint_breaks_the_checkpoint_chain(chain, tamper):
    checkpoint_create()
    tamper(f"DELETE FROM audit_auditcheckpoint WHERE id = {chain.id}")

    assert "does not cover the previous checkpoint" in verify().first_problem.reason


def test_a_checkpoint_signed_by_an_unknown_key_is_caught(chain):
    # verify with another key only, as an auditor holding the wrong public key would
    problem = verify(
        public_keys=[Ed25519PrivateKey.from_private_bytes(b"\0" * 32).public_key()]
    ).first_problem

    assert "unknown key" in problem.reason


def test_an_auditor_verifies_with_the_public_key_alone(chain, tmp_path, signing_key):
    pem = tmp_path / "audit.pub"
    pem.write_text(public_key_pem(signing_key.public_key()))

    code, out, _ = run_verify("--public-key", str(pem))

    assert code == 0
    assert key_id(signing_key.public_key()) == chain.key_id


def test_verification_streams_in_chunks_smaller_than_the_chain(chain):
    result = verify(chunk_size=3)

    assert result.ok
    assert result.events == 10


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_parallel_verification_checks_every_part_and_the_links_between_parts(tamper):
    for n in range(40):
        record("test.event", data={"n": n})
    checkpoint_create()

    clean = verify(workers=4, chunk_size=5)
    tamper("UPDATE audit_auditevent SET prev_hash = hash WHERE sequence = 21")
    broken = verify(workers=4, chunk_size=5)

    assert clean.ok and clean.events == 40
    assert broken.first_problem.sequence == 21
