"""The gateway as an OAuth resource server: RFC 9728 metadata per endpoint and the bearer check.

Every request to ``/mcp/<slug>`` is authenticated before anything reaches an upstream: no token or
an unusable one is a 401 whose ``WWW-Authenticate`` points at that endpoint's protected resource
metadata, as the MCP authorization specification requires, so standard clients start the OAuth flow
by themselves. A token bound (RFC 8707) to another endpoint is refused here too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .cache import MISSING, TTLCache
from .introspection import TokenStatus, token_status
from .models import Endpoint
from .services import endpoint_url

#: Token checks of this process, keyed by the token's SHA-256 (gateway/cache.py: ≤ 1 s by default).
TOKENS = TTLCache()


def bearer(request: Request) -> str:
    """The request's bearer token, or "" when it sends none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def memory_tags(claims: dict[str, Any], connector_id: int | None = None) -> list[tuple[str, Any]]:
    """What a memory about this token's holder is tagged with: their e-mail and the connector."""
    connector = claims["lanyard_connector"] if connector_id is None else connector_id
    return [("email", (claims.get("lanyard_email") or "").lower()), ("connector", connector)]


async def checked(token: str) -> TokenStatus:
    """The token's status, from this process's memory while it is fresh, else from the register."""
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    status = TOKENS.get(key)
    if status is MISSING:
        status = await sync_to_async(token_status)(token)
        TOKENS.put(key, status, memory_tags(status.claims) if status.active else ())
    return status


def metadata_url(slug: str) -> str:
    return f"{settings.LANYARD_GATEWAY_URL.rstrip('/')}/.well-known/oauth-protected-resource/mcp/{slug}"


def _endpoint(slug: str) -> Endpoint | None:
    return Endpoint.objects.select_related("connector").filter(slug=slug).first()


async def protected_resource_metadata(request: Request) -> Response:
    """RFC 9728 §3: the document for ``/mcp/<slug>``; unknown slugs are 404."""
    slug = request.path_params["slug"]
    endpoint = await sync_to_async(_endpoint)(slug)
    if endpoint is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(
        {
            "resource": endpoint_url(slug),
            "authorization_servers": [settings.LANYARD_BASE_URL],
            "scopes_supported": ["mcp"],
            "bearer_methods_supported": ["header"],
            "resource_name": endpoint.connector.name,
        }
    )


def challenge(slug: str, error: str = "", description: str = "") -> Response:
    """401 with the RFC 9728 §5.1 ``resource_metadata`` parameter (and RFC 6750's error when a token came)."""
    parts = [f'resource_metadata="{metadata_url(slug)}"', 'scope="mcp"']
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return JSONResponse(
        {"error": error or "unauthorized", "error_description": description or "A bearer token is required."},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer " + ", ".join(parts)},
    )


async def authenticate(request: Request, slug: str) -> tuple[dict[str, Any] | None, Response | None]:
    """The token's claims when usable for this endpoint, else the 401 to send."""
    token = bearer(request)
    if not token:
        return None, challenge(slug)
    status = await checked(token)
    if not status.active:
        return None, challenge(slug, "invalid_token", status.reason)
    if status.claims["aud"] != [endpoint_url(slug)]:
        return None, challenge(slug, "invalid_token", "This token was issued for another connector endpoint.")
    return status.claims, None
