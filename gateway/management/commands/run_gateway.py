"""``manage.py run_gateway``: the managed MCP gateway, a separate stateless ASGI process under uvicorn."""

from __future__ import annotations

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the MCP gateway (/mcp/<connector-slug>) with uvicorn."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.LANYARD_GATEWAY_PORT)

    def handle(self, *args, host: str, port: int, **options) -> None:
        import socket

        from gateway.proxy import create_app

        # Names this process's SET stream at Lanyard's transmitter (gateway/ssf.py): a restart takes it back.
        settings.LANYARD_GATEWAY_INSTANCE = (
            settings.LANYARD_GATEWAY_INSTANCE or f"{socket.gethostname()}:{port}"
        )

        self.stdout.write(f"Lanyard MCP gateway on http://{host}:{port}/mcp/<connector-slug>")
        # workers=1 explicitly: uvicorn would otherwise read WEB_CONCURRENCY (gunicorn's, in the same
        # environment) and refuse an application object. Scale the gateway with more processes instead.
        uvicorn.run(create_app(), host=host, port=port, log_level="info", lifespan="on", workers=1)
