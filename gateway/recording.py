"""Every gateway call on the audit chain, in batches, through the ingest API's own writer.

The gateway process shares Lanyard's database, so it calls ``activity.ingest.events_ingest``
in-process with its own ingest key ("Lanyard gateway") instead of POSTing to /api/v1/events: the
same resolution (identity, connector, grant), the same chain, the same idempotency by event id, so
the dashboard, connector activity and exports show gateway traffic with nothing to configure.

Recorded: identity (email), connector, method, tool/resource/prompt name, outcome, latency. Tool
arguments and results are never stored. Events are buffered and flushed every
``LANYARD_GATEWAY_FLUSH_SECONDS`` and on shutdown (the ASGI lifespan), so a SIGTERM flushes.
"""

from __future__ import annotations

import logging
import time
import uuid

import anyio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from activity import ingest
from audit.models import IngestKey
from audit.services import ingest_key_create
from telemetry import metrics

from .services import endpoint_url

log = logging.getLogger(__name__)

KEY_NAME = "Lanyard gateway (in-process)"
OUTCOMES = {
    "success": "success",
    "denied": "denied",
    "upstream_error": "failure",
    "upstream_timeout": "failure",
}
ACTIONS = {
    "tools/call": "tool_call",
    "tools/list": "tools_list",
    "resources/read": "resource_read",
    "resources/list": "resources_list",
    "prompts/get": "prompt_get",
    "prompts/list": "prompts_list",
}


def _gateway_key() -> IngestKey:
    key = IngestKey.objects.filter(name=KEY_NAME, revoked_at__isnull=True).first()
    if key is None:
        key, _raw = ingest_key_create(name=KEY_NAME, actor=None)  # in-process: the raw key is not needed
    return key


def _write(events: list[ingest.Event]) -> None:
    close_old_connections()
    for i, event in enumerate(events):
        event.index = i
    ingest.events_ingest(key=_gateway_key(), events=events)


class Recorder:
    def __init__(self) -> None:
        self.buffer: list[ingest.Event] = []

    async def observe_call(
        self, call, method: str, target: str, outcome: str, started: float, bytes_out: int = 0
    ) -> None:
        """Buffer one event for a decided call (``started``: its ``time.perf_counter()`` start)."""
        elapsed = time.perf_counter() - started
        latency_ms = elapsed * 1000
        metrics.GATEWAY_CALLS.labels(method, outcome).inc()
        metrics.GATEWAY_LATENCY.labels(method).observe(elapsed)
        extra = {
            "via": "gateway",
            "method": method,
            "latency_ms": round(latency_ms, 2),
            "endpoint": call.slug,
            "bytes_in": call.bytes_in,
            "bytes_out": bytes_out,
        }
        if outcome.startswith("upstream_"):
            extra["upstream_status"] = outcome.removeprefix("upstream_")
        self.buffer.append(
            ingest.Event(
                index=0,
                id=uuid.uuid4().hex,
                time=timezone.now(),
                action=f"gateway.{ACTIONS.get(method, 'request')}",
                outcome=OUTCOMES.get(outcome, "unknown"),
                email=call.claims["lanyard_email"],
                mcp_server_url=call.connector_url,
                connector_name=call.connector_name,
                resource=target[:500],
                extra=extra,
            )
        )
        if len(self.buffer) >= 500:
            await self.flush()

    async def flush(self) -> None:
        events, self.buffer = self.buffer, []
        if not events:
            return
        try:
            await sync_to_async(_write, thread_sensitive=False)(events)
        except Exception:
            log.exception("could not record %d gateway events; kept for the next flush", len(events))
            self.buffer[:0] = events

    async def run(self) -> None:
        """Flush periodically until cancelled (the lifespan cancels, then flushes once more)."""
        while True:
            await anyio.sleep(settings.LANYARD_GATEWAY_FLUSH_SECONDS)
            await self.flush()


__all__ = ["Recorder", "endpoint_url"]
