"""Checkpoints often enough: every few minutes, and at once after a security-relevant event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from audit import services
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import record
from audit.tasks import checkpoint_now
from connectors.services import grant_revoke
from tests.factories import GrantFactory

pytestmark = pytest.mark.django_db


def test_the_default_period_is_five_minutes():
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]

    assert entry["schedule"] == timedelta(minutes=5)
    assert django_settings.LANYARD_AUDIT_CHECKPOINT_MINUTES == 5


def test_a_revocation_is_signed_as_soon_as_it_commits(django_capture_on_commit_callbacks):
    grant = GrantFactory(source=None)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        grant_revoke(grant=grant, actor="system", reason="left the company")

    assert len(callbacks) == 1
    checkpoint = AuditCheckpoint.objects.get()
    revoked = AuditEvent.objects.get(action="grant.revoked")
    assert (checkpoint.sequence, checkpoint.head_hash) == (revoked.sequence, revoked.hash)


def test_ordinary_events_wait_for_the_period(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        record("connector.registered")
        record("ai.tool_call")

    assert callbacks == []
    assert not AuditCheckpoint.objects.exists()


def test_many_security_events_in_one_transaction_enqueue_one_checkpoint(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for n in range(5):
            record("grant.revoked", data={"n": n})
        services.record_batch([{"action": "identity.offboarded"}, {"action": "ai.chat"}])

    assert len(callbacks) == 1
    assert AuditCheckpoint.objects.get().sequence == 7


def test_a_rolled_back_revocation_enqueues_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                record("grant.revoked")
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass

    assert callbacks == []


def test_the_task_signs_nothing_new_when_the_head_is_already_signed():
    record("grant.revoked")
    first = checkpoint_now.delay().get()
    again = checkpoint_now.delay().get()
    record("grant.revoked")
    third = checkpoint_now.delay().get()

    assert first == again != third
    assert AuditCheckpoint.objects.count() == 2


def test_the_actions_are_a_setting(settings, django_capture_on_commit_callbacks):
    settings.LANYARD_AUDIT_CHECKPOINT_ACTIONS = ["connector.registered"]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        record("connector.registered")
        record("grant.revoked")

    assert len(callbacks) == 1


@pytest.mark.django_db(transaction=True)
def test_a_broker_failure_after_commit_is_logged_not_raised(monkeypatch, caplog):
    def down() -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(services, "enqueue_checkpoint", down)

    with transaction.atomic():
        record("grant.revoked")

    assert AuditEvent.objects.filter(action="grant.revoked").exists()
    assert "broker down" in caplog.text
