"""Schemathesis fuzzes the API from the generated document, over real HTTP to a live server.

Positive cases (bodies the schema allows) and negative ones (bodies it forbids) go to
``POST /api/v1/events`` with a valid ingest key; every answer must be no 5xx, a documented status
with a documented content type and headers, and a body its schema accepts; a body the schema
forbids must be refused.

Two rules are beyond JSON Schema: a named identity source must exist in the register, and ids are
unique within a batch. So that positive cases reach the recording path and not only the 400,
``_in_register`` points their sources at the two the test creates and numbers their ids apart.
``positive_data_acceptance`` is still left out: a few batches the schema allows rightly get a 400
(an email address or URL that the format allows and Django's validators refuse).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audit.models import AuditEvent
from audit.services import ingest_key_create
from audit.verify import verify
from lanyard.openapi import SERVER, document
from tests.factories import IdentitySourceFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
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
    """Point a positive case's sources at ones that exist, and make its ids unique in the batch."""
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


def test_fuzzing_the_api_finds_no_server_error_and_every_answer_is_documented(live_server, iam):
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
