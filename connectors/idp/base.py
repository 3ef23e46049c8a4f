"""The contract between identity-provider adapters and the rest of Lanyard.

Adapters speak one provider's real API over the shared HTTP core (``connectors.idp.http``) and
map it to the plain dataclasses below. Nothing here imports Django models: the sync service in
``connectors.sync`` turns these records into rows.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class SourceKind(enum.StrEnum):
    GOOGLE_WORKSPACE = "google_workspace"
    MICROSOFT_ENTRA = "microsoft_entra"
    OKTA = "okta"
    GITHUB = "github"


@dataclass(frozen=True, slots=True)
class IdpConfig:
    """Everything an adapter needs to reach one tenant. ``credentials`` is already decrypted."""

    kind: str
    name: str
    base_url: str
    credentials: dict[str, Any] = field(repr=False)  # secrets: never in a repr, a log line or a traceback
    token_url: str = ""
    timeout: float = 10.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    concurrency: int = 8
    page_size: int = 500


@dataclass(slots=True)
class IdpUser:
    external_id: str
    email: str
    name: str = ""
    department: str = ""
    manager_external_id: str | None = None
    status: str = "active"  # active | suspended | deprovisioned
    is_service: bool = False
    # An immutable id other sources share for this person, namespaced: "ad-guid:<onPremisesImmutableId>",
    # "saml:<nameId>", "federation:<id>". Blank when the provider gives none (connectors.people).
    link_key: str = ""


@dataclass(slots=True)
class IdpDevice:
    external_id: str
    name: str = ""
    platform: str = ""
    managed: bool = False
    compliant: bool = False
    owner_external_id: str | None = None
    last_seen: datetime | None = None


@dataclass(slots=True)
class IdpApp:
    """One app as the provider knows it: the "connector path" a grant is matched through."""

    client_id: str
    name: str
    publisher: str = ""
    verified: bool = False
    external_id: str = ""  # e.g. the Entra service-principal object id
    kind: str = "oauth_app"  # oauth_app | mcp_server | api_key | plugin | bot


@dataclass(slots=True)
class IdpGrant:
    """One credential linking an app to an identity (or to the whole tenant)."""

    external_id: str  # stable and unique within the source
    client_id: str
    app_name: str
    kind: str  # oauth_consent | refresh_token | personal_access_token | api_key
    scopes: list[str] = field(default_factory=list)
    user_external_id: str | None = None  # None for tenant-wide consent
    consent_type: str = "principal"  # principal | all_principals
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    token_hint: str = ""  # at most the last characters the provider shows; never a secret
    device_external_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what revoke() needs later (JSON-safe)


@dataclass(slots=True)
class IdpActivity:
    """One AI-relevant event from a provider's log (token events, sign-ins, consent events)."""

    external_id: str
    occurred_at: datetime
    action: str  # e.g. token.authorize, token.revoke, token.activity, signin
    client_id: str = ""
    user_external_id: str | None = None
    user_email: str = ""
    device: IdpDevice | None = None
    ip: str = ""
    user_agent: str = ""
    outcome: str = "success"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class IdpAccessRequest:
    """A request waiting for an org admin at the provider, e.g. a pending GitHub fine-grained PAT request."""

    external_id: str  # what provision() needs in ProvisionRequest.extra["request_id"]
    client_id: str
    app_name: str
    scopes: list[str] = field(default_factory=list)
    user_external_id: str | None = None
    reason: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GrantRef:
    """What a revocation needs to know about a stored grant."""

    external_id: str
    client_id: str
    kind: str
    user_external_id: str | None = None
    consent_type: str = "principal"
    extra: dict[str, Any] = field(default_factory=dict)


class RevokeOutcome(enum.StrEnum):
    REVOKED = "revoked"
    ALREADY_GONE = "already_gone"


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    client_id: str
    scopes: list[str]
    user_external_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. GitHub PAT request id


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    done: bool  # False: the provider has no API for it; a person must do it and record evidence
    detail: str = ""
    grant: IdpGrant | None = None


class IdpError(Exception):
    """Base of every failure an adapter raises. Messages name the source, endpoint and status."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        endpoint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.message = message
        self.source = source
        self.endpoint = endpoint
        self.status = status
        # the provider's own hint (seconds) of when trying again makes sense, if it gave one
        self.retry_after = retry_after
        parts = [p for p in (source, endpoint, f"HTTP {status}" if status else "") if p]
        super().__init__(f"{message} [{' '.join(parts)}]" if parts else message)


class TransientIdpError(IdpError):
    """Worth retrying later: rate limits, 5xx, timeouts, after the core's own retries ran out."""

    transient = True


class PermanentIdpError(IdpError):
    """Not worth retrying: 401, forbidden, a request the provider refuses."""


class MalformedResponse(PermanentIdpError):
    """The provider answered with a body that does not have the documented shape."""


class NotFound(PermanentIdpError):
    """The object does not exist at the provider."""


class ConfirmationRequired(PermanentIdpError):
    """The operation has a tenant-wide effect and must be confirmed explicitly."""


class UnsupportedOperation(PermanentIdpError):
    """The provider has no API for this operation."""


class Adapter(Protocol):
    """One provider. Every ``iter_*`` yields pages (lists) so callers can stream in bulk."""

    config: IdpConfig

    def iter_users(self) -> Iterator[list[IdpUser]]: ...
    def iter_devices(self) -> Iterator[list[IdpDevice]]: ...
    def iter_apps(self) -> Iterator[list[IdpApp]]: ...
    def iter_grants(self) -> Iterator[list[IdpGrant]]: ...
    def iter_activity(self, since: datetime | None = None) -> Iterator[list[IdpActivity]]: ...
    def revoke_grant(self, ref: GrantRef, *, confirm_tenant_wide: bool = False) -> RevokeOutcome: ...
    def provision(self, request: ProvisionRequest) -> ProvisionResult: ...
    def close(self) -> None: ...
