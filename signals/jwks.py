"""The transmitters' signing keys: fetched with httpx, cached per stream, refreshed on an unknown kid.

A key is looked up by ``kid`` in the cached JWKS. An unknown ``kid`` (the transmitter rotated its key)
triggers one refetch, but at most one fetch per stream every ``LANYARD_SSF_JWKS_MIN_REFETCH`` seconds:
a flood of SETs with invented ``kid``\\s cannot turn Lanyard into a load generator against the IdP. A
cached JWKS older than ``LANYARD_SSF_JWKS_TTL`` seconds is refetched before use. The cache is per
process (a SET is verified without a database or cache round trip, for throughput).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from django.conf import settings

# Asymmetric algorithms only: a JWKS publishes public keys, and "none"/HMAC must never verify a SET.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class KeyError_(Exception):
    """No usable key for the SET (unknown kid after a refresh, or the JWKS could not be fetched)."""


@dataclass
class _Entry:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0  # when the keys were last fetched successfully
    attempted_at: float = float("-inf")  # when a fetch was last attempted (bounds the refetch rate)
    fetches: int = 0
    failed: bool = False  # the last fetch failed


_cache: dict[tuple[str, str], _Entry] = {}
_lock = threading.Lock()


def clear() -> None:
    """Forget every cached JWKS (tests; an admin change of a stream's JWKS URL keys a new entry)."""
    with _lock:
        _cache.clear()


def fetch_count(stream_id: Any, jwks_url: str) -> int:
    entry = _cache.get((str(stream_id), jwks_url))
    return entry.fetches if entry else 0


def _fetch(url: str) -> dict[str, jwt.PyJWK]:
    try:
        response = httpx.get(
            url,
            timeout=settings.LANYARD_SSF_JWKS_TIMEOUT,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        response.raise_for_status()
        data = response.json()
        jwks = jwt.PyJWKSet.from_dict(data)
    except (httpx.HTTPError, ValueError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
        raise KeyError_(f"the transmitter's JWKS could not be fetched: {type(exc).__name__}") from None
    return {k.key_id: k for k in jwks.keys if k.key_id and (k.public_key_use in (None, "sig"))}


def signing_key(stream_id: Any, jwks_url: str, kid: str | None) -> jwt.PyJWK:
    """Return the transmitter's key ``kid``; refetch the JWKS once (rate-bounded) when it is unknown."""
    if not kid:
        raise KeyError_("the SET's header names no kid")
    cache_key = (str(stream_id), jwks_url)
    with _lock:
        entry = _cache.setdefault(cache_key, _Entry())
        now = time.monotonic()
        fresh = bool(entry.fetched_at) and now - entry.fetched_at < settings.LANYARD_SSF_JWKS_TTL
        if fresh and kid in entry.keys:
            return entry.keys[kid]
        # A first load or a TTL refresh is bounded by the TTL itself; a refresh for an unknown kid, or
        # any fetch after a failed one, by the minimum refetch interval.
        if (fresh or entry.failed) and now - entry.attempted_at < settings.LANYARD_SSF_JWKS_MIN_REFETCH:
            if kid in entry.keys:  # stale, but a refetch failed moments ago: keep using what we have
                return entry.keys[kid]
            raise KeyError_(f"unknown kid {kid!r} (the JWKS was fetched moments ago)")
        if fresh or entry.failed:
            entry.attempted_at = now
        entry.fetches += 1
    try:
        keys = _fetch(jwks_url)  # outside the lock: a slow IdP must not stall other streams
    except KeyError_:
        with _lock:
            entry.failed = True
            entry.attempted_at = time.monotonic()
        if kid in entry.keys:
            return entry.keys[kid]
        raise
    with _lock:
        entry.keys = keys
        entry.fetched_at = time.monotonic()
        entry.failed = False
    if kid not in keys:
        raise KeyError_(f"unknown kid {kid!r}: not in the transmitter's JWKS")
    return keys[kid]
