"""Verify an exported audit trail offline: no Django, no database, only the stdlib and ``cryptography``.

Like CloudTrail's ``validate-logs``: given the export bundle (``manage.py audit_export_bundle``)
and the published public key, recompute every event's hash, check every link and every
checkpoint signature, and compare with the witness if one is given::

    python -m audit.offline --events events.jsonl --checkpoints checkpoints.jsonl \\
        --public-key audit-public-key.pem [--signing-keys audit-signing-keys.jsonl] \\
        [--witness /srv/lanyard-witness] [--quiet]

Across key rotations: ``--public-key`` names the keys you trust (as published, e.g. the first one);
``--signing-keys`` (from the bundle) lists every key that ever signed, each after the first endorsed
by its predecessor, so trust passes from a published key to its successors without the database.

Exit status 0 when everything verifies, 1 naming each problem, 2 when the files cannot be read.
Anyone holding the export and the public key can run it (an auditor's laptop): this module
imports nothing from Lanyard or Django, and re-implements the two formats it checks, which are
fixed by version numbers: the canonical event encoding (``audit.chain``, CHAIN_VERSION 1) and the
checkpoint message (``audit.checkpoints.message``, CHECKPOINT_VERSION 1). The test suite checks
both against the application's own code.

What it proves: the events in the file are exactly those the signed checkpoints covered, in
order, unedited; a witness, kept where the database's operators cannot write, also proves the
database's checkpoints were not replaced. Events after the last checkpoint verify as a chain but
nothing signed vouches for them yet (reported, not an error).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHAIN_VERSION = 1
CHECKPOINT_VERSION = 1
CHECKPOINT_VERSION_ROTATING = 2  # also signs prev_key_id
ENDORSEMENT_VERSION = 1
GENESIS_HASH = "0" * 64
# The canonical order (audit.chain.HASHED_FIELDS); the export writes each event under these names.
HASHED_FIELDS = (
    "sequence",
    "occurred_at",
    "recorded_at",
    "action",
    "outcome",
    "actor_user_id",
    "actor_identity_id",
    "actor_label",
    "device_id",
    "connector_id",
    "grant_id",
    "source_id",
    "target_type",
    "target_id",
    "target_label",
    "ip",
    "user_agent",
    "correlation_id",
    "external_id",
    "ingest_key_id",
    "data",
    "prev_hash",
)
_TIMES = ("occurred_at", "recorded_at")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_CHECKPOINT_FIELDS = ("id", "created_at", "sequence", "head_hash", "prev_signature", "signature", "key_id")


class InputError(Exception):
    """A file cannot be read at all (exit status 2)."""


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"time without a zone: {text}")
    return value


def event_hash(event: dict) -> str:
    """Return the hash of an exported event (the same bytes as ``audit.chain.canonical``)."""
    row: list[object] = [CHAIN_VERSION]
    for name in HASHED_FIELDS:
        value = event[name]
        if name in _TIMES:
            value = (_time(value) - _EPOCH) // _MICROSECOND
        row.append(value)
    return hashlib.sha256(_dumps(row).encode("ascii")).hexdigest()


def checkpoint_message(cp: dict) -> bytes:
    """Return the bytes a checkpoint signs (``audit.checkpoints.message``)."""
    created = _time(cp["created_at"]).astimezone(dt.UTC).isoformat(timespec="microseconds")
    body = [
        "lanyard-audit-checkpoint",
        CHECKPOINT_VERSION,
        cp["sequence"],
        cp["head_hash"],
        cp["prev_signature"],
        created,
        cp["key_id"],
    ]
    prev_key = cp.get("prev_key_id", "")
    if prev_key:
        body[1] = CHECKPOINT_VERSION_ROTATING
        body.append(prev_key)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"{path}: not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def endorsement_message(key: Ed25519PublicKey, previous_key_id: str, created_at: str) -> bytes:
    """Return the bytes a retiring key signs for its successor (``audit.checkpoints.endorsement_message``)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    created = _time(created_at).astimezone(dt.UTC).isoformat(timespec="microseconds")
    body = [
        "lanyard-audit-key",
        ENDORSEMENT_VERSION,
        key_id(key),
        base64.b64encode(raw).decode("ascii"),
        previous_key_id,
        created,
    ]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def load_signing_keys(
    path: Path, anchors: dict[str, Ed25519PublicKey], report: Report
) -> tuple[dict[str, Ed25519PublicKey], dict[str, int]]:
    """Extend the trusted ``anchors`` down the endorsed succession in ``path``; return keys and order.

    Trust starts at the first listed key that is an anchor and passes to each successor whose
    endorsement its predecessor signed; a broken link is reported and trusts nothing after it.
    """
    keys = dict(anchors)
    order: dict[str, int] = {}
    trusted_prev: Ed25519PublicKey | None = None
    prev_id = ""
    for position, (where, value, error) in enumerate(_lines(path)):
        if value is not None:
            try:
                kid, pem = value["key_id"], value["public_key"]
                previous, endorsement = value["previous_key_id"], value["endorsement"]
                key = serialization.load_pem_public_key(pem.encode())
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError("not an Ed25519 public key")
                if key_id(key) != kid:
                    raise ValueError(f"the public key's id is {key_id(key)}, not {kid}")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                error = f"not a signing key record ({exc})"
        if error:
            report.problems.append(f"signing keys {where}: {error}")
            trusted_prev, prev_id = None, ""
            continue
        order[kid] = position
        endorsed = False
        if previous != prev_id:
            report.problems.append(
                f"signing keys {where}: {kid} names {previous or 'no key'} as its predecessor, "
                f"not {prev_id or 'none'}"
            )
        elif trusted_prev is not None:
            try:
                trusted_prev.verify(
                    base64.b64decode(endorsement, validate=True),
                    endorsement_message(key, previous, value["created_at"]),
                )
                endorsed = True
            except (InvalidSignature, ValueError, binascii.Error, TypeError, KeyError):
                report.problems.append(
                    f"signing keys {where}: the endorsement of {kid} by {prev_id} does not verify"
                )
        if kid in anchors or endorsed:
            keys[kid] = key
            trusted_prev = key
        else:
            keys.pop(kid, None)
            trusted_prev = None
        prev_id = kid
    return keys, order


