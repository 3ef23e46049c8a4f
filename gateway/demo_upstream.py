"""A small upstream MCP server (the SDK's ``MCPServer``) to try the gateway with, and to test it against.

It stands for a company tool behind the gateway: a team wiki with a search, a page reader, a
(sensitive) page deletion, a resource and a prompt. It checks the upstream credential the gateway
holds (``Authorization: Bearer <LANYARD_DEMO_MCP_KEY>``) when one is configured, so the demo shows
that the employee never sees it.
"""

from __future__ import annotations

import hmac

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PAGES = {
    "onboarding": "Welcome! Laptops are issued by IT on day one.",
    "expenses": "Submit expenses within 30 days through the finance portal.",
    "security": "Report phishing to security@example.com.",
}


def build_server() -> MCPServer:
    server = MCPServer("Team Wiki (demo)", instructions="A demo wiki behind the Lanyard gateway.")

    @server.tool(description="Search the wiki's pages by keyword.")
    def search(query: str) -> list[str]:
        return [name for name, text in PAGES.items() if query.lower() in (name + " " + text).lower()]

    @server.tool(description="Read one wiki page.")
    def read_page(name: str) -> str:
        return PAGES.get(name, f"No page named {name}.")

    @server.tool(description="Delete a wiki page (sensitive: most policies deny it).")
    def delete_page(name: str) -> str:
        return f"{name} would be deleted (demo: nothing changes)."

    @server.resource("wiki://pages", description="The list of wiki pages.")
    def pages() -> str:
        return "\n".join(sorted(PAGES))

    @server.prompt(description="Summarise a wiki page.")
    def summarise(name: str) -> str:
        return f"Summarise the wiki page {name!r} in three bullet points."

    return server


class RequireKey:
    """Refuse requests without the upstream credential (the key only the gateway holds)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key:
            sent = dict(scope["headers"]).get(b"authorization", b"").decode()
            if not hmac.compare_digest(sent, f"Bearer {self.key}"):
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(key: str = "") -> Starlette | RequireKey:
    """The Streamable HTTP app at ``/mcp`` (stateless, JSON answers)."""
    app = build_server().streamable_http_app(stateless_http=True, json_response=True)
    return RequireKey(app, key) if key else app
