"""The gateway as a Shared Signals receiver of Lanyard's own SETs: revocation reaches its memory at once.

Each gateway process remembers token checks, PDP answers and endpoint settings (``gateway/cache.py``).
With ``LANYARD_GATEWAY_SSF_TOKEN`` set (a receiver token IAM issues in *Shared Signals → Transmitter
receivers*), every process also keeps its own SSF 1.0 stream at Lanyard's transmitter, with poll
delivery (RFC 8936), over plain HTTP like any other receiver:

1. at start it finds its stream by description (``lanyard-gateway <instance>``, so a restarted
   process takes its stream back instead of leaving one behind) or creates it, asking for CAEP
   ``session-revoked``, ``credential-change`` and ``token-claims-change``;
2. it polls every ``LANYARD_GATEWAY_SSF_POLL_SECONDS`` (0.25 s), acknowledging what it took;
3. each SET is verified with PyJWT against Lanyard's JWKS (``/ssf/jwks.json``; refetched once on an
   unknown ``kid``, at most every 10 s), with the stream's ``iss`` and ``aud``;
4. it forgets everything its memory holds about the SET's subject: the person (``user`` / ``email``)
   and the connector (``application`` ``connector:<id>``); a subject it cannot map clears it all.

While the stream answers, an entry may be kept for ``LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS``
(30 s) instead of ``LANYARD_GATEWAY_CACHE_SECONDS`` (1 s): a revocation is forgotten within a poll
interval of its SET. When a poll fails, the memory falls back to the short bound at once (an entry
older than it is not used), so a lost stream never lengthens how late a revocation can arrive.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import anyio
import httpx
import jwt
from django.conf import settings

from . import cache

log = logging.getLogger(__name__)

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
EVENTS = [CAEP + "session-revoked", CAEP + "credential-change", CAEP + "token-claims-change"]
POLL_METHOD = "urn:ietf:rfc:8936"


def instance() -> str:
    return settings.LANYARD_GATEWAY_INSTANCE or f"{socket.gethostname()}:{settings.LANYARD_GATEWAY_PORT}"


def description() -> str:
    return f"lanyard-gateway {instance()}"[:500]


def tags_of(claims: dict[str, Any]) -> list[tuple[str, Any]] | None:
    """The memory tags a SET is about; None when its subject cannot be mapped (forget everything)."""
    tags: list[tuple[str, Any]] = []
    subjects = [claims.get("sub_id")] + [
        (p or {}).get("subject") for p in (claims.get("events") or {}).values() if isinstance(p, dict)
    ]
    for subject in filter(None, subjects):
        parts = (
            [subject.get("user"), subject.get("application")]
            if subject.get("format") == "complex"
            else [subject]
        )
        for part in filter(None, parts):
            if part.get("format") == "email" and part.get("email"):
                tags.append(("email", str(part["email"]).lower()))
            elif part.get("format") == "opaque" and str(part.get("id", "")).startswith("connector:"):
                try:
                    tags.append(("connector", int(str(part["id"]).split(":", 1)[1])))
                except ValueError:
                    return None
            else:
                return None
    return tags or None


class SignalListener:
    """Polls this process's stream and makes the memories forget what a SET is about."""

    def __init__(self, memories: Iterable[cache.TTLCache]) -> None:
        self.memories = list(memories)
        self.stream: dict[str, Any] | None = None
        self.jwks: jwt.PyJWKSet | None = None
        self.jwks_fetched = 0.0
        self.error = ""
        self.received = 0

    @property
    def configured(self) -> bool:
        return bool(settings.LANYARD_GATEWAY_SSF_TOKEN)

    def forget(self, tags: list[tuple[str, Any]] | None) -> int:
        if tags is None:
            gone = sum(len(m.entries) for m in self.memories)
            for memory in self.memories:
                memory.clear()
            return gone
        return sum(memory.forget(*tags) for memory in self.memories)

    async def run(self) -> None:
        """Until cancelled: find or create the stream, then poll; a failure is retried with backoff."""
        if not self.configured:
            return
        base = settings.LANYARD_BASE_URL.rstrip("/")
        headers = {"Authorization": f"Bearer {settings.LANYARD_GATEWAY_SSF_TOKEN}"}
        backoff = settings.LANYARD_GATEWAY_SSF_POLL_SECONDS
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            ack: list[str] = []
            while True:
                try:
                    if self.stream is None:
                        self.stream = await self._find_or_create(client)
                    ack, more = await self._poll(client, ack)
                    cache.signals_live_for(2 * settings.LANYARD_GATEWAY_SSF_POLL_SECONDS + 1)
                    self.error, backoff = "", settings.LANYARD_GATEWAY_SSF_POLL_SECONDS
                    if more:
                        continue
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    cache.signals_lost()
                    self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    log.warning("gateway SSF stream: %s", self.error)
                    if isinstance(exc, StreamGone):
                        self.stream = None
                    backoff = min(backoff * 2, 10.0)
                await anyio.sleep(backoff)

    async def _find_or_create(self, client: httpx.AsyncClient) -> dict[str, Any]:
        listed = await client.get("/ssf/streams")
        listed.raise_for_status()
        for stream in listed.json():
            if stream.get("description") == description() and stream["delivery"]["method"] == POLL_METHOD:
                return stream
        created = await client.post(
            "/ssf/streams",
            json={
                "delivery": {"method": POLL_METHOD},
                "events_requested": EVENTS,
                "description": description(),
            },
        )
        created.raise_for_status()
        return created.json()

    async def _poll(self, client: httpx.AsyncClient, ack: list[str]) -> tuple[list[str], bool]:
        assert self.stream is not None
        answer = await client.post(
            f"/ssf/poll/{self.stream['stream_id']}",
            json={"maxEvents": 100, "returnImmediately": True, "ack": ack},
        )
        if answer.status_code == 404:
            raise StreamGone("the stream was deleted at the transmitter; creating it again")
        answer.raise_for_status()
        body = answer.json()
        taken = []
        for jti, token in body["sets"].items():
            claims = await self._verify(client, token)
            if claims is not None:
                self.forget(tags_of(claims))
                self.received += 1
            taken.append(jti)  # a SET that does not verify is acknowledged too: retrying cannot fix it
        return taken, bool(body.get("moreAvailable"))

    async def _verify(self, client: httpx.AsyncClient, token: str) -> dict[str, Any] | None:
        assert self.stream is not None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = await self._key(client, kid)
            return jwt.decode(
                token,
                key,
                algorithms=["ES256", "RS256"],
                audience=self.stream["aud"],
                issuer=self.stream["iss"],
                options={"require": ["iss", "aud", "jti", "iat"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            log.warning("gateway SSF: a SET did not verify (%s); it is dropped", type(exc).__name__)
            return None

    async def _key(self, client: httpx.AsyncClient, kid: Any) -> Any:
        if self.jwks is not None:
            try:
                return self.jwks[kid].key
            except KeyError:
                if time.monotonic() - self.jwks_fetched < 10:
                    raise
        answer = await client.get("/ssf/jwks.json")
        answer.raise_for_status()
        self.jwks, self.jwks_fetched = jwt.PyJWKSet.from_dict(answer.json()), time.monotonic()
        return self.jwks[kid].key

    def state(self) -> str:
        """For /readyz: ``ok``, ``off`` (not configured), or what is wrong."""
        if not self.configured:
            return "off"
        if cache.signals_live():
            return "ok"
        return f"not receiving ({self.error or 'starting'})"


class StreamGone(httpx.HTTPError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


__all__ = ["EVENTS", "SignalListener", "tags_of"]
