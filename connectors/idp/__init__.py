"""Identity-provider adapters: one module per provider on the shared HTTP core (``http.py``).

adapter = get_adapter(config)      # config: base.IdpConfig
for page in adapter.iter_grants():
    ...
adapter.close()
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
