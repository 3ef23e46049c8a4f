"""Who may register OAuth clients dynamically (RFC 7591), as IAM sets it.

MCP clients (Claude, VS Code, Cursor, the SDK) register themselves anonymously before the person
signs in, so ``open`` is the mode that lets them connect with no custom code. IAM narrows it with
``LANYARD_GATEWAY_DCR`` (``open``, ``authenticated`` = signed-in users only, ``off``) and with the
redirect hosts allowed (``LANYARD_GATEWAY_DCR_REDIRECT_HOSTS``; loopback is always allowed, RFC 8252).
A registration grants nothing by itself: every token still needs the person's consent and the PDP.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.conf import settings
from oauth2_provider.dcr import IsAuthenticatedDCRPermission

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def redirect_uri_allowed(uri: str) -> bool:
    """Loopback (any port), a configured host, or a custom scheme IAM listed (vscode, cursor)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if parts.scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        if host in LOOPBACK:
            return True
        return parts.scheme == "https" and host in settings.LANYARD_GATEWAY_DCR_REDIRECT_HOSTS
    return parts.scheme in settings.LANYARD_GATEWAY_DCR_REDIRECT_SCHEMES


class IamRegistrationPermission:
    """Registration allowed by the mode IAM set, with every redirect URI on the allow list."""

    def has_permission(self, request) -> bool:
        mode = settings.LANYARD_GATEWAY_DCR
        if mode == "off":
            return False
        if mode == "authenticated" and not IsAuthenticatedDCRPermission().has_permission(request):
            return False
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return True  # let the view answer invalid_client_metadata
        uris = body.get("redirect_uris") if isinstance(body, dict) else None
        if not isinstance(uris, list):
            return True
        return all(isinstance(u, str) and redirect_uri_allowed(u) for u in uris)