def succession_problem(cp: dict, previous: dict | None, order: dict[str, int]) -> str:
    """Return why ``cp``'s key does not follow from ``previous``'s ("" when it does)."""
    prev_key = cp.get("prev_key_id", "")
    if previous is None:
        return "names a previous key but no checkpoint precedes it" if prev_key else ""
    if prev_key and prev_key != previous["key_id"]:
        return (
            f"names {prev_key} as the previous key, "
            f"but the previous checkpoint was signed by {previous['key_id']}"
        )
    if cp["key_id"] == previous["key_id"]:
        return ""
    if not prev_key:
        return f"the key changed from {previous['key_id']} to {cp['key_id']} without naming the previous key"
    if (
        cp["key_id"] in order
        and previous["key_id"] in order
        and order[cp["key_id"]] < order[previous["key_id"]]
    ):
        return f"signed by {cp['key_id']}, retired since {previous['key_id']} signed"
    return ""


def signature_valid(cp: dict, keys: dict[str, Ed25519PublicKey]) -> bool:
    key = keys.get(cp["key_id"])
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(cp["signature"], validate=True), checkpoint_message(cp))
    except (InvalidSignature, ValueError, binascii.Error, TypeError):
        return False
    return True


def _lines(path: Path) -> Iterator[tuple[str, dict | None, str]]:
    """Yield (where, object or None, error) for each non-blank line of a JSON Lines file."""
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc}") from None
    with fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            where = f"{path.name}:{number}"
            if not text.endswith("\n"):
                yield where, None, "unterminated line (truncated file?)"
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield where, None, f"not JSON ({exc})"
                continue
            if not isinstance(value, dict):
                yield where, None, "not a JSON object"
                continue
            yield where, value, ""


