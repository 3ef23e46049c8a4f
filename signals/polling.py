"""RFC 8936 poll delivery: Lanyard fetches SETs from a transmitter that cannot push to it.

Each round posts ``{"maxEvents", "returnImmediately": true, "ack": [...], "setErrs": {...}}`` to the
stream's poll endpoint: the ``jti``\\s acknowledged are those of the previous round's SETs that were
accepted (or already received), and ``setErrs`` reports those refused, with the RFC 8935 error code,
so the transmitter neither redelivers them nor loses them silently. Every SET goes through the same
``services.receive`` as a pushed one (verification, the replay guard, the stored row), and the same
processor acts on it and audits it; a SET is acknowledged once it is stored. Rounds continue
while the transmitter says ``moreAvailable``, up to ``LANYARD_SSF_POLL_MAX_ROUNDS``; a final request
carries the last acknowledgements.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings

from .models import ReceiverStream
from .services import receive

logger = logging.getLogger(__name__)


class PollError(Exception):
    """The transmitter's poll endpoint could not be read (network, status, malformed answer)."""


@dataclass
class PollSummary:
    received: int = 0
    acknowledged: int = 0
    refused: int = 0
    rounds: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def _request(client: httpx.Client, stream: ReceiverStream, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if stream.poll_authorization:
        headers["Authorization"] = stream.poll_authorization
    try:
        response = client.post(stream.poll_url, json=body, headers=headers)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PollError(f"poll of {stream.name} failed: {type(exc).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sets", {}), dict):
        raise PollError(f"poll of {stream.name}: the answer has no sets object")
    return data


def poll_stream(stream: ReceiverStream) -> PollSummary:
    """Poll one stream until the transmitter has nothing more; act on and acknowledge what it sent."""
    summary = PollSummary()
    if not stream.enabled or stream.delivery != ReceiverStream.Delivery.POLL or not stream.poll_url:
        return summary
    ack: list[str] = []
    errs: dict[str, dict[str, str]] = {}
    with httpx.Client(timeout=settings.LANYARD_SSF_JWKS_TIMEOUT) as client:
        for _ in range(settings.LANYARD_SSF_POLL_MAX_ROUNDS):
            data = _request(
                client,
                stream,
                {
                    "maxEvents": settings.LANYARD_SSF_POLL_MAX_EVENTS,
                    "returnImmediately": True,
                    "ack": ack,
                    **({"setErrs": errs} if errs else {}),
                },
            )
            summary.rounds += 1
            summary.acknowledged += len(ack)
            ack, errs = [], {}
            sets = data.get("sets") or {}
            for jti, token in list(sets.items())[: settings.LANYARD_SSF_POLL_MAX_EVENTS]:
                summary.received += 1
                result = receive(stream, token) if isinstance(token, str) else None
                if result is not None and result.status == 202:
                    ack.append(str(jti)[:255])
                else:
                    body = (result.body if result else None) or {
                        "err": "invalid_request",
                        "description": "The SET is not a string.",
                    }
                    errs[str(jti)[:255]] = body
                    summary.errors[str(jti)[:255]] = body["err"]
                    summary.refused += 1
            if not sets or not data.get("moreAvailable"):
                break
        if ack or errs:  # the last acknowledgements, asking for nothing more
            _request(
                client,
                stream,
                {
                    "maxEvents": 0,
                    "returnImmediately": True,
                    "ack": ack,
                    **({"setErrs": errs} if errs else {}),
                },
            )
            summary.acknowledged += len(ack)
    return summary
