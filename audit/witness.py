"""The witness: every signed checkpoint also written where the database cannot rewrite it.

The database holds the chain, its head and its checkpoints, so someone who controls the
database can cut the tail and rewind everything consistently. A copy of each checkpoint kept
elsewhere, append-only, takes that away: ``audit_verify`` (and ``python -m audit.offline``) compare
the chain with it, and a rewritten or shortened trail no longer matches what was witnessed.

The record (one JSON object per line, keys sorted, the format the offline verifier reads too)::

    {"created_at": "2026-12-07T11:50:00.123456+00:00", "head_hash": "…64 hex…", "id": 42,
     "key_id": "…16 hex…", "prev_signature": "…base64…", "sequence": 1234,
     "prev_key_id": "…16 hex…", "signature": "…base64…", "v": 1}

``id`` is the checkpoint's row id, ``prev_signature`` the previous checkpoint's signature (the
signed message covers it, see ``audit.checkpoints.message``), ``prev_key_id`` the key id of the
previous checkpoint's signature (signed too; blank on the first, and absent from records written
before key rotation existed). Backends:

- ``file`` (the embedded default): one file a day (``checkpoints-YYYY-MM-DD.jsonl``, UTC) in
  ``LANYARD_AUDIT_WITNESS_DIR`` (default ``$LANYARD_VAR_DIR/audit-witness``), opened
  ``O_APPEND`` and written with one ``write`` per line, then ``fsync``. Point the directory at
  storage the database's operators cannot rewrite (another host's mount, ``chattr +a``, a log
  shipper's spool).
- ``s3``: one object per checkpoint in an S3 Object Lock bucket, written with a retention
  date (see ``S3Witness``).
- ``none``: no witness (the database alone; see the README's threat model).

The witness is written inside the checkpoint's transaction, after its row is inserted: if the
witness cannot be written the checkpoint is rolled back (and the task retries), so every
checkpoint in the database has been witnessed. A commit that fails after the write leaves a
witnessed checkpoint the database lacks; ``audit_verify`` accepts that as long as the chain
still holds the hash it signed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

RECORD_VERSION = 1
_FILE = re.compile(r"^checkpoints-\d{4}-\d{2}-\d{2}\.jsonl$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class WitnessError(Exception):
    """The witness cannot be written or read."""


@dataclass(frozen=True, slots=True)
class WitnessRecord:
    id: int
    created_at: dt.datetime
    sequence: int
    head_hash: str
    prev_signature: str
    signature: str
    key_id: str
    where: str  # file:line or object key, for messages
    prev_key_id: str = ""


def record_dict(checkpoint: Any) -> dict[str, Any]:
    """Return the witness record of a checkpoint (an AuditCheckpoint or a CheckpointRow)."""
    from .chain import encode_datetime

    return {
        "v": RECORD_VERSION,
        "id": checkpoint.id,
        "created_at": encode_datetime(checkpoint.created_at),
        "sequence": checkpoint.sequence,
        "head_hash": checkpoint.head_hash,
        "prev_signature": checkpoint.prev_signature,
        "signature": checkpoint.signature,
        "key_id": checkpoint.key_id,
        "prev_key_id": checkpoint.prev_key_id,
    }


def record_line(checkpoint: Any) -> bytes:
    """Return one witness line (JSON, sorted keys, newline-terminated)."""
    return (json.dumps(record_dict(checkpoint), sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def parse_record(text: str, where: str) -> WitnessRecord:
    """Parse one witness line; raise WitnessError naming ``where`` when it is not a record."""
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or value.get("v") != RECORD_VERSION:
            raise ValueError("not a version 1 record")
        fields = {
            "id": value["id"],
            "sequence": value["sequence"],
            "head_hash": value["head_hash"],
            "prev_signature": value["prev_signature"],
            "signature": value["signature"],
            "key_id": value["key_id"],
            "prev_key_id": value.get("prev_key_id", ""),  # absent from records before key rotation
        }
        if type(fields["id"]) is not int or type(fields["sequence"]) is not int:
            raise ValueError("id and sequence must be integers")
        if not all(
            isinstance(fields[k], str)
            for k in ("head_hash", "prev_signature", "signature", "key_id", "prev_key_id")
        ):
            raise ValueError("hashes, signatures and key ids must be strings")
        if not _HEX64.match(fields["head_hash"]):
            raise ValueError("head_hash is not 64 hex digits")
        created_at = dt.datetime.fromisoformat(value["created_at"])
        if created_at.tzinfo is None:
            raise ValueError("created_at has no time zone")
    except (ValueError, KeyError, TypeError) as exc:
        raise WitnessError(f"{where}: not a witness record ({exc})") from None
    return WitnessRecord(created_at=created_at, where=where, **fields)


class Witness(Protocol):
    name: str

    def write(self, checkpoint: Any) -> None: ...

    def records(self) -> Iterator[WitnessRecord | WitnessError]: ...


class FileWitness:
    """Append-only JSON Lines files, one per UTC day, in one directory."""

    name = "file"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, when: dt.datetime) -> Path:
        return self.directory / f"checkpoints-{when.astimezone(dt.UTC):%Y-%m-%d}.jsonl"

    def write(self, checkpoint: Any) -> None:
        line = record_line(checkpoint)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # O_APPEND: every write lands at the end, whoever else has the file open; no seek,
            # no truncation. One write() per line, so concurrent writers never interleave.
            fd = os.open(self.path_for(checkpoint.created_at), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if os.write(fd, line) != len(line):
                    raise WitnessError("short write to the witness file")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WitnessError(f"cannot write the audit witness in {self.directory}: {exc}") from None

    def records(self) -> Iterator[WitnessRecord | WitnessError]:
        if not self.directory.is_dir():
            return
        for path in sorted(p for p in self.directory.iterdir() if _FILE.match(p.name)):
            yield from read_lines(path)


def read_lines(path: Path) -> Iterator[WitnessRecord | WitnessError]:
    """Yield the records of one JSON Lines file (a WitnessError for each bad line)."""
    with path.open("r", encoding="ascii", errors="replace") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            where = f"{path.name}:{number}"
            if not text.endswith("\n"):
                yield WitnessError(f"{where}: unterminated line (a torn write?)")
                continue
            try:
                yield parse_record(text, where)
            except WitnessError as exc:
                yield exc


def configured_witness() -> Witness | None:
    """Return the witness the settings name (``LANYARD_AUDIT_WITNESS``), or None for ``none``.

    Under the test runner an unset directory means no witness: tests share ``var/`` across
    concurrent runs and flush the database between tests, so a shared witness file would
    accumulate checkpoints no test database holds. Tests that exercise the witness set a
    directory of their own.
    """
    from .checkpoints import in_test_environment

    kind = (getattr(settings, "LANYARD_AUDIT_WITNESS", "file") or "file").lower()
    if kind == "none":
        return None
    if kind == "file":
        directory = getattr(settings, "LANYARD_AUDIT_WITNESS_DIR", "")
        if not directory:
            if in_test_environment():
                return None
            directory = Path(settings.VAR_DIR) / "audit-witness"
        return FileWitness(directory)
    if kind == "s3":
        from .witness_s3 import S3Witness

        return S3Witness.from_settings()
    raise WitnessError(f"LANYARD_AUDIT_WITNESS must be file, s3 or none, not {kind!r}")
