"""RFC 8935 push delivery: ``POST /ssf/receive/<stream id>`` with an ``application/secevent+jwt`` body.

202 (no body) when the SET is accepted or was already received; 400 with ``{"err", "description"}``
(RFC 8935 §2.3) when it is refused; 401 ``authentication_failed`` when the stream requires an
Authorization header and the push lacks it; 413/415 (same body shape) for a body too large or of the wrong
type; 404 for an unknown stream; 503 when the database is unavailable, so the transmitter retries.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from httpapi.body import BodyError, read_body
from httpapi.client import client_ip

from .services import receive, refuse, stream_for_push

logger = logging.getLogger(__name__)

CONTENT_TYPES = ("application/secevent+jwt",)


def _error(status: int, err: str, description: str) -> JsonResponse:
    return JsonResponse({"err": err, "description": description}, status=status)


@csrf_exempt
@require_POST
def receive_push(request: HttpRequest, stream_id: uuid.UUID) -> HttpResponse:
    stream = stream_for_push(stream_id)
    ip = client_ip(request)
    if stream is None:
        refuse(None, "invalid_request", f"No stream {stream_id}.", ip=ip)
        return _error(404, "invalid_request", "No such stream.")
    if not stream.authorization_ok(request.headers.get("Authorization")):
        refuse(stream, "authentication_failed", "The push's Authorization header is missing or wrong.", ip=ip)
        response = _error(
            401, "authentication_failed", "The push's Authorization header is missing or wrong."
        )
        response["WWW-Authenticate"] = 'Bearer realm="lanyard-ssf"'
        return response
    try:
        body = read_body(request, max_bytes=settings.LANYARD_SSF_MAX_SET_BYTES, content_types=CONTENT_TYPES)
    except BodyError as exc:
        refuse(stream, "invalid_request", exc.message, ip=ip)
        return _error(exc.status, "invalid_request", exc.message)
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        result = refuse(stream, "invalid_request", "A SET is ASCII (JWS compact serialisation).", ip=ip)
        return JsonResponse(result.body, status=result.status)
    try:
        result = receive(stream, token, ip=ip)
    except DatabaseError:
        logger.exception("SSF: could not record a SET for stream %s", stream.pk)
        response = _error(503, "temporarily_unavailable", "Try again later.")
        response["Retry-After"] = "5"
        return response
    if result.body is None:
        return HttpResponse(status=result.status)
    return JsonResponse(result.body, status=result.status)
