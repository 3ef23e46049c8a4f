"""The one body reader: every way a body can be wrong is a clear 4xx, never a 500."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from django.test import RequestFactory

from httpapi.body import BodyError, decode_json, read_body, read_json


class Point(msgspec.Struct):
    x: int
    y: int


def _request(body: bytes, content_type: str = "application/json", **extra):
    return RequestFactory().generic("POST", "/api", data=body, content_type=content_type, **extra)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"x": 1}', "text/plain", 415, "Send the body as application/json; got text/plain."),
        (b"x=1", "application/x-www-form-urlencoded", 415, "got application/x-www-form-urlencoded"),
        (b"{}", "", 415, "no Content-Type"),
        (b"{" * 10, "application/json", 400, "Malformed JSON."),
        (b"[" * 100_000, "application/json", 400, "nested too deeply"),
        (b'["\xff"]', "application/json", 400, "not valid UTF-8"),
        (b"", "", 400, "empty"),
        (b'{"x": "one", "y": 2}', "application/json", 400, "Expected `int`, got `str` - at `$.x`"),
        (b'{"x": 1}', "application/json", 400, "missing required field `y`"),
        (b"0" * 300_000, "application/json", 413, "over 200000 bytes"),
    ],
)
def test_a_bad_body_is_refused_with_a_clear_status(body, content_type, status, message):
    # The type matters only where the body is JSON: msgspec checks types before it reads strings.
    kind = Point if b'"x"' in body else Any
    with pytest.raises(BodyError) as refused:
        read_json(_request(body, content_type), kind, max_bytes=200_000)
    assert refused.value.status == status
    assert message in refused.value.message


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    request = _request(b"{}", CONTENT_LENGTH="999999")
    with pytest.raises(BodyError) as refused:
        read_body(request, max_bytes=1024)
    assert refused.value.status == 413


def test_a_good_body_decodes_into_its_type_and_json_suffixes_count_as_json():
    assert read_json(_request(b'{"x": 1, "y": 2}'), Point, max_bytes=1024) == Point(1, 2)
    assert read_json(_request(b'{"a": [1]}', "application/merge-patch+json"), max_bytes=1024) == {"a": [1]}
    assert read_json(_request(b"{}", "application/json; charset=utf-8"), max_bytes=1024) == {}


def test_other_content_types_are_named_by_the_endpoint():
    body = read_body(
        _request(b"eyJ.x.y", "application/secevent+jwt"),
        max_bytes=1024,
        content_types=["application/secevent+jwt"],
    )
    assert body == b"eyJ.x.y"
    with pytest.raises(BodyError):
        decode_json(b"[1, 2", Point)
