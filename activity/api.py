"""The gateway API: ``POST /api/v1/events`` with an ingest key.

Every answer is encoded from a struct below (or ``ingest.IngestResult``); ``activity.openapi``
documents the endpoint from the same structs.
"""

from __future__ import annotations

import hmac
import logging
import math
from datetime import timedelta
from typing import Annotated

import msgspec
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from audit.models import IngestKey
from audit.services import INGEST_KEY_PREFIX, hash_ingest_key
from httpapi.body import BodyError, read_body
from telemetry import metrics

from . import ingest

logger = logging.getLogger(__name__)
_DUMMY_HASH = hash_ingest_key("lanyard-no-such-key")
UNAUTHORIZED = "Invalid or revoked ingest key."
KEY_USE_PRECISION = timedelta(minutes=1)


class Error(msgspec.Struct):
    """Why the request was refused; nothing was recorded."""

    error: Annotated[str, msgspec.Meta(description="What went wrong, in a sentence.")]


class FieldError(msgspec.Struct):
    """One problem with one field of one event."""

    index: Annotated[
        int | None, msgspec.Meta(description="Position of the event in the batch; null for the batch itself.")
    ]
    field: Annotated[str, msgspec.Meta(description="Dotted path, e.g. actor.email; empty for a whole event.")]
    message: str


class InvalidBatch(msgspec.Struct, omit_defaults=True):
    """Malformed JSON, or invalid events, each error naming the event's index and field."""

    error: Annotated[str, msgspec.Meta(description="What went wrong, in a sentence.")]
    errors: Annotated[
        list[FieldError], msgspec.Meta(description=f"The first {ingest.MAX_ERRORS} problems, in batch order.")
    ] = []


def _json(status: int, body: msgspec.Struct) -> HttpResponse:
    return HttpResponse(msgspec.json.encode(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> HttpResponse:
    return _json(status, Error(error=message))


def _unauthorized() -> HttpResponse:
    response = _error(401, UNAUTHORIZED)
    response["WWW-Authenticate"] = 'Bearer realm="lanyard"'
    return response


def authenticate(header: str) -> IngestKey | None:
    """Return the active key named by an ``Authorization: Bearer`` header, or None."""
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        return None
    parts = raw.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == INGEST_KEY_PREFIX else ""
    key = IngestKey.objects.filter(prefix=prefix).first() if prefix else None
    # Compare even when no key matched, so a wrong prefix and a wrong secret take the same time.
    matches = hmac.compare_digest(hash_ingest_key(raw), key.key_hash if key else _DUMMY_HASH)
    if key is None or not matches or key.revoked_at is not None:
        return None
    return key


def _rate_limited(key: IngestKey) -> int:
    """Count this request in the key's minute window; return seconds to wait, or 0 when allowed."""
    now = timezone.now().timestamp()
    window = int(now // 60)
    name = f"lanyard:ingest-rate:{key.pk}:{key.prefix}:{window}"
    cache.add(name, 0, timeout=120)
    try:
        count = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.set(name, 1, timeout=120)
        count = 1
    if count > key.rate_limit_per_minute:
        return max(1, math.ceil((window + 1) * 60 - now))
    return 0


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> HttpResponse:
    """Accept a batch of AI activity events from a gateway (counted for Prometheus)."""
    response = _events(request)
    if response.status_code >= 400:
        metrics.INGEST_REJECTED.labels(str(response.status_code)).inc()
    return response


def _events(request: HttpRequest) -> HttpResponse:
    key = authenticate(request.headers.get("Authorization", ""))
    if key is None:
        return _unauthorized()
    if IngestKey.Scope.EVENTS_WRITE not in key.scopes:
        return _error(403, "This key lacks the events:write scope.")
    wait = _rate_limited(key)
    if wait:
        response = _error(429, f"Rate limit of {key.rate_limit_per_minute} requests per minute exceeded.")
        response["Retry-After"] = str(wait)
        return response

    try:
        body = read_body(request, max_bytes=settings.LANYARD_INGEST_MAX_BYTES)
    except BodyError as exc:
        return _error(exc.status, exc.message)
    try:
        batch = ingest.decode(body, max_events=settings.LANYARD_INGEST_MAX_EVENTS)
        result = ingest.events_ingest(key=key, events=batch)
    except ingest.MalformedJSON as exc:
        return _json(400, InvalidBatch(error=str(exc)))
    except ingest.IngestRejected as exc:
        errors = [FieldError(**e) for e in exc.errors]
        return _json(400, InvalidBatch(error="Invalid events; nothing was recorded.", errors=errors))
    except ingest.BatchTooLarge as exc:
        return _error(413, str(exc))
    except ingest.DiscoveryLimitReached as exc:
        response = _error(429, str(exc))
        response["Retry-After"] = str(exc.retry_after)
        return response
    except OperationalError:
        # A deadlock or lock timeout against a concurrent writer: nothing was recorded, and a
        # retry with the same event ids is safe.
        logger.warning("ingest batch from key %s hit a database conflict", key.prefix, exc_info=True)
        response = _error(503, "Database busy; nothing was recorded. Retry the same batch.")
        response["Retry-After"] = "1"
        return response
    now = timezone.now()
    # To the minute: every web worker writing the same key row on every batch only contends.
    if key.last_used_at is None or now - key.last_used_at >= KEY_USE_PRECISION:
        IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
    metrics.INGEST_EVENTS.inc(result.accepted)
    return _json(200, result)
