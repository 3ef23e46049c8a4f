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
from .models import AuditCheckpoint, AuditEvent, AuditSigningKey
from .witness import configured_witness

CHECKPOINT_VERSION = 1
# Version 2 also signs the previous checkpoint's key id (``prev_key_id``); a checkpoint without one
# (the first, and those made before key rotation existed) keeps the version 1 message.
CHECKPOINT_VERSION_ROTATING = 2
ENDORSEMENT_VERSION = 1
DEV_KEY_NAME = "audit-signing-key.pem"


class SigningKeyError(Exception):
    """The audit signing key is missing or unreadable."""


def parse_private_key(text: str) -> Ed25519PrivateKey:
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
        return parse_private_key(value)
    if path:
        try:
            return parse_private_key(Path(path).read_text())
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
    return parse_private_key(dev.read_text())


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
    *,
    sequence: int,
    head_hash: str,
    prev_signature: str,
    created_at: dt.datetime,
    key: str,
    prev_key: str = "",
) -> bytes:
    """Return the exact bytes a checkpoint signs."""
    body: list[object] = [
        "lanyard-audit-checkpoint",
        CHECKPOINT_VERSION_ROTATING if prev_key else CHECKPOINT_VERSION,
        sequence,
        head_hash,
        prev_signature,
        encode_datetime(created_at),
        key,
    ]
    if prev_key:
        body.append(prev_key)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def endorsement_message(*, key: Ed25519PublicKey, previous_key_id: str, created_at: dt.datetime) -> bytes:
    """Return the bytes a retiring key signs to hand over to its successor ``key``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    body = [
        "lanyard-audit-key",
        ENDORSEMENT_VERSION,
        key_id(key),
        base64.b64encode(raw).decode("ascii"),
        previous_key_id,
        encode_datetime(created_at),
    ]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- the key ring: every key that ever signed, as registered in AuditSigningKey ------------------


@dataclass(slots=True)
class KeyRing:
    """Trusted public keys by id, each registered key's place in the succession, and what was wrong."""

    keys: dict[str, Ed25519PublicKey]
    order: dict[str, int]
    problems: list[str]


def key_ring(registered: list[dict], anchors: list[Ed25519PublicKey] | None = None) -> KeyRing:
    """Check the registered succession of keys; return those to trust.

    ``registered`` are AuditSigningKey values in id order. Each key after the first must name its
    predecessor and carry the predecessor's endorsement. Trust starts at the first key (or, with
    ``anchors``, at the first registered key among them) and passes down valid endorsements;
    ``anchors`` not registered at all are trusted as given (a trail from before registration).
    """
    anchor_ids = None if anchors is None else {key_id(k): k for k in anchors}
    keys: dict[str, Ed25519PublicKey] = dict(anchor_ids or {})
    order: dict[str, int] = {}
    problems: list[str] = []
    trusted_prev: Ed25519PublicKey | None = None
    prev_id = ""
    for position, row in enumerate(registered):
        kid = row["key_id"]
        try:
            key = load_public_key(row["public_key"])
        except (SigningKeyError, ValueError) as exc:
            problems.append(f"signing key {kid}: unreadable public key ({exc})")
            trusted_prev, prev_id = None, kid
            continue
        if key_id(key) != kid:
            problems.append(f"signing key {kid}: the public key's id is {key_id(key)}")
            trusted_prev, prev_id = None, kid
            continue
        order[kid] = position
        endorsed = False
        if row["previous_key_id"] != prev_id:
            problems.append(
                f"signing key {kid}: names {row['previous_key_id'] or 'no key'} as its predecessor, "
                f"but the key registered before it is {prev_id or 'none'}"
            )
        elif trusted_prev is not None:
            try:
                trusted_prev.verify(
                    base64.b64decode(row["endorsement"], validate=True),
                    endorsement_message(key=key, previous_key_id=prev_id, created_at=row["created_at"]),
                )
                endorsed = True
            except (InvalidSignature, ValueError, binascii.Error):
                problems.append(f"signing key {kid}: the endorsement by {prev_id} does not verify")
        if (
            (anchor_ids is None and position == 0)
            or (anchor_ids is not None and kid in anchor_ids)
            or endorsed
        ):
            keys[kid] = key
            trusted_prev = key
        else:
            keys.pop(kid, None)
            trusted_prev = None
        prev_id = kid
    return KeyRing(keys, order, problems)


