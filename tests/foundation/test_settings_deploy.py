"""Production settings pass Django's deployment checks; missing secrets fail fast."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # Only what the environment holds outside the test run (the browser tests set async-unsafe).
    cleared = {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "LANYARD_ENCRYPTION_KEYS", "DATABASE_URL"}
    cleared |= {"DJANGO_ALLOW_ASYNC_UNSAFE", "LANYARD_AUDIT_SIGNING_KEY", "LANYARD_AUDIT_SIGNING_KEY_FILE"}
    base = {k: v for k, v in os.environ.items() if k not in cleared}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def test_check_deploy_passes_with_production_values(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="lanyard.settings",
        DEBUG="false",
        SECRET_KEY="p" + os.urandom(32).hex() + "-Q#x9!",
        ALLOWED_HOSTS="lanyard.example.com",
        LANYARD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        LANYARD_AUDIT_SIGNING_KEY=_ed25519_pem(),
        LANYARD_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        EMAIL_URL="smtp+tls://lanyard:app-password@smtp.example.com:587",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_start_up_fails_clearly_without_secret_key(tmp_path):
    result = _manage(
        "check", DJANGO_SETTINGS_MODULE="lanyard.settings", DEBUG="false", LANYARD_VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_start_up_fails_clearly_without_encryption_keys(tmp_path):
    result = _manage(
        "check",
        DJANGO_SETTINGS_MODULE="lanyard.settings",
        DEBUG="false",
        SECRET_KEY="x" * 60,
        LANYARD_VAR_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "LANYARD_ENCRYPTION_KEYS is not set" in result.stderr
