"""The decision point's world: a person, their device, a sanctioned connector they hold, a PEP key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from audit.models import IngestKey
from audit.services import ingest_key_create
from tests.factories import (
    ConnectorFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    PersonFactory,
    UserFactory,
)


@dataclass
class World:
    person: Any
    identity: Any
    device: Any
    connector: Any
    grant: Any
    owner: Any
    key: IngestKey
    raw: str

    def question(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "subject": {
                "type": "identity",
                "id": self.identity.email,
                "properties": {"device": self.device.external_id},
            },
            "action": {"name": "tools/call"},
            "resource": {"type": "connector", "id": str(self.connector.pk), "properties": {"tool": "search"}},
            "context": {},
        }
        body.update(overrides)
        return body


@pytest.fixture(autouse=True)
def fresh_process_state(settings):
    """What a process keeps between decisions (the HR ranking, gathered counts) starts empty per test;
    figures are written in the request (the flusher thread's connection cannot see a test's
    transaction: the one test of the thread uses a transactional database)."""
    from access import entities, recording

    settings.LANYARD_PDP_FLUSH_SECONDS = 0
    entities.forget_hr_order()
    # Another directory's test may have left figures gathered (a live server's decisions): discard
    # them rather than write them; this test may not even have a database.
    recording._buffer.reset()
    yield
    recording._buffer.reset()


@pytest.fixture
def world(db, settings):
    settings.LANYARD_PDP_FLUSH_SECONDS = 0  # write counts at once, so tests can read them
    owner = UserFactory(username="olga", email="olga.owner@example.com")
    person = PersonFactory(name="Ann Analyst", email="ann@example.com")
    identity = IdentityFactory(
        email="ann@example.com", name="Ann Analyst", person=person, external_id="okta-ann"
    )
    person.primary_identity = identity
    person.save()
    device = DeviceFactory(external_id="DEV-ANN-1", owner=identity, compliant=True, managed=True)
    connector = ConnectorFactory(
        name="Notes AI", business_owner=owner, mcp_server_url="https://mcp.notes.example/mcp"
    )
    grant = GrantFactory(connector=connector, identity=identity, source=identity.source)
    key, raw = ingest_key_create(
        name="kong", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE, IngestKey.Scope.ACCESS_SEARCH]
    )
    return World(person, identity, device, connector, grant, owner, key, raw)


@pytest.fixture
def ask(client, world):
    """POST a body to an AuthZEN endpoint with the world's key; return the response."""

    def post(path: str, body: Any, *, raw: str | None = None, **headers: Any):
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return client.post(
            f"/access/v1/{path}",
            data=data,
            content_type=headers.pop("content_type", "application/json"),
            HTTP_AUTHORIZATION=f"Bearer {raw if raw is not None else world.raw}",
            **headers,
        )

    return post