def registered_keys(using: str = "default") -> list[dict]:
    """Return the AuditSigningKey rows as dicts, in the order the keys took over."""
    return list(
        AuditSigningKey.objects.using(using)
        .order_by("id")
        .values("key_id", "public_key", "previous_key_id", "endorsement", "created_at")
    )


def _register_first(key: Ed25519PublicKey) -> AuditSigningKey:
    return AuditSigningKey.objects.create(key_id=key_id(key), public_key=public_key_pem(key))


def _signing_key_in_use(kid: str, key: Ed25519PrivateKey, last: AuditCheckpoint | None) -> None:
    """Refuse to sign with a key that is not registered, or that a successor has replaced."""
    registered = dict(AuditSigningKey.objects.order_by("id").values_list("key_id", "id"))
    if not registered:
        _register_first(key.public_key())  # the first checkpoint (or the first since upgrading)
        return
    if kid not in registered:
        raise SigningKeyError(
            f"the configured audit signing key {kid} is not registered: register a new key with "
            "`manage.py audit_rotate_signing_key` while the current one is still configured, then switch"
        )
    if last is not None and last.key_id in registered and registered[last.key_id] > registered[kid]:
        raise SigningKeyError(
            f"the configured audit signing key {kid} is retired: {last.key_id} has signed since; "
            "configure that key on every process"
        )


def signing_key_rotate(*, new_key: Ed25519PrivateKey, actor: object = "system") -> AuditSigningKey:
    """Register ``new_key`` as the successor of the configured key, endorsed by it; record it."""
    from .services import record

    current = private_key()
    current_id = key_id(current.public_key())
    new_public = new_key.public_key()
    new_id = key_id(new_public)
    with transaction.atomic():
        lock_head()
        if not AuditSigningKey.objects.exists():
            _register_first(current.public_key())
        newest = AuditSigningKey.objects.order_by("-id").first()
        if new_id == current_id or AuditSigningKey.objects.filter(key_id=new_id).exists():
            raise SigningKeyError(f"the key {new_id} is already registered")
        if newest.key_id != current_id:
            raise SigningKeyError(
                f"the configured key {current_id} is not the newest registered key ({newest.key_id}): "
                "configure that one before rotating again"
            )
        created_at = timezone.now()
        endorsement = current.sign(
            endorsement_message(key=new_public, previous_key_id=current_id, created_at=created_at)
        )
        registered = AuditSigningKey.objects.create(
            key_id=new_id,
            public_key=public_key_pem(new_public),
            previous_key_id=current_id,
            endorsement=base64.b64encode(endorsement).decode("ascii"),
            created_at=created_at,
        )
        record(
            "audit.signing_key_rotated",
            actor=actor,
            target=registered,
            data={"key_id": new_id, "previous_key_id": current_id},
        )
    return registered


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
        _signing_key_in_use(kid, key, previous)
        prev_signature = previous.signature if previous else ""
        prev_key = previous.key_id if previous else ""
        created_at = timezone.now()
        signature = key.sign(
            message(
                sequence=sequence,
                head_hash=head_hash,
                prev_signature=prev_signature,
                created_at=created_at,
                key=kid,
                prev_key=prev_key,
            )
        )
        checkpoint = AuditCheckpoint.objects.create(
            created_at=created_at,
            sequence=sequence,
            head_hash=head_hash,
            prev_signature=prev_signature,
            signature=base64.b64encode(signature).decode("ascii"),
            key_id=kid,
            prev_key_id=prev_key,
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
    prev_key_id: str = ""


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
                prev_key=row.prev_key_id,
            ),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def succession_problem(row: CheckpointRow, previous: CheckpointRow | None, order: dict[str, int]) -> str:
    """Return why ``row``'s key does not follow from ``previous``'s ("" when it does)."""
    if previous is None:
        return "names a previous key but no checkpoint precedes it" if row.prev_key_id else ""
    if row.prev_key_id and row.prev_key_id != previous.key_id:
        return (
            f"names {row.prev_key_id} as the previous key, "
            f"but the previous checkpoint was signed by {previous.key_id}"
        )
    if row.key_id == previous.key_id:
        return ""
    if not row.prev_key_id:
        return f"the key changed from {previous.key_id} to {row.key_id} without naming the previous key"
    if row.key_id in order and previous.key_id in order and order[row.key_id] < order[previous.key_id]:
        return f"signed by {row.key_id}, retired since {previous.key_id} signed"
    return ""
