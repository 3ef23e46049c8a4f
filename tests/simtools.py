"""Helpers for tests that reach the simulated tenant over HTTP."""

from __future__ import annotations

from connectors.models import IdentitySource


def quick_idp(settings, **overrides) -> None:
    """Make IdP timeouts and backoff short, so fault tests take milliseconds, not production seconds."""
    values = {
        "LANYARD_IDP_TIMEOUT": 2.0,
        "LANYARD_IDP_MAX_RETRIES": 2,
        "LANYARD_IDP_BACKOFF_BASE": 0.01,
        "LANYARD_IDP_BACKOFF_MAX": 0.05,
        **overrides,
    }
    for name, value in values.items():
        setattr(settings, name, value)


def make_source(sim, kind: str, **fields) -> IdentitySource:
    """Create an identity source pointing at the simulator, with its credentials encrypted."""
    spec = sim.credentials()[kind]
    source = IdentitySource(
        kind=kind,
        name=fields.pop("name", spec["name"]),
        base_url=spec["base_url"],
        token_url=spec.get("token_url") or "",
        **fields,
    )
    source.set_credentials(spec["credentials"])
    source.save()
    return source
