"""Audit fixtures: a signing key per test, a clean cache, and raw tampering as an attacker would."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.cache import cache
from django.db import connection, transaction

from audit.chain import maintenance


@pytest.fixture(autouse=True)
def signing_key(settings):
    """A fresh Ed25519 key in LANYARD_AUDIT_SIGNING_KEY (base64 of the raw private bytes)."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    settings.LANYARD_AUDIT_SIGNING_KEY = base64.b64encode(raw).decode()
    settings.LANYARD_AUDIT_SIGNING_KEY_FILE = ""
    return key


@pytest.fixture(autouse=True)
def witness_dir(settings, tmp_path):
    """Each test's own file witness (the embedded default backend), as production has one."""
    settings.LANYARD_AUDIT_WITNESS = "file"
    settings.LANYARD_AUDIT_WITNESS_DIR = str(tmp_path / "witness")
    return tmp_path / "witness"


@pytest.fixture(autouse=True)
def clean_cache(settings):
    """A private in-memory cache: the default file cache under var/ is shared by concurrent test runs."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "audit-tests"}
    }
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def tamper():
    """Run raw SQL past the append-only triggers, the way someone with database access would."""

    def run(*statements: str) -> None:
        with transaction.atomic(), maintenance(), connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)

    return run
