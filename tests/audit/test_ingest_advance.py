"""Events recorded by the ingest API stay recorded even if moving usage times forward fails."""

import pytest
from django.db import OperationalError

from audit import ingest
from audit.models import AuditEvent
from audit.services import ingest_key_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lock_conflict_after_commit_does_not_report_the_batch_as_lost(client, monkeypatch):
    _, raw = ingest_key_create(
        name="gw", actor=UserFactory(), scopes=["events:write"], rate_limit_per_minute=100
    )

    def conflict(*args, **kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(ingest, "_advance", conflict)
    event = {
        "id": "e-1",
        "time": "2026-11-29T10:00:00Z",
        "actor": {"email": "someone@example.com"},
        "connector": {"mcp_server_url": "https://mcp.example.com/sse"},
        "action": "tool_call",
        "outcome": "success",
    }
    response = client.post(
        "/api/v1/events",
        {"events": [event]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200, response.content
    assert AuditEvent.objects.filter(external_id__endswith=":e-1").exists()
