"""Gateway tokens as register grants: issue (record), and revoke the OAuth tokens with the grant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from audit import services as audit
from connectors.models import Connector, Grant, Identity

from . import pdp
from .models import Endpoint

GRANT_PREFIX = "gateway:"


def endpoint_url(slug: str) -> str:
    """The connector endpoint's URL: the RFC 8707 resource every token for it is bound to."""
    return f"{settings.LANYARD_GATEWAY_URL.rstrip('/')}/mcp/{slug}"


def endpoint_for_resource(resource: str) -> Endpoint | None:
    """The endpoint a ``resource`` names exactly (no prefix matching: one token, one connector)."""
    prefix = endpoint_url("")
    if not resource.startswith(prefix):
        return None
    slug = resource[len(prefix) :].rstrip("/")
    if not slug or "/" in slug:
        return None
    return Endpoint.objects.select_related("connector__business_owner").filter(slug=slug).first()


def identity_for_user(user) -> Identity | None:
    """The person's identity in the register (linked to the login), newest first."""
    return Identity.objects.filter(user=user).order_by("-pk").first()


def subject_for(user, identity: Identity | None) -> dict[str, Any]:
    """The AuthZEN subject for a person: their register identity when linked, else their login."""
    if identity is not None:
        properties = {"lanyard_identity": str(identity.pk)}
        return {"type": "identity", "id": identity.email, "properties": properties}
    return {"type": "user", "id": str(user.pk), "properties": {"email": user.email}}


def connector_resource(connector: Connector) -> dict[str, Any]:
    return {"type": "connector", "id": str(connector.pk), "properties": {"name": connector.name}}


def consent_decision(*, user, endpoint: Endpoint) -> pdp.Decision:
    """May this person connect to this connector at all? The PDP answers; the connector must be active."""
    if endpoint.connector.status != Connector.Status.ACTIVE:
        return pdp.Decision(False, f"{endpoint.connector.name} is {endpoint.connector.get_status_display()}.")
    return pdp.evaluate(
        subject=subject_for(user, identity_for_user(user)),
        action={"name": "connect"},
        resource=connector_resource(endpoint.connector),
        context={"via": "gateway_consent"},
    )


def grant_external_id(*, client_id: str, user_id: int, slug: str) -> str:
    return f"{GRANT_PREFIX}{client_id}:{user_id}:{slug}"


def gateway_grant_record(*, token) -> Grant | None:
    """Record (or renew) the register grant for a just-issued access token.

    One grant per person, client and connector; each refresh renews it. Its expiry follows the
    refresh token's, so expiry, attestation and offboarding treat it like any IdP grant.
    """
    resources = token.resource or []
    if len(resources) != 1 or token.user_id is None:
        return None
    endpoint = endpoint_for_resource(resources[0])
    if endpoint is None:
        return None
    now = timezone.now()
    external_id = grant_external_id(
        client_id=token.application.client_id, user_id=token.user_id, slug=endpoint.slug
    )
    identity = identity_for_user(token.user)
    refresh_seconds = settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"]
    expires = now + timedelta(seconds=refresh_seconds)
    with transaction.atomic():
        grant = Grant.objects.select_for_update().filter(source__isnull=True, external_id=external_id).first()
        if grant is None:
            grant = Grant.objects.create(
                connector=endpoint.connector,
                identity=identity,
                external_id=external_id,
                kind=Grant.Kind.PORTAL_CREDENTIAL,
                scopes=token.scope.split(),
                first_seen=now,
                last_seen=now,
                last_used_at=now,
                expires_at=expires,
                idp_data={
                    "issuer": "Lanyard gateway",
                    "client_id": token.application.client_id,
                    "client_name": token.application.name,
                    "user_id": token.user_id,
                    "resource": resources[0],
                    # A headless agent's token (client credentials): the person is its owner.
                    "agent": token.application.authorization_grant_type
                    == token.application.GRANT_CLIENT_CREDENTIALS,
                },
            )
            audit.record(
                "grant.issued",
                actor=token.user,
                connector=endpoint.connector,
                grant=grant,
                target=grant,
                data={"source": "Lanyard gateway", "client": token.application.name, "scopes": grant.scopes},
            )
            return grant
        if grant.status in (Grant.Status.REVOKED, Grant.Status.EXPIRED):
            # A new consent after a revocation: the person was asked again and the PDP permitted.
            grant.check_transition(Grant.Status.ACTIVE)
            grant.status = Grant.Status.ACTIVE
            grant.revoked_at = None
            audit.record(
                "grant.issued",
                actor=token.user,
                connector=endpoint.connector,
                grant=grant,
                target=grant,
                data={"source": "Lanyard gateway", "client": token.application.name, "renewed": True},
            )
        grant.last_seen = now
        grant.expires_at = expires
        grant.save(update_fields=["status", "revoked_at", "last_seen", "expires_at"])
    return grant


def gateway_tokens_revoke(*, grant_ids: list[int]) -> int:
    """Delete the OAuth access and refresh tokens behind these gateway grants; return how many grants.

    Runs inside the transaction that ends the grants, so no token outlives its grant's commit.
    """
    grants = list(
        Grant.objects.filter(
            pk__in=grant_ids, source__isnull=True, external_id__startswith=GRANT_PREFIX
        ).only("pk", "idp_data")
    )
    AccessToken = get_access_token_model()  # noqa: N806
    RefreshToken = get_refresh_token_model()  # noqa: N806
    for grant in grants:
        data = grant.idp_data or {}
        mine = {"application__client_id": data.get("client_id"), "user_id": data.get("user_id")}
        # JSON containment is not portable (SQLite): a person holds few tokens per client, match here.
        ids = [
            t.pk
            for t in AccessToken.objects.filter(**mine).only("pk", "resource")
            if data.get("resource") in (t.resource or [])
        ]
        RefreshToken.objects.filter(**mine, access_token_id__in=ids).delete()
        AccessToken.objects.filter(pk__in=ids).delete()
    return len(grants)