def _checkpoint_error(value: dict) -> str:
    missing = [name for name in _CHECKPOINT_FIELDS if name not in value]
    if missing:
        return f"not a checkpoint record (missing {', '.join(missing)})"
    if type(value["id"]) is not int or type(value["sequence"]) is not int:
        return "not a checkpoint record (id and sequence must be integers)"
    if not isinstance(value.get("prev_key_id", ""), str):
        return "not a checkpoint record (prev_key_id must be a string)"
    try:
        _time(value["created_at"])
    except (TypeError, ValueError) as exc:
        return f"not a checkpoint record ({exc})"
    return ""


@dataclass
class Report:
    events: int = 0
    first_sequence: int = 0
    last_sequence: int = 0
    checkpoints: int = 0
    witnessed: int | None = None
    unsigned_tail: int = 0
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_checkpoints(
    path: Path, keys: dict[str, Ed25519PublicKey], report: Report, label: str
) -> list[dict]:
    """Read checkpoint records, dropping (and reporting) malformed and badly signed ones."""
    good = []
    for where, value, error in _lines(path):
        if value is not None:
            error = _checkpoint_error(value)
        if not error and not signature_valid(value, keys):
            error = (
                "signature does not verify (forged or edited)"
                if value["key_id"] in keys
                else f"signed by unknown key {value['key_id']}"
            )
        if error:
            report.problems.append(f"{label} {where}: {error}")
            continue
        value["where"] = f"{label} {where}"
        good.append(value)
    return good


