"""Schemathesis fuzzes the API from the generated document, over real HTTP to a live server.

Positive cases (bodies the schema allows) and negative ones (bodies it forbids) go to
``POST /api/v1/events`` with a valid ingest key; every answer must be no 5xx, a documented status
with a documented content type and headers, and a body its schema accepts; a body the schema
forbids must be refused.

Two rules are beyond JSON Schema: a named identity source must exist in the register, and ids are
unique within a batch. So that positive cases reach the recording path and not only the 400,
``_in_register`` points their sources at the two the test creates and numbers their ids apart.
Every check schemathesis has runs, ``positive_data_acceptance`` included: the few rules the schema
states only in words are met by ``_in_register`` too.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks

from activity.ingest.validation import _check_ip, _email_ok, _time, _url_ok
from audit.models import AuditEvent
from audit.services import ingest_key_create
from audit.verify import verify
from lanyard.openapi import SERVER, document
from tests.factories import IdentitySourceFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# Every check schemathesis has (load_all_checks registers the OpenAPI ones): server errors, statuses,
# content types, headers and bodies against the document, negative data refused, positive data
# accepted, methods the document does not list refused with a correct Allow header, the key's
# absence noticed, and the stateful ones (which need links between operations: none here).
load_all_checks()
CHECKS = REGISTRY.get_all()
# A batch over maxItems is refused with 413 (Content Too Large), which the document says.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            }
        }
    }
)
# About 260 requests in some 40 s: generating the bodies costs more than answering them.
EXAMPLES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 110}
BUDGET_SECONDS = 90


SOURCES = ("Acme Google", "okta")


def _in_register(case) -> None:
    """Make a positive case meet the rules its schema states only in words (the descriptions).

    Its sources point at ones that exist and its ids are unique in the batch; an email or MCP URL the
    loose JSON Schema formats allow but Django's validators refuse, an IPv4-compatible address, and a
    time outside years 1-9999 in UTC are replaced by valid ones. Everything else is as generated.
    """
    if not isinstance(case.body, dict):
        return
    for i, event in enumerate(case.body.get("events") or []):
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("id"), str):
            event["id"] = f"{i}-{event['id']}"[:128]
        for part in ("actor", "connector"):
            if isinstance(event.get(part), dict) and event[part].get("source"):
                event[part]["source"] = SOURCES[i % 2]
        actor, connector = event.get("actor"), event.get("connector")
        if isinstance(actor, dict) and actor.get("email") and not _email_ok(actor["email"]):
            actor["email"] = f"person{i}@example.com"
        url = connector.get("mcp_server_url") if isinstance(connector, dict) else None
        if url and not _url_ok(url):
            connector["mcp_server_url"] = f"https://mcp{i}.example.com/sse"
        if event.get("ip") and _ip_refused(event["ip"]):
            event["ip"] = "2001:db8::7"
        if isinstance(event.get("time"), str) and _time(event["time"]) is None:
            event["time"] = "2026-11-29T10:15:00Z"


def _ip_refused(value: str) -> bool:
    refused: list[str] = []
    _check_ip(value, lambda field, message: refused.append(message))
    return bool(refused)


def _fuzz(operation, mode: GenerationMode, session: requests.Session, base_url: str, statuses: Counter):
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if mode is GenerationMode.POSITIVE:
            _in_register(case)
        response = case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=30)
        statuses[response.status_code] += 1

    run()


def test_fuzzing_the_api_finds_no_server_error_and_every_answer_is_documented(live_server, iam, settings):
    # Positive cases name a new client in nearly every event: the discovery cap is not under test here.
    settings.LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR = 10**9
    _, raw = ingest_key_create(name="fuzz", actor=iam, rate_limit_per_minute=1_000_000)
    IdentitySourceFactory(name="Acme Google", kind="google_workspace")
    IdentitySourceFactory(name="Acme Okta", kind="okta")
    schema = schemathesis.openapi.from_dict(document(), config=CONFIG)
    base_url = live_server.url + SERVER
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw}"
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    try:
        for mode in EXAMPLES:
            _fuzz(schema["/events"]["POST"], mode, session, base_url, statuses)
        _fuzz(schema["/openapi.json"]["GET"], GenerationMode.POSITIVE, session, base_url, statuses)
    finally:
        # Closing the keep-alive connection ends the server's handler thread and its database connection.
        session.close()

    elapsed = time.monotonic() - started
    print(f"schemathesis: {statuses.total()} requests in {elapsed:.1f}s, by status {dict(statuses)}")
    assert statuses.total() >= 250
    assert statuses[200] >= 75, "too few batches were accepted for the fuzzing to reach the recording"
    assert elapsed < BUDGET_SECONDS
    # Whatever was accepted went into the chain whole, and the chain still verifies.
    assert AuditEvent.objects.filter(action__startswith="ai.").exists()
    result = verify()
    assert result.ok, result.problems[:3]
