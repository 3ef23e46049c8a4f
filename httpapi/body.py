"""The one hardened reader of request bodies for every API: bad input is a clear 4xx, never a 500.

``read_body`` checks the content type (415), the declared and the actual size (413) and returns the
bytes; ``decode_json`` turns them into a value or a typed msgspec struct, refusing invalid UTF-8,
malformed JSON, nesting deeper than the decoder will follow, and values of the wrong type (400).
``read_json`` does both. Nothing is read past the limit and nothing is logged from the body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from django.http import HttpRequest

JSON = ("application/json",)


class BodyError(Exception):
    """A request body refused, with the HTTP status to answer and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _accepts(content_type: str, allowed: Iterable[str]) -> bool:
    for want in allowed:
        if content_type == want:
            return True
        # application/json also admits the structured-syntax suffix: application/merge-patch+json...
        if (
            want == "application/json"
            and content_type.startswith("application/")
            and content_type.endswith("+json")
        ):
            return True
    return False


def read_body(request: HttpRequest, *, max_bytes: int, content_types: Iterable[str] = JSON) -> bytes:
    """Return the request body; raise BodyError for a wrong content type (415) or a body too large (413)."""
    allowed = tuple(content_types)
    content_type = (request.content_type or "").lower()
    no_body = not content_type and request.META.get("CONTENT_LENGTH") in (None, "", "0")
    # No body at all is answered by the decoder ("empty"), not as a wrong content type.
    if not no_body and not _accepts(content_type, allowed):
        raise BodyError(
            415, f"Send the body as {' or '.join(allowed)}; got {content_type or 'no Content-Type'}."
        )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BodyError(400, "Content-Length is not a number.") from None
    if declared > max_bytes:
        raise BodyError(413, f"Request body over {max_bytes} bytes.")
    # Read the stream ourselves: request.body would apply DATA_UPLOAD_MAX_MEMORY_SIZE instead.
    body = request.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BodyError(413, f"Request body over {max_bytes} bytes.")
    return body


def decode_json[T](
    body: bytes,
    type: type[T] = Any,  # noqa: A002
    *,
    decoder: msgspec.json.Decoder | None = None,
) -> T:
    """Return the body decoded as JSON (into ``type`` when given); raise BodyError (400) on anything bad."""
    if not body.strip():
        raise BodyError(400, "The request body is empty; send a JSON document.")
    try:
        return (decoder or msgspec.json.Decoder(type)).decode(body)
    except msgspec.ValidationError as exc:
        raise BodyError(400, f"Invalid request: {exc}.") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        if isinstance(exc, UnicodeDecodeError) or "UTF-8" in str(exc):
            raise BodyError(400, "The request body is not valid UTF-8.") from None
        raise BodyError(400, "Malformed JSON.") from None
    except RecursionError:
        raise BodyError(400, "The JSON document is nested too deeply.") from None


def read_json[T](
    request: HttpRequest,
    type: type[T] = Any,  # noqa: A002
    *,
    max_bytes: int,
    decoder: msgspec.json.Decoder | None = None,
) -> T:
    """Read and decode a JSON request body; raise BodyError with the status to answer."""
    return decode_json(read_body(request, max_bytes=max_bytes), type, decoder=decoder)
