"""A simulated identity-provider tenant: Google Workspace, Entra ID, Okta and GitHub on one local port.

handle = simulator.start(identities=50, grants=400)   # background thread, port 0
creds = simulator.credentials(handle.url)              # per source kind: base_url, token_url, credentials
handle.faults(provider="entra", kind="rate_limit", count=2)
handle.stop()
"""

from __future__ import annotations

from typing import Any

from .creds import credentials
from .server import SimHandle, spawn, start

__all__ = ["SimHandle", "credentials", "idp_config", "idp_configs", "spawn", "start"]


def idp_config(url: str, kind: str, *, seed: int = 1, **overrides: Any):
    """Return a ready ``connectors.idp.base.IdpConfig`` for one simulated source."""
    from connectors.idp.base import IdpConfig

    c = credentials(url, seed=seed)[kind]
    return IdpConfig(
        kind=kind,
        name=c["name"],
        base_url=c["base_url"],
        token_url=c["token_url"],
        credentials=c["credentials"],
        **overrides,
    )


def idp_configs(url: str, *, seed: int = 1, **overrides: Any) -> dict[str, Any]:
    return {kind: idp_config(url, kind, seed=seed, **overrides) for kind in credentials(url, seed=seed)}
