"""Identity-provider adapters: one module per provider on the shared HTTP core (``http.py``).

    adapter = get_adapter(config)      # config: base.IdpConfig (credentials already decrypted)
    try:
        for page in adapter.iter_grants():
            ...
    finally:
        adapter.close()

Every adapter implements ``base.Adapter``. Grant external ids, stable and unique per source:
Google ``{userKey}:{clientId}``; Entra the oauth2PermissionGrant id or the appRoleAssignment id;
Okta ``{userId}:{clientId}`` (consent) or the refresh-token id; GitHub ``pat:{id}`` (fine-grained)
or ``cred:{credential_id}`` (classic PAT authorised for SAML SSO). ``IdpGrant.extra`` carries what
``revoke_grant`` needs; pass it back unchanged in ``GrantRef.extra``.

Provider extras: ``GitHubAdapter.iter_pat_requests()`` (pending fine-grained PAT requests, as
``base.IdpAccessRequest``) and ``review_pat_request(id, approve=...)``; ``provision()`` approves a PAT
request (``extra["request_id"]``), creates an Entra delegated consent (tenant-wide only with
``extra["confirm_tenant_wide"]``), assigns an Okta app, and returns ``done=False`` for Google.
"""

from __future__ import annotations

from .base import Adapter, IdpConfig, PermanentIdpError, SourceKind


def _registry() -> dict[str, type]:
    from .entra import EntraAdapter
    from .github import GitHubAdapter
    from .google import GoogleWorkspaceAdapter
    from .okta import OktaAdapter

    return {
        SourceKind.GOOGLE_WORKSPACE: GoogleWorkspaceAdapter,
        SourceKind.MICROSOFT_ENTRA: EntraAdapter,
        SourceKind.OKTA: OktaAdapter,
        SourceKind.GITHUB: GitHubAdapter,
    }


def get_adapter(config: IdpConfig, **kwargs) -> Adapter:
    """Return the adapter for ``config.kind`` (raises PermanentIdpError for an unknown kind)."""
    cls = _registry().get(str(config.kind))
    if cls is None:
        raise PermanentIdpError(f"unknown identity-source kind {config.kind!r}", source=config.name)
    return cls(config, **kwargs)


__all__ = ["get_adapter"]
