"""``manage.py demo_mcp_server``: a small upstream MCP server (SDK MCPServer) to put behind the gateway."""

from __future__ import annotations

import os

import uvicorn
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the demo team-wiki MCP server (Streamable HTTP at /mcp) for the gateway to front."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("LANYARD_DEMO_MCP_PORT", "8902")))
        parser.add_argument(
            "--key",
            default=os.environ.get("LANYARD_DEMO_MCP_KEY", ""),
            help="Require 'Authorization: Bearer <key>' (the upstream credential IT registers in Lanyard).",
        )

    def handle(self, *args, host: str, port: int, key: str, **options) -> None:
        from gateway.demo_upstream import build_app

        self.stdout.write(f"Demo MCP server on http://{host}:{port}/mcp" + (" (key required)" if key else ""))
        uvicorn.run(build_app(key), host=host, port=port, log_level="warning")
