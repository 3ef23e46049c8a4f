"""Lanyard's SSF transmitter endpoints: metadata, JWKS, stream management (SSF 1.0 §7–8), poll (RFC 8936).

Receivers authenticate with ``Authorization: Bearer <token>`` (IAM creates the token in the admin);
each sees only its own streams (another receiver's stream id is 404). Errors are JSON
``{"err", "description"}``: 400 bad input, 401 no or bad token, 404 no such stream, 405, 409, 413, 415.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from httpapi.body import BodyError, read_json

from . import keys, outbox, streams
from .models import TransmitterReceiver, TransmitterStream

MAX_BODY = 65536
MAX_POLL_EVENTS = 1000
DEFAULT_POLL_EVENTS = 100


def _url(name: str, *args: Any) -> str:
    return outbox.issuer().rstrip("/") + reverse(name, args=args)


def _error(status: int, err: str, description: str) -> JsonResponse:
    response = JsonResponse({"err": err, "description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="lanyard-ssf"'
    return response


@require_GET
def configuration(request: HttpRequest) -> JsonResponse:
    """``/.well-known/ssf-configuration``: the transmitter metadata (SSF 1.0 §7.1)."""
    return JsonResponse(
        {
            "spec_version": "1_0",
            "issuer": outbox.issuer(),
            "jwks_uri": _url("signals:jwks"),
            "delivery_methods_supported": list(TransmitterStream.Method.values),
            "configuration_endpoint": _url("signals:streams"),
            "status_endpoint": _url("signals:status"),
            "add_subject_endpoint": _url("signals:subjects_add"),
            "remove_subject_endpoint": _url("signals:subjects_remove"),
            "verification_endpoint": _url("signals:verify"),
            "events_supported": list(outbox.SUPPORTED),
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
            "default_subjects": "ALL",
        }
    )


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(keys.jwks())
    response["Cache-Control"] = "public, max-age=300"
    return response


def stream_config(stream: TransmitterStream) -> dict[str, Any]:
    """A stream's configuration as SSF §8.1.1 shows it (never the push authorization)."""
    delivery: dict[str, Any] = {"method": stream.method}
    if stream.method == TransmitterStream.Method.PUSH:
        delivery["endpoint_url"] = stream.endpoint_url
    else:
        delivery["endpoint_url"] = _url("signals:poll", stream.pk)
    return {
        "stream_id": str(stream.pk),
        "iss": outbox.issuer(),
        "aud": stream.receiver.aud,
        "events_supported": list(outbox.SUPPORTED),
        "events_requested": stream.events_requested,
        "events_delivered": outbox.events_delivered(stream),
        "delivery": delivery,
        "description": stream.description,
        "min_verification_interval": 0,
    }


def status_body(stream: TransmitterStream) -> dict[str, Any]:
    body = {"stream_id": str(stream.pk), "status": stream.status}
    if stream.status_reason:
        body["reason"] = stream.status_reason
    return body


# ------------------------------------------------------------------------------------ plumbing


Handler = Callable[[HttpRequest, TransmitterReceiver], HttpResponse]