def verify(
    events_path: Path,
    checkpoints_path: Path,
    keys: dict[str, Ed25519PublicKey],
    witness_paths: list[Path] | None = None,
    signing_keys_path: Path | None = None,
) -> Report:
    """Check the exported events and checkpoints (and witness records) against the public keys."""
    report = Report()
    order: dict[str, int] = {}
    if signing_keys_path is not None:
        keys, order = load_signing_keys(signing_keys_path, keys, report)
    report.keys = sorted(keys)
    checkpoints = _read_checkpoints(checkpoints_path, keys, report, "checkpoints")
    report.checkpoints = len(checkpoints)
    checkpoints.sort(key=lambda cp: cp["id"])
    prev_signature, prev_sequence = "", 0
    previous = None
    for cp in checkpoints:
        if cp["prev_signature"] != prev_signature:
            report.problems.append(f"{cp['where']}: does not cover the previous checkpoint (one removed?)")
        if cp["sequence"] < prev_sequence:
            report.problems.append(f"{cp['where']}: sequence went back from {prev_sequence}")
        succession = succession_problem(cp, previous, order)
        if succession:
            report.problems.append(f"{cp['where']}: {succession}")
        prev_signature, prev_sequence, previous = cp["signature"], cp["sequence"], cp

    # What must hold at a sequence: {sequence: (head hash, who says so)}.
    pinned: dict[int, tuple[str, str]] = {}
    for cp in checkpoints:
        pinned.setdefault(cp["sequence"], (cp["head_hash"], cp["where"]))
    if witness_paths is not None:
        by_id = {cp["id"]: cp for cp in checkpoints}
        witnessed = []
        for path in witness_paths:
            # a file witness directory, or an object-store prefix downloaded (YYYY/MM/DD/*.jsonl)
            files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
            for file in files:
                witnessed += _read_checkpoints(file, keys, report, "witness")
        report.witnessed = len(witnessed)
        seen = set()
        for record in witnessed:
            seen.add(record["id"])
            mine = by_id.get(record["id"])
            if mine is not None and any(
                mine.get(k, "") != record.get(k, "") for k in (*_CHECKPOINT_FIELDS, "prev_key_id")
            ):
                report.problems.append(f"{mine['where']}: differs from {record['where']} (rewritten)")
            known = pinned.get(record["sequence"])
            if known is not None and known[0] != record["head_hash"]:
                report.problems.append(
                    f"{record['where']} and {known[1]} sign different hashes at sequence {record['sequence']}"
                )
            elif record["sequence"] > 0:
                pinned.setdefault(record["sequence"], (record["head_hash"], record["where"]))
        if seen:
            for cp in checkpoints:
                if cp["id"] > min(seen) and cp["id"] not in seen:
                    report.problems.append(f"{cp['where']}: checkpoint {cp['id']} is not in the witness")
    for sequence, (head_hash, who) in pinned.items():
        if sequence == 0 and head_hash != GENESIS_HASH:
            report.problems.append(f"{who}: an empty chain with a head hash")

    prev_seq: int | None = None
    prev_hash = GENESIS_HASH
    for where, event, error in _lines(events_path):
        if event is None:
            report.problems.append(f"events {where}: {error}")
            break
        try:
            sequence = event["sequence"]
            if type(sequence) is not int:
                raise TypeError("sequence is not an integer")
            digest = event_hash(event)
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"events {where}: not an exported event ({exc})")
            break
        if prev_seq is None:
            report.first_sequence = sequence
            if sequence != 1:
                # A partial export: its first link is taken as given, unless a checkpoint pins it.
                prev_hash = event["prev_hash"]
        elif sequence != prev_seq + 1:
            what = "missing" if sequence > prev_seq + 1 else "out of order"
            report.problems.append(
                f"events {where}: sequence {sequence} after {prev_seq} ({what}: deleted or reordered)"
            )
            break
        if event["prev_hash"] != prev_hash:
            report.problems.append(f"events {where}: sequence {sequence}: prev_hash does not match")
            break
        if digest != event.get("hash"):
            report.problems.append(
                f"events {where}: sequence {sequence}: hash does not match its contents (edited)"
            )
            break
        if sequence in pinned and pinned[sequence][0] != digest:
            report.problems.append(
                f"events {where}: sequence {sequence}: {pinned[sequence][1]} signed another hash (rewritten)"
            )
            break
        prev_seq, prev_hash = sequence, digest
        report.events += 1
    report.last_sequence = prev_seq or 0
    if report.ok or not any(p.startswith("events ") for p in report.problems):
        beyond = [(s, who) for s, (_, who) in pinned.items() if s > report.last_sequence]
        if beyond:
            sequence, who = max(beyond)
            report.problems.append(
                f"{who} signed sequence {sequence} but the events end at {report.last_sequence} (truncated)"
            )
        signed = max((s for s in pinned if s <= report.last_sequence), default=0)
        report.unsigned_tail = report.last_sequence - max(signed, report.first_sequence - 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.offline", description="Verify an exported Lanyard audit trail offline."
    )
    parser.add_argument("--events", type=Path, required=True, help="events.jsonl from audit_export_bundle")
    parser.add_argument("--checkpoints", type=Path, required=True, help="checkpoints.jsonl from the bundle")
    parser.add_argument(
        "--public-key",
        type=Path,
        action="append",
        required=True,
        help="published PEM public key (repeatable)",
    )
    parser.add_argument(
        "--signing-keys",
        type=Path,
        help="audit-signing-keys.jsonl from the bundle: the endorsed successors of the trusted keys",
    )
    parser.add_argument(
        "--witness", type=Path, action="append", help="witness directory or file to compare with (repeatable)"
    )
    parser.add_argument("--quiet", action="store_true", help="print problems only")
    args = parser.parse_args(argv)
    try:
        keys = load_public_keys(args.public_key)
        if args.signing_keys is not None and not args.signing_keys.is_file():
            raise InputError(f"{args.signing_keys}: no such file")
        report = verify(args.events, args.checkpoints, keys, args.witness, args.signing_keys)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"INVALID: {problem}", file=sys.stderr)
    if not args.quiet:
        print(
            f"{report.events} events ({report.first_sequence}..{report.last_sequence}), "
            f"{report.checkpoints} checkpoints"
            + ("" if report.witnessed is None else f", {report.witnessed} witness records")
            + f" checked with key(s) {', '.join(report.keys)}"
        )
        if report.unsigned_tail:
            print(f"note: the last {report.unsigned_tail} events are not covered by a checkpoint yet")
        print("OK: the export verifies" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
