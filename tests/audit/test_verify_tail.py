"""audit_verify cross-checks the chain-head row and the rest of the database (issue 18).

Each tamper test works past the append-only triggers, as someone with database access would.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.checkpoints import checkpoint_create
from audit.models import AuditChainHead
from audit.services import ingest_key_create, record
from audit.verify import verify

pytestmark = pytest.mark.django_db


def test_deleting_the_events_after_the_last_checkpoint_is_caught_through_the_head(tamper):
    for n in range(8):
        record("test.event", data={"n": n})
    checkpoint_create()  # signs 8
    record("test.event", data={"n": 8})
    record("test.event", data={"n": 9})
    tamper("DELETE FROM audit_auditevent WHERE sequence >= 9")

    result = verify()

    assert not result.ok
    assert result.first_problem.sequence == 9
    assert "chain head names sequence 10" in result.first_problem.reason


def test_a_tail_cut_with_the_head_rewound_to_a_wrong_hash_is_caught(tamper):
    for n in range(5):
        record("test.event", data={"n": n})
    tamper(
        "DELETE FROM audit_auditevent WHERE sequence = 5",
        "UPDATE audit_auditchainhead SET sequence = 4",
    )

    problem = verify().first_problem

    assert problem.sequence == 4
    assert "chain head" in problem.reason and "hash" in problem.reason


def test_an_event_appended_behind_the_heads_back_is_caught(tamper):
    record("test.event")
    tamper("UPDATE audit_auditchainhead SET sequence = 0")

    assert "chain head names sequence 0" in verify().first_problem.reason


def test_an_emptied_trail_whose_head_says_events_existed_does_not_verify(tamper):
    for n in range(3):
        record("test.event", data={"n": n})
    tamper("DELETE FROM audit_auditevent")

    result = verify()

    assert not result.ok
    assert result.first_problem.sequence == 1
    assert "chain head names sequence 3" in result.first_problem.reason


def test_an_emptied_trail_and_head_with_a_checkpoint_left_does_not_verify(tamper):
    record("test.event")
    checkpoint_create()
    tamper("DELETE FROM audit_auditevent", "DELETE FROM audit_auditchainhead")

    result = verify()

    assert not result.ok
    assert "events removed from the tail" in result.first_problem.reason


def test_an_emptied_trail_and_head_with_an_ingest_key_left_does_not_verify(tamper):
    ingest_key_create(name="gateway", actor="system")
    tamper("DELETE FROM audit_auditevent", "DELETE FROM audit_auditchainhead")

    result = verify()

    assert not result.ok
    assert "ingest key" in result.first_problem.reason


def test_events_without_a_head_row_do_not_verify(tamper):
    record("test.event")
    tamper("DELETE FROM audit_auditchainhead")

    assert "chain head row is missing" in verify().first_problem.reason


def test_a_fresh_empty_trail_still_verifies():
    assert verify().ok
    assert not AuditChainHead.objects.exists()


def test_the_head_check_costs_the_same_queries_whatever_the_length():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert verify().ok
        return len(captured)

    record("test.event")
    checkpoint_create()
    short = queries()
    for n in range(30):
        record("test.event", data={"n": n})
    checkpoint_create()

    assert queries() == short