def authenticated(methods: tuple[str, ...]) -> Callable[[Handler], Callable[[HttpRequest], HttpResponse]]:
    """Check the method and the receiver's token; turn StreamError and BodyError into JSON answers."""

    def wrap(handler: Handler) -> Callable[..., HttpResponse]:
        @csrf_exempt
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = _error(405, "method_not_allowed", f"Use {', '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            receiver = streams.authenticate(request.headers.get("Authorization"))
            if receiver is None:
                return _error(401, "authentication_failed", "Missing, wrong or revoked bearer token.")
            try:
                return handler(request, receiver, *args, **kwargs)
            except BodyError as exc:
                return _error(exc.status, "invalid_request", exc.message)
            except streams.StreamError as exc:
                return _error(exc.status, exc.err, exc.description)

        return view

    return wrap


def _body(request: HttpRequest) -> Any:
    return read_json(request, max_bytes=MAX_BODY)


def _stream(receiver: TransmitterReceiver, stream_id: Any) -> TransmitterStream:
    """The receiver's own stream ``stream_id``; 400 when missing or malformed, 404 when not theirs."""
    if not isinstance(stream_id, str) or not stream_id:
        raise streams.StreamError(400, "invalid_request", "stream_id is required.")
    try:
        pk = uuid.UUID(stream_id)
    except ValueError:
        raise streams.StreamError(404, "not_found", "No such stream.") from None
    stream = TransmitterStream.objects.select_related("receiver").filter(pk=pk, receiver=receiver).first()
    if stream is None:
        raise streams.StreamError(404, "not_found", "No such stream.")
    return stream


def _body_stream(receiver: TransmitterReceiver, data: Any) -> TransmitterStream:
    if not isinstance(data, dict):
        raise streams.StreamError(400, "invalid_request", "The body must be a JSON object.")
    return _stream(receiver, data.get("stream_id"))


# ------------------------------------------------------------------------------------ endpoints


@authenticated(("GET", "POST", "PATCH", "PUT", "DELETE"))
def stream_collection(request: HttpRequest, receiver: TransmitterReceiver) -> HttpResponse:
    """SSF §8.1.1: create (POST), read (GET), update (PATCH), replace (PUT), delete (DELETE)."""
    if request.method == "GET":
        stream_id = request.GET.get("stream_id")
        if stream_id is not None:
            return JsonResponse(stream_config(_stream(receiver, stream_id)))
        rows = TransmitterStream.objects.filter(receiver=receiver).select_related("receiver")
        return JsonResponse([stream_config(s) for s in rows], safe=False)
    if request.method == "DELETE":
        streams.stream_delete(stream=_stream(receiver, request.GET.get("stream_id")))
        return HttpResponse(status=204)
    data = _body(request)
    if request.method == "POST":
        stream = streams.stream_create(receiver=receiver, data=data)
        return JsonResponse(stream_config(stream), status=201)
    stream = streams.stream_update(
        stream=_body_stream(receiver, data), data=data, replace=request.method == "PUT"
    )
    return JsonResponse(stream_config(stream))


@authenticated(("GET", "POST"))
def stream_status(request: HttpRequest, receiver: TransmitterReceiver) -> HttpResponse:
    """SSF §8.1.2: read or change a stream's status."""
    if request.method == "GET":
        return JsonResponse(status_body(_stream(receiver, request.GET.get("stream_id"))))
    data = _body(request)
    stream = _body_stream(receiver, data)
    stream = streams.stream_set_status(
        stream=stream, status=data.get("status"), reason=data.get("reason", "")
    )
    return JsonResponse(status_body(stream))


@authenticated(("POST",))
def subjects_add(request: HttpRequest, receiver: TransmitterReceiver) -> HttpResponse:
    data = _body(request)
    streams.subject_change(stream=_body_stream(receiver, data), data=data, include=True)
    return HttpResponse(status=200)


@authenticated(("POST",))
def subjects_remove(request: HttpRequest, receiver: TransmitterReceiver) -> HttpResponse:
    data = _body(request)
    streams.subject_change(stream=_body_stream(receiver, data), data=data, include=False)
    return HttpResponse(status=204)


@authenticated(("POST",))
def verify(request: HttpRequest, receiver: TransmitterReceiver) -> HttpResponse:
    data = _body(request)
    streams.stream_verify(stream=_body_stream(receiver, data), data=data)
    return HttpResponse(status=204)


def _poll_request(data: Any) -> tuple[int, bool, list[str], dict[str, dict]]:
    bad = streams.StreamError
    if not isinstance(data, dict):
        raise bad(400, "invalid_request", "The poll request must be a JSON object.")
    max_events = data.get("maxEvents", DEFAULT_POLL_EVENTS)
    if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 0:
        raise bad(400, "invalid_request", "maxEvents must be a whole number, 0 or more.")
    immediately = data.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise bad(400, "invalid_request", "returnImmediately must be true or false.")
    ack = data.get("ack", [])
    if (
        not isinstance(ack, list)
        or not all(isinstance(j, str) and len(j) <= 255 for j in ack)
        or len(ack) > 10000
    ):
        raise bad(400, "invalid_request", "ack must be a list of jti strings.")
    errs = data.get("setErrs", {})
    if not isinstance(errs, dict) or not all(isinstance(v, dict) for v in errs.values()) or len(errs) > 10000:
        raise bad(400, "invalid_request", 'setErrs must map jti to {"err", "description"}.')
    return min(max_events, MAX_POLL_EVENTS), immediately, ack, errs


@authenticated(("POST",))
def poll(request: HttpRequest, receiver: TransmitterReceiver, stream_id: uuid.UUID) -> HttpResponse:
    """RFC 8936 poll: acknowledge (``ack``), report errors (``setErrs``), take outstanding SETs."""
    stream = _stream(receiver, str(stream_id))
    if stream.method != TransmitterStream.Method.POLL:
        raise streams.StreamError(400, "invalid_request", "This stream uses push delivery, not poll.")
    max_events, immediately, ack, errs = _poll_request(_body(request))
    answer = outbox.poll_serve(
        stream=stream, max_events=max_events, return_immediately=immediately, ack=ack, errs=errs
    )
    return JsonResponse({"sets": answer.sets, "moreAvailable": answer.more})
