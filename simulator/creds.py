"""Credentials for the simulated tenant, deterministic per seed, in the shape IdentitySource rows hold."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from .keys import private_key_pem
from .tenant import Tenant, _uuid, b62

ORG = "acmecorp"


def _secret(label: str, seed: int, n: int = 40) -> str:
    return hashlib.sha256(f"lanyard-sim-secret:{label}:{seed}".encode()).hexdigest()[:n]


def entra_tenant_id(seed: int) -> str:
    return _uuid("tenant", seed)


@functools.lru_cache(maxsize=16)
def entra_client(seed: int) -> tuple[str, str]:
    return _uuid("lanyard-client", seed), "sim~" + _secret("entra", seed, 34)


@functools.lru_cache(maxsize=16)
def okta_token(seed: int) -> str:
    return "00" + b62(int(_secret("okta", seed, 48), 16), 40)[:40]


def google_service_account(seed: int) -> dict[str, str]:
    project = f"acmecorp-lanyard-{seed}"
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": _secret("google-key-id", seed),
        "private_key": private_key_pem("google", seed),
        "client_email": f"lanyard-sync@{project}.iam.gserviceaccount.com",
        "client_id": str(100000000000000000000 + int(_secret("google-client", seed, 12), 16)),
    }


def github_app(seed: int) -> dict[str, Any]:
    return {
        "app_id": str(900000 + seed),
        "installation_id": str(70_000_000 + seed),
        "private_key": private_key_pem("github", seed),
        "org": ORG,
    }


@functools.lru_cache(maxsize=16)
def delegated_admin(seed: int, identities: int = 12) -> str:
    # The head of IT (position 9) depends only on the seed once the tenant has ten people or more.
    small = Tenant(seed=seed, identities=min(identities, 12), grants=0)
    return small.email[small.admin]


def credentials(url: str, seed: int = 1, identities: int = 12) -> dict[str, dict[str, Any]]:
    """Return, per source kind, the name, base_url, token_url and credentials Lanyard needs."""
    url = url.rstrip("/")
    tenant_id = entra_tenant_id(seed)
    client_id, client_secret = entra_client(seed)
    return {
        "google_workspace": {
            "kind": "google_workspace",
            "name": "Acme Google Workspace (simulated)",
            "base_url": f"{url}/google",
            "token_url": f"{url}/google/token",
            "credentials": {
                **google_service_account(seed),
                "token_uri": f"{url}/google/token",
                "delegated_admin": delegated_admin(seed, identities),
                "customer_id": "my_customer",
            },
        },
        "microsoft_entra": {
            "kind": "microsoft_entra",
            "name": "Acme Entra ID (simulated)",
            "base_url": f"{url}/entra",
            "token_url": f"{url}/entra/{tenant_id}/oauth2/v2.0/token",
            "credentials": {"tenant_id": tenant_id, "client_id": client_id, "client_secret": client_secret},
        },
        "okta": {
            "kind": "okta",
            "name": "Acme Okta (simulated)",
            "base_url": f"{url}/okta",
            "token_url": "",
            "credentials": {"api_token": okta_token(seed)},
        },
        "github": {
            "kind": "github",
            "name": "Acme GitHub org (simulated)",
            "base_url": f"{url}/github",
            "token_url": "",
            "credentials": github_app(seed),
        },
    }
