"""Lanyard's check on its gateway: once connectors are served through it, it answers and is ready."""

from __future__ import annotations

import dataclasses
import datetime

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings

from telemetry.health import HealthCheck, ServiceUnavailable


def _endpoints_served() -> int:
    from .models import Endpoint

    return Endpoint.objects.count()


@dataclasses.dataclass
class GatewayReady(HealthCheck):
    """The MCP gateway at LANYARD_GATEWAY_URL is ready (database and decision point reachable from it)."""

    title = "MCP gateway and decision point reachable"
    timeout = datetime.timedelta(seconds=5)

    async def run(self) -> None:
        served = await sync_to_async(_endpoints_served)()
        if not served:  # no connector is served through the gateway: nothing depends on it yet
            return
        url = settings.LANYARD_GATEWAY_URL.rstrip("/") + "/readyz"
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                answer = await client.get(url)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"The MCP gateway does not answer at {url} ({type(exc).__name__}), and {served} connector(s) "
                "are served through it: start `manage.py run_gateway` (systemd unit lanyard-gateway) or fix "
                "LANYARD_GATEWAY_URL."
            ) from exc
        try:
            checks = answer.json().get("checks") or {}
        except ValueError:
            checks = {}
        if answer.status_code != 200:
            failing = "; ".join(f"{name}: {state}" for name, state in checks.items() if state != "ok")
            raise ServiceUnavailable(
                f"The MCP gateway at {url} is not ready (HTTP {answer.status_code}"
                + (f"; {failing}" if failing else "")
                + "): MCP clients are refused until it is. Check its LANYARD_PDP_URL and DATABASE_URL."
            )
