"""Lanyard's OAuth2 validator: headless agents get gateway tokens by client credentials, with an owner.

A CI bot or a scheduled agent has no person to sign in and consent. IAM registers it in the admin
(*Django OAuth Toolkit → Applications*: client type *confidential*, grant type *client credentials*,
**user = the agent's owner**). Its token request (``grant_type=client_credentials``, the client
secret, exactly one ``resource``: a registered endpoint) is decided like a consent, for the owner:

- no owner on the application → ``invalid_client``: an agent nobody answers for gets nothing;
- the ``resource`` must name one registered endpoint (RFC 8707), its connector active;
- the decision point must permit the owner to ``connect`` (context ``via: gateway_agent``);

and the token is the owner's, so ``gateway_grant_record`` records it as a register grant held by the
owner's identity (``idp_data.agent``): "My grants", attestations, offboarding (the owner leaves, the
agent's grant goes with them), expiry and revocation apply as to any grant. No refresh token is
issued for client credentials (RFC 6749 §4.4.3): the agent asks again, and is decided again.
"""

from __future__ import annotations

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from connectors.models import Connector

from . import pdp, services


class LanyardOAuth2Validator(OAuth2Validator):
    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs) -> bool:
        """Decide an agent's request while oauthlib validates it (its errors then answer as JSON)."""
        allowed = super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs)
        if allowed and grant_type == "client_credentials":
            self._decide_agent(request)
        return allowed

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        if request.grant_type == "client_credentials":
            request.user = request.client.user  # the owner decided above; DOT sets no user for agents
        return super()._create_access_token(expires, request, token, source_refresh_token)

    @staticmethod
    def _resources(request) -> list[str]:
        value = getattr(request, "resource", None)
        if isinstance(value, list):
            return value
        body = [v for k, v in (getattr(request, "decoded_body", None) or []) if k == "resource"]
        return body or ([value] if isinstance(value, str) and value.strip() else [])

    def _decide_agent(self, request) -> None:
        owner = request.client.user
        if owner is None or not owner.is_active:
            raise errors.InvalidClientError(
                description="This agent has no active owner in Lanyard: IAM must set one first.",
                request=request,
            )
        resources = self._resources(request)
        endpoint = services.endpoint_for_resource(resources[0]) if len(resources) == 1 else None
        if endpoint is None:
            raise errors.CustomOAuth2Error(
                error="invalid_target",
                description="Name exactly one registered connector endpoint as the resource (RFC 8707).",
                request=request,
            )
        if endpoint.connector.status != Connector.Status.ACTIVE:
            raise errors.AccessDeniedError(
                description=f"{endpoint.connector.name} is {endpoint.connector.get_status_display()}.",
                request=request,
            )
        decision = pdp.evaluate(
            subject=services.subject_for(owner, services.identity_for_user(owner)),
            action={"name": "connect"},
            resource=services.connector_resource(endpoint.connector),
            context={"via": "gateway_agent", "agent": request.client.name},
        )
        if not decision.allowed:
            raise errors.AccessDeniedError(
                description=decision.reason or "Lanyard's policy does not permit this agent's owner here.",
                request=request,
            )
