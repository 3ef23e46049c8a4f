"""Audit rows are never changed: the ORM refuses, and the database refuses raw SQL too."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.checkpoints import checkpoint_create
from audit.models import AppendOnlyError, AuditCheckpoint, AuditEvent
from audit.services import record
from audit.verify import verify

pytestmark = pytest.mark.django_db


def _raw(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


def test_the_orm_refuses_to_update_or_delete_an_event():
    event = record("test.event")

    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="other")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    event.action = "other"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


def test_the_orm_refuses_to_update_or_delete_a_checkpoint():
    checkpoint = checkpoint_create()

    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.update(sequence=99)
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        checkpoint.delete()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'forged'",
        "DELETE FROM audit_auditevent",
        "UPDATE audit_auditcheckpoint SET sequence = 99",
        "DELETE FROM audit_auditcheckpoint",
        "UPDATE audit_auditsigningkey SET public_key = 'forged'",
        "DELETE FROM audit_auditsigningkey",
    ],
)
def test_the_database_refuses_raw_update_and_delete(sql):
    record("test.event")
    checkpoint_create()

    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql)
    assert AuditEvent.objects.filter(action="test.event").count() == 1
    assert AuditCheckpoint.objects.count() == 1


def test_the_database_refuses_to_empty_the_audit_table_wholesale():
    record("test.event")
    # PostgreSQL's TRUNCATE skips row triggers: a statement trigger guards it. SQLite has no TRUNCATE.
    sql = "TRUNCATE audit_auditevent" if connection.vendor == "postgresql" else "DELETE FROM audit_auditevent"

    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql)
    assert AuditEvent.objects.count() == 1


def test_the_maintenance_flag_lasts_only_for_its_block(tamper):
    record("test.one")
    record("test.two")
    tamper("DELETE FROM audit_auditevent WHERE sequence = 2")

    assert AuditEvent.objects.count() == 1
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_flush_between_transactional_tests_empties_the_audit_tables_and_keeps_the_guard():
    record("test.before_flush")
    checkpoint_create()

    call_command("flush", interactive=False, verbosity=0)

    assert AuditEvent.objects.count() == 0
    assert AuditCheckpoint.objects.count() == 0
    first = record("test.after_flush")
    assert first.sequence == 1
    assert verify(witness=None).ok  # the witness rightly still remembers the wiped trail
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_that_writes_audit_events_tears_down_cleanly():
    # pytest-django flushes after this test: with the triggers, that must still work.
    for n in range(3):
        record("test.transactional", data={"n": n})
    checkpoint_create()
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_next_transactional_test_starts_from_an_empty_chain():
    assert AuditEvent.objects.count() == 0
    assert record("test.fresh").sequence == 1


def test_flush_outside_tests_and_debug_refuses_to_wipe_the_audit_trail(monkeypatch, settings):
    settings.DEBUG = False
    monkeypatch.delattr(mail, "outbox")
    record("test.event")

    with pytest.raises(CommandError, match="--wipe-audit-trail"):
        call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 1
