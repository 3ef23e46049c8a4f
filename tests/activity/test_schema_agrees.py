"""The published request schema and the validator give the same verdict on every odd batch.

The finding: the document and the validator disagreed both ways (``device: null`` accepted although
the schema said object; empty strings the schema allowed were refused). Every body of the
decoder-agreement suite (every field absent, null, empty, of the wrong type, too long, with NUL,
non-ASCII, plus the specific cases) is checked against the published JSON Schema with format
checks, and must be accepted by the schema exactly when the validator accepts it.
"""

from __future__ import annotations

import jsonschema
import pytest

from activity import ingest
from activity.ingest.validation import TEXT_LIMITS
from lanyard.openapi import document
from tests.activity.test_ingest_decode import GOOD, _cases, _with

# What JSON Schema cannot say, and the document says in words (descriptions): a time whose instant in
# UTC falls outside years 1 to 9999, the deprecated IPv4-compatible IPv6 form, and ids unique within
# the batch. Only there may the validator refuse what the schema allows; anywhere else a difference
# is a contradiction.
STRICTER_THAN_FORMAT = {
    "time='0001-01-01T00:00:00",
    "time='9999-12-31T23:59:59",
    "ip='::0.59.192.76'",
    "a repeated id",
}


def _schema_ok(batch: dict) -> bool:
    doc = document()
    root = {"$ref": "#/components/schemas/EventBatch", "components": doc["components"]}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return validator.is_valid(batch)


def _validator_ok(batch: dict) -> bool:
    try:
        ingest.validate(batch, max_events=1000)
    except ingest.IngestRejected:
        return False
    return True


CASES = list(_cases())


@pytest.mark.parametrize(("name", "events"), CASES, ids=[name for name, _ in CASES])
def test_the_schema_and_the_validator_agree(name, events):
    batch = {"events": events}
    schema, rules = _schema_ok(batch), _validator_ok(batch)
    if name in STRICTER_THAN_FORMAT:
        assert not rules
        return
    assert schema == rules, (
        f"schema says {'valid' if schema else 'invalid'}, validator {'valid' if rules else 'invalid'}"
    )


# Free-text fields: any text within the limit is valid, so the limit alone decides.
FREE_TEXT = [
    "id",
    "actor.source",
    "actor.external_id",
    "actor.name",
    "connector.source",
    "connector.client_id",
    "connector.name",
    "device.id",
    "device.name",
    "device.platform",
    "resource",
    "user_agent",
]


@pytest.mark.parametrize("path", FREE_TEXT)
def test_every_length_limit_is_the_same_in_the_schema_and_the_validator(path):
    """The validator reads its limits from the wire structs, so the three cannot drift apart."""
    limit, _ = TEXT_LIMITS[path]
    at_limit = {"events": [_with(tuple(path.split(".")), "x" * limit)]}
    over = {"events": [_with(tuple(path.split(".")), "x" * (limit + 1))]}
    assert _schema_ok(at_limit) and _validator_ok(at_limit)
    assert not _schema_ok(over) and not _validator_ok(over)


def test_the_good_event_is_good_for_both():
    assert _schema_ok({"events": [GOOD]}) and _validator_ok({"events": [GOOD]})
