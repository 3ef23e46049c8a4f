"""Encryption at rest for identity-source credentials (Fernet, with key rotation)."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The stored value cannot be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        # Debug and tests only (settings refuse to start without keys otherwise).
        derived = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
        return MultiFernet([Fernet(derived)])
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"LANYARD_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


def get_fernet() -> MultiFernet:
    return _fernet(tuple(settings.LANYARD_ENCRYPTION_KEYS))


def encrypt_json(value: dict[str, Any]) -> str:
    """Return ``value`` serialised and encrypted with the newest key."""
    return get_fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    """Return the dict encrypted in ``token``; any configured key may have encrypted it."""
    if not token:
        return {}
    try:
        return json.loads(get_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise DecryptionError(
            "credentials cannot be decrypted with any key in LANYARD_ENCRYPTION_KEYS"
        ) from None


def rotate(token: str) -> str:
    """Return ``token`` re-encrypted with the newest key."""
    try:
        return get_fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "credentials cannot be decrypted with any key in LANYARD_ENCRYPTION_KEYS"
        ) from None


def is_current(token: str) -> bool:
    """Return whether ``token`` decrypts with the newest key (rotating it would change nothing)."""
    try:
        _fernet(tuple(settings.LANYARD_ENCRYPTION_KEYS)[:1]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


# Every model field holding a value of ``encrypt_json`` (or ``rotate``), as (model, field name);
# each app registers its own in ``AppConfig.ready`` and ``rotate_encryption_key`` walks them all.
_ENCRYPTED_FIELDS: list[tuple[type, str]] = []


def register_encrypted_field(model: type, field_name: str) -> None:
    """Declare that ``model.field_name`` holds encrypted material, so that key rotation covers it."""
    model._meta.get_field(field_name)  # a typo fails at start-up, not at rotation time
    if (model, field_name) not in _ENCRYPTED_FIELDS:
        _ENCRYPTED_FIELDS.append((model, field_name))


def encrypted_fields() -> list[tuple[type, str]]:
    """Return every registered (model, field name) holding encrypted material."""
    return list(_ENCRYPTED_FIELDS)


def fingerprint(secret: str) -> str:
    """Return the SHA-256 fingerprint of token material; the material itself is never stored."""
    return hashlib.sha256(secret.encode()).hexdigest()
