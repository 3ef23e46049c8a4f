"""Lanyard's SET signing keys: created on first use, rotated by ``manage.py ssf_rotate_key``.

The private key is a PEM encrypted at rest like the identity sources' credentials (``connectors.crypto``,
Fernet with ``LANYARD_ENCRYPTION_KEYS``); the public JWK is stored beside it and published at
``/ssf/jwks.json``. Rotation makes a new key active at once; the old ones stay in the JWKS for
``LANYARD_SSF_KEY_RETENTION_HOURS``, longer than any SET they signed can be accepted (receivers refuse
SETs older than a few minutes), so a receiver with a cached JWKS never meets a kid it cannot find
after one refresh.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import record
from connectors import crypto

from .models import SigningKey

ALGORITHMS = ("ES256", "RS256")
SET_TYPE = "secevent+jwt"


def _generate(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_jwk(private: Any, alg: str, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


def _create(*, actor: Any, now) -> SigningKey:
    alg = settings.LANYARD_SSF_SIGNING_ALG
    private = _generate(alg)
    kid = f"lanyard-{now:%Y%m%d}-{secrets.token_hex(4)}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = SigningKey.objects.create(
        kid=kid,
        alg=alg,
        public_jwk=_public_jwk(private, alg, kid),
        private_key_encrypted=crypto.encrypt_json({"pem": pem}),
        created_at=now,
    )
    record("ssf.key_created", actor=actor, target=key, data={"kid": kid, "alg": alg})
    return key


def key_rotate(*, actor: Any = "system") -> SigningKey:
    """Create a new active signing key; the previous ones retire but stay in the JWKS for a while."""
    now = timezone.now()
    with transaction.atomic():
        retired = list(
            SigningKey.objects.select_for_update()
            .filter(retired_at__isnull=True)
            .values_list("kid", flat=True)
        )
        SigningKey.objects.filter(kid__in=retired).update(retired_at=now)
        key = _create(actor=actor, now=now)
        record("ssf.key_rotated", actor=actor, target=key, data={"kid": key.kid, "retired": retired})
    _private.cache_clear()
    return key


def active_key() -> SigningKey:
    """Return the key new SETs are signed with, creating the first one on first use."""
    key = SigningKey.objects.filter(retired_at__isnull=True).order_by("-created_at", "-pk").first()
    if key is not None:
        return key
    try:
        with transaction.atomic():
            return _create(actor="system", now=timezone.now())
    except IntegrityError:  # pragma: no cover - two processes racing on a kid is astronomically rare
        return SigningKey.objects.filter(retired_at__isnull=True).order_by("-created_at").first()


def published() -> list[SigningKey]:
    """The keys in the JWKS: the active one and those retired within the retention period."""
    active_key()
    cutoff = timezone.now() - timedelta(hours=settings.LANYARD_SSF_KEY_RETENTION_HOURS)
    return list(SigningKey.objects.filter(Q(retired_at__isnull=True) | Q(retired_at__gt=cutoff)))


def jwks() -> dict[str, Any]:
    """Lanyard's JWKS document (public keys only)."""
    return {"keys": [key.public_jwk for key in published()]}


def _load(kid: str, encrypted: str) -> Any:
    pem = crypto.decrypt_json(encrypted)["pem"]
    return serialization.load_pem_private_key(pem.encode(), password=None)


class _Cache:
    """Decrypted private keys by kid, per process (decrypting and parsing a PEM per SET is slow)."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}

    def get(self, key: SigningKey) -> Any:
        if key.kid not in self.keys:
            self.keys[key.kid] = _load(key.kid, key.private_key_encrypted)
        return self.keys[key.kid]

    def cache_clear(self) -> None:
        self.keys.clear()


_private = _Cache()


def sign(claims: dict[str, Any], *, key: SigningKey | None = None) -> tuple[str, str]:
    """Return (kid, the SET) for ``claims`` signed with the active key, ``typ: secevent+jwt``."""
    key = key or active_key()
    token = jwt.encode(
        claims, _private.get(key), algorithm=key.alg, headers={"kid": key.kid, "typ": SET_TYPE}
    )
    return key.kid, token
