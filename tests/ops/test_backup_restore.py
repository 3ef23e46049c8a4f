"""The backup/restore drill (README "Backup and restore"): pg_dump, restore into a fresh database,
``audit_verify`` passes there, and the chain continues (services pass: real PostgreSQL)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import uuid

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

from audit.checkpoints import checkpoint_create
from audit.services import record
from tests.ops.test_production import ROOT, _database_url, production_env

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _server_url(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)  # noqa: S603


def test_a_restored_backup_verifies_and_its_chain_continues(tmp_path, settings):
    assert connection.vendor == "postgresql", "the drill runs in the services pass"
    for tool in ("pg_dump", "pg_restore"):
        assert shutil.which(tool), f"{tool} is not on PATH"
    key = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    witness = tmp_path / "witness"
    settings.LANYARD_AUDIT_SIGNING_KEY = key
    settings.LANYARD_AUDIT_WITNESS = "file"
    settings.LANYARD_AUDIT_WITNESS_DIR = str(witness)
    for n in range(20):
        record("drill.event", data={"n": n})
    checkpoint_create()
    record("drill.event", data={"n": 20})  # an unsigned tail: the head row vouches for it
    record("drill.event", data={"n": 21})

    source_url = _database_url()
    dump = tmp_path / "lanyard.dump"
    done = _run(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", f"--dbname={source_url}"])
    assert done.returncode == 0, done.stderr

    restored = f"{connection.settings_dict['NAME']}_restored_{uuid.uuid4().hex[:8]}"
    admin_url = _server_url(source_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        restored_url = _server_url(source_url, restored)
        done = _run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored_url}", str(dump)])
        assert done.returncode == 0, done.stderr

        env = production_env(
            tmp_path,
            LANYARD_AUDIT_SIGNING_KEY=key,
            LANYARD_AUDIT_WITNESS="file",
            LANYARD_AUDIT_WITNESS_DIR=str(witness),
        )
        env["DATABASE_URL"] = restored_url
        manage = [sys.executable, "manage.py"]
        done = _run([*manage, "audit_verify"], env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "22 events, 1 checkpoints checked, 1 witness records compared" in done.stdout
        assert "OK: chain verifies up to sequence 22" in done.stdout

        # The restored database carries on: one more event and a checkpoint, then verify again.
        append = "from audit.services import record; record('drill.after_restore', data={'n': 22})"
        done = _run([*manage, "shell", "-c", append], env)
        assert done.returncode == 0, done.stderr
        done = _run([*manage, "audit_checkpoint"], env)
        assert done.returncode == 0, done.stderr
        assert "signed sequence 23" in done.stdout
        done = _run([*manage, "audit_verify"], env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OK: chain verifies up to sequence 23" in done.stdout
        assert "2 witness records compared" in done.stdout

        with psycopg.connect(restored_url) as db:
            (prev_hash,) = db.execute("SELECT prev_hash FROM audit_auditevent WHERE sequence = 23").fetchone()
            (hash_22,) = db.execute("SELECT hash FROM audit_auditevent WHERE sequence = 22").fetchone()
        assert prev_hash == hash_22  # linked to the last event of the backup

        # And the drill is not a rubber stamp: an edit in the restored copy fails verification.
        with psycopg.connect(restored_url, autocommit=True) as db, db.transaction():
            db.execute("SELECT set_config('lanyard.audit_maintenance', 'on', true)")
            db.execute("UPDATE audit_auditevent SET action = 'drill.forged' WHERE sequence = 5")
        done = _run([*manage, "audit_verify", "--no-witness"], env)
        assert done.returncode == 1
        assert "FAILED at sequence 5" in done.stderr
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
