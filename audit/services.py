"""Writing to the audit trail. Every service that changes state calls ``record`` in its transaction."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from .models import AuditEvent

GENESIS_HASH = "0" * 64


def _canonical(event: AuditEvent) -> bytes:
    body = {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "actor_user": event.actor_user_id,
        "actor_identity": event.actor_identity_id,
        "actor_label": event.actor_label,
        "device": event.device_id,
        "connector": event.connector_id,
        "grant": event.grant_id,
        "source": event.source_id,
        "target": [event.target_type, event.target_id, event.target_label],
        "ip": event.ip,
        "user_agent": event.user_agent,
        "correlation_id": event.correlation_id,
        "external_id": event.external_id,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def record(
    action: str,
    *,
    actor: Any = None,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    connector=None,
    grant=None,
    source=None,
    device=None,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str = "",
    correlation_id: str = "",
    occurred_at=None,
) -> AuditEvent:
    """Append one event to the chain; call it inside the transaction of the change it records."""
    from connectors.models import Identity

    event = AuditEvent(
        action=action,
        outcome=outcome,
        occurred_at=occurred_at or timezone.now(),
        recorded_at=timezone.now(),
        connector=connector,
        grant=grant,
        source=source,
        device=device,
        data=data or {},
        ip=ip or None,
        user_agent=user_agent[:500],
        correlation_id=correlation_id,
    )
    if isinstance(actor, AbstractBaseUser):
        event.actor_user = actor
        event.actor_label = actor.get_username()
    elif isinstance(actor, Identity):
        event.actor_identity = actor
        event.actor_label = actor.email
    else:
        event.actor_label = str(actor or "system")
    if target is not None:
        event.target_type = target._meta.label_lower
        event.target_id = str(target.pk)
        event.target_label = str(target)[:254]
    with transaction.atomic():
        head = AuditEvent.objects.select_for_update().order_by("-sequence").only("sequence", "hash").first()
        event.sequence = (head.sequence + 1) if head else 1
        event.prev_hash = head.hash if head else GENESIS_HASH
        event.hash = hashlib.sha256(_canonical(event)).hexdigest()
        event.save()
    return event
