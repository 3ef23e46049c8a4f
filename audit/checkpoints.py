"""Signed checkpoints over the chain head (CloudTrail-style digests), with an Ed25519 key.

The private key lives outside the database: ``LANYARD_AUDIT_SIGNING_KEY`` (PEM, or the base64 of
the 32 raw private bytes) or ``LANYARD_AUDIT_SIGNING_KEY_FILE`` (a file holding either). With
DEBUG on (or under the test runner) and neither set, a key is generated once under ``var/`` for
the local demo; production refuses to start without one (system check ``lanyard.E001``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core import mail
from django.db import transaction
from django.utils import timezone

from .chain import GENESIS_HASH, encode_datetime, lock_head
from .models import AuditCheckpoint, AuditEvent
from .witness import configured_witness

CHECKPOINT_VERSION = 1
DEV_KEY_NAME = "audit-signing-key.pem"


class SigningKeyError(Exception):
    """The audit signing key is missing or unreadable."""


def _parse_private_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningKeyError(f"the audit signing key cannot be read: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("the audit signing key must be an Ed25519 private key")
    return key


def in_test_environment() -> bool:
    """Return whether Django's test environment is set up (the test runner, pytest-django)."""
    return hasattr(mail, "outbox")  # set by django.test.utils.setup_test_environment()


def signing_key_configured() -> bool:
    """Return whether a signing key is set in the environment (not the DEBUG fallback)."""
    return bool(
        getattr(settings, "LANYARD_AUDIT_SIGNING_KEY", "")
        or getattr(settings, "LANYARD_AUDIT_SIGNING_KEY_FILE", "")
    )


def _dev_key_path() -> Path:
    return Path(settings.VAR_DIR) / DEV_KEY_NAME


def _load_private_key(value: str, path: str, debug: bool) -> Ed25519PrivateKey:
    if value:
        return _parse_private_key(value)
    if path:
        try:
            return _parse_private_key(Path(path).read_text())
        except OSError as exc:
            raise SigningKeyError(f"LANYARD_AUDIT_SIGNING_KEY_FILE cannot be read: {exc}") from None
    if not (debug or in_test_environment()):
        raise SigningKeyError(
            "No audit signing key: set LANYARD_AUDIT_SIGNING_KEY or LANYARD_AUDIT_SIGNING_KEY_FILE."
        )
    dev = _dev_key_path()
    if not dev.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(dev, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    return _parse_private_key(dev.read_text())


@lru_cache(maxsize=8)
def _cached_key(value: str, path: str, debug: bool, dev_path: str) -> Ed25519PrivateKey:
    return _load_private_key(value, path, debug)


def private_key() -> Ed25519PrivateKey:
    """Return the configured signing key (generating the DEBUG one under var/ if needed)."""
    return _cached_key(
        getattr(settings, "LANYARD_AUDIT_SIGNING_KEY", ""),
        getattr(settings, "LANYARD_AUDIT_SIGNING_KEY_FILE", ""),
        settings.DEBUG,
        str(_dev_key_path()),
    )


def public_key() -> Ed25519PublicKey:
    """Return the public half of the signing key."""
    return private_key().public_key()


def public_key_pem(key: Ed25519PublicKey | None = None) -> str:
    """Return a public key as PEM (SubjectPublicKeyInfo)."""
    key = key or public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey | None = None) -> str:
    """Return a short stable id of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    key = key or public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: str) -> Ed25519PublicKey:
    """Parse a PEM public key (for verifying with the public half only)."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("not an Ed25519 public key")
    return key


def message(
    *, sequence: int, head_hash: str, prev_signature: str, created_at: dt.datetime, key: str
) -> bytes:
    """Return the exact bytes a checkpoint signs."""
    body = [
        "lanyard-audit-checkpoint",
        CHECKPOINT_VERSION,
        sequence,
        head_hash,
        prev_signature,
        encode_datetime(created_at),
        key,
    ]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def checkpoint_create(
    *, unless_since: dt.datetime | None = None, unless_signed: bool = False
) -> AuditCheckpoint:
    """Sign the current chain head, covering the previous checkpoint's signature; empty periods too.

    With ``unless_since``, return the latest checkpoint instead when one was made at or after it
    (a beat task delivered twice in one period signs once). With ``unless_signed``, return it
    when it already signs the current head (a burst of revocations signs once).
    """
    key = private_key()
    kid = key_id(key.public_key())
    with transaction.atomic():
        lock_head()  # serialises checkpoints with writers: the head cannot move while we sign
        if unless_since is not None:
            recent = AuditCheckpoint.objects.filter(created_at__gte=unless_since).order_by("-id").first()
            if recent is not None:
                return recent
        last = AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()
        sequence, head_hash = last if last else (0, GENESIS_HASH)
        previous = AuditCheckpoint.objects.order_by("-id").first()
        if unless_signed and previous is not None and previous.head_hash == head_hash:
            return previous
        prev_signature = previous.signature if previous else ""
        created_at = timezone.now()
        signature = key.sign(
            message(
                sequence=sequence,
                head_hash=head_hash,
                prev_signature=prev_signature,
                created_at=created_at,
                key=kid,
            )
        )
        checkpoint = AuditCheckpoint.objects.create(
            created_at=created_at,
            sequence=sequence,
            head_hash=head_hash,
            prev_signature=prev_signature,
            signature=base64.b64encode(signature).decode("ascii"),
            key_id=kid,
        )
        # Witnessed before it commits: a witness that cannot be written rolls the checkpoint back
        # (WitnessError; the task retries), so no checkpoint exists that was not witnessed.
        witness = configured_witness()
        if witness is not None:
            witness.write(checkpoint)
        return checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    id: int
    created_at: dt.datetime
    sequence: int
    head_hash: str
    prev_signature: str
    signature: str
    key_id: str


def signature_valid(row: CheckpointRow, keys: dict[str, Ed25519PublicKey]) -> bool:
    """Return whether the checkpoint's signature verifies under the key it names."""
    key = keys.get(row.key_id)
    if key is None:
        return False
    try:
        signature = base64.b64decode(row.signature, validate=True)
        key.verify(
            signature,
            message(
                sequence=row.sequence,
                head_hash=row.head_hash,
                prev_signature=row.prev_signature,
                created_at=row.created_at,
                key=row.key_id,
            ),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
