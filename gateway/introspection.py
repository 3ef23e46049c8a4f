"""Is a gateway access token usable right now? RFC 7662 introspection with the register's verdict.

DOT's introspection says whether the OAuth token is valid; a gateway token is usable only while its
register Grant is active and not held and its connector is active. Nothing here is cached (the
gateway's bounded memory of the answer is in gateway/cache.py), so a
revoked grant or a suspended connector is refused on the very next call, mid-session included.
This is why the gateway validates by introspection (or this function, in-process, when it shares
Lanyard's database read-only) rather than by self-contained JWTs: a JWT stays valid until it expires.
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.http import JsonResponse
from oauth2_provider.models import get_access_token_model
from oauth2_provider.views import IntrospectTokenView

from connectors.models import Connector, Grant

from . import services


@dataclass(frozen=True, slots=True)
class TokenStatus:
    active: bool
    reason: str = ""
    claims: dict[str, Any] = field(default_factory=dict)


def token_status(token_value: str) -> TokenStatus:
    """Two queries whatever the token: the access token with its user and client, then its grant."""
    checksum = hashlib.sha256(token_value.encode("utf-8")).hexdigest()
    token = (
        get_access_token_model()
        .objects.select_related("user", "application")
        .filter(token_checksum=checksum)
        .first()
    )
    if token is None or not token.is_valid() or token.user_id is None or len(token.resource or []) != 1:
        return TokenStatus(False, "The token is unknown, expired or revoked.")
    slug = token.resource[0].rstrip("/").rsplit("/", 1)[-1]
    external_id = services.grant_external_id(
        client_id=token.application.client_id, user_id=token.user_id, slug=slug
    )
    grant = (
        Grant.objects.select_related("connector", "identity")
        .filter(source__isnull=True, external_id=external_id)
        .only(
            "pk",
            "status",
            "held_at",
            "identity__email",
            "device_id",
            "connector__status",
            "connector__name",
            "connector__mcp_server_url",
        )
        .first()
    )
    if grant is None or grant.status != Grant.Status.ACTIVE:
        return TokenStatus(False, "The grant behind this token was revoked.")
    if grant.held_at is not None:
        return TokenStatus(False, "The grant behind this token is on hold.")
    if grant.connector.status != Connector.Status.ACTIVE:
        return TokenStatus(False, f"{grant.connector.name} is {grant.connector.get_status_display()}.")
    claims = {
        "active": True,
        "scope": token.scope,
        "exp": int(calendar.timegm(token.expires.timetuple())),
        "client_id": token.application.client_id,
        "username": token.user.get_username(),
        "sub": str(token.user_id),
        "aud": token.resource,
        "lanyard_grant": grant.pk,
        "lanyard_connector": grant.connector_id,
        "lanyard_identity": grant.identity_id,
        "lanyard_device": grant.device_id,
        "lanyard_email": (grant.identity.email if grant.identity_id else "") or token.user.email,
        "lanyard_connector_url": grant.connector.mcp_server_url,
    }
    return TokenStatus(True, claims=claims)


class GatewayIntrospectView(IntrospectTokenView):
    """RFC 7662 for resource servers (the gateway): DOT's client authentication, Lanyard's verdict."""

    @staticmethod
    def get_token_response(token_value=None):
        if not token_value:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "Token parameter is missing."}, status=400
            )
        status = token_status(token_value)
        return JsonResponse(status.claims if status.active else {"active": False})
