"""The gateway's client of the policy decision point (OpenID AuthZEN 1.0, over HTTP).

The gateway and the consent page are policy enforcement points: they ask, they never decide. Any
failure to get an answer (PDP down, slow, malformed answer) is a deny with a reason, never a permit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    answered: bool = True  # False: no answer from the PDP (down, slow, malformed): denied, never cached


def _reason(body: dict[str, Any]) -> str:
    """The person-readable reason in an AuthZEN answer's context, whatever key the PDP used."""
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(context, dict):
        return ""
    for key in ("reason_user", "reason", "message"):
        value = context.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):  # AuthZEN's example shape: {"reason_user": {"en": "..."}}
            for text in value.values():
                if isinstance(text, str) and text:
                    return text
    return ""


def _headers() -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if settings.LANYARD_PDP_KEY:
        headers["Authorization"] = f"Bearer {settings.LANYARD_PDP_KEY}"
    return headers


def _decision(body: Any) -> Decision:
    if not isinstance(body, dict) or not isinstance(body.get("decision"), bool):
        return Decision(False, "The decision point gave no decision.", answered=False)
    return Decision(body["decision"], _reason(body))


def _unreachable(url: str, exc: httpx.HTTPError) -> Decision:
    log.warning("PDP unreachable at %s: %s", url, type(exc).__name__)
    return Decision(False, "The decision point could not be reached; try again shortly.", answered=False)


def _answer(response: httpx.Response) -> Decision:
    """The decision in the PDP's HTTP answer; anything but a well-formed 200 is a deny, not an answer."""
    if response.status_code != 200:
        log.warning("PDP answered %s", response.status_code)
        return Decision(
            False, f"The decision point refused the question (HTTP {response.status_code}).", answered=False
        )
    try:
        return _decision(response.json())
    except ValueError:
        return Decision(False, "The decision point gave no decision.", answered=False)


def _question(subject, action, resource, context) -> tuple[str, dict[str, Any]]:
    payload = {"subject": subject, "action": action, "resource": resource, "context": context or {}}
    return settings.LANYARD_PDP_URL.rstrip("/") + "/access/v1/evaluation", payload


def evaluate(
    *,
    subject: dict[str, Any],
    action: dict[str, Any],
    resource: dict[str, Any],
    context: dict[str, Any] | None = None,
    client: httpx.Client | None = None,
) -> Decision:
    """Ask ``POST /access/v1/evaluation``; fail closed."""
    url, payload = _question(subject, action, resource, context)
    try:
        if client is None:
            with httpx.Client(timeout=settings.LANYARD_PDP_TIMEOUT) as c:
                response = c.post(url, json=payload, headers=_headers())
        else:
            response = client.post(url, json=payload, headers=_headers())
    except httpx.HTTPError as exc:
        return _unreachable(url, exc)
    return _answer(response)


async def aevaluate(
    *,
    subject: dict[str, Any],
    action: dict[str, Any],
    resource: dict[str, Any],
    context: dict[str, Any] | None = None,
    client: httpx.AsyncClient,
) -> Decision:
    """``evaluate`` for the gateway's event loop: one shared async client, no thread per call."""
    url, payload = _question(subject, action, resource, context)
    try:
        response = await client.post(
            url, json=payload, headers=_headers(), timeout=settings.LANYARD_PDP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        return _unreachable(url, exc)
    return _answer(response)
