"""Verify the audit trail end to end: hashes, contiguity, links, checkpoint signatures and coverage.

The walk streams the events in sequence order in chunks (constant memory) and stops at the first
bad event. Checkpoints are few (one per period) and are read whole. The reported sequence is the
first one that cannot be trusted, with the reason.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import DEFAULT_DB_ALIAS

from .chain import GENESIS_HASH, HASHED_FIELDS, canonical
from .checkpoints import CheckpointRow, key_id, public_key, signature_valid
from .models import AuditCheckpoint, AuditEvent

_PREV = HASHED_FIELDS.index("prev_hash")
_HASH = len(HASHED_FIELDS)


@dataclass(frozen=True, slots=True)
class Problem:
    sequence: int
    reason: str

    def __str__(self) -> str:
        return f"sequence {self.sequence}: {self.reason}"


@dataclass(slots=True)
class VerifyResult:
    events: int = 0
    checkpoints: int = 0
    head_sequence: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.sequence) if self.problems else None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _check_checkpoints(
    rows: list[CheckpointRow], keys: dict[str, Ed25519PublicKey], result: VerifyResult
) -> dict[int, tuple[str, int]]:
    """Check signatures and the signature chain; return {sequence: (head_hash, checkpoint id)}."""
    expected: dict[int, tuple[str, int]] = {}
    prev_signature, prev_sequence = "", 0
    for row in rows:
        if not signature_valid(row, keys):
            reason = "signature does not verify" if row.key_id in keys else f"unknown key {row.key_id}"
            result.problems.append(Problem(row.sequence, f"checkpoint {row.id}: {reason}"))
            return expected
        if row.prev_signature != prev_signature:
            result.problems.append(
                Problem(row.sequence, f"checkpoint {row.id}: does not cover the previous checkpoint")
            )
            return expected
        if row.sequence < prev_sequence:
            result.problems.append(
                Problem(row.sequence, f"checkpoint {row.id}: sequence went back from {prev_sequence}")
            )
            return expected
        expected.setdefault(row.sequence, (row.head_hash, row.id))
        prev_signature, prev_sequence = row.signature, row.sequence
    return expected


def verify(
    *,
    using: str = DEFAULT_DB_ALIAS,
    chunk_size: int = 10_000,
    public_keys: list[Ed25519PublicKey] | None = None,
) -> VerifyResult:
    """Walk the chain and the checkpoints; return what was checked and the problems found."""
    started = time.perf_counter()
    result = VerifyResult()
    keys = {key_id(k): k for k in (public_keys or [public_key()])}

    rows = [
        CheckpointRow(*values)
        for values in AuditCheckpoint.objects.using(using)
        .order_by("id")
        .values_list("id", "created_at", "sequence", "head_hash", "prev_signature", "signature", "key_id")
    ]
    result.checkpoints = len(rows)
    expected = _check_checkpoints(rows, keys, result)
    if 0 in expected and expected[0][0] != GENESIS_HASH:
        result.problems.append(Problem(0, f"checkpoint {expected[0][1]}: empty chain with a head hash"))

    sha256 = hashlib.sha256
    prev_sequence, prev_hash = 0, GENESIS_HASH
    events = (
        AuditEvent.objects.using(using)
        .order_by("sequence")
        .values_list(*HASHED_FIELDS, "hash")
        .iterator(chunk_size=chunk_size)
    )
    count = 0
    for row in events:
        sequence = row[0]
        if sequence != prev_sequence + 1:
            missing = prev_sequence + 1
            reason = (
                f"missing (next event found is {sequence})"
                if sequence > missing
                else f"out of order (found {sequence} after {prev_sequence})"
            )
            result.problems.append(Problem(missing, reason))
            break
        if row[_PREV] != prev_hash:
            result.problems.append(Problem(sequence, "prev_hash does not match the previous event's hash"))
            break
        if sha256(canonical(row[:_HASH])).hexdigest() != row[_HASH]:
            result.problems.append(Problem(sequence, "hash does not match the event's contents"))
            break
        if sequence in expected and expected[sequence][0] != row[_HASH]:
            result.problems.append(
                Problem(
                    sequence,
                    f"checkpoint {expected[sequence][1]} signed another hash here (chain rewritten)",
                )
            )
            break
        prev_sequence, prev_hash = sequence, row[_HASH]
        count += 1
    else:
        if expected:
            signed = max(expected)
            if signed > prev_sequence:
                result.problems.append(
                    Problem(
                        prev_sequence + 1,
                        f"chain ends at {prev_sequence} but checkpoint {expected[signed][1]} "
                        f"signed {signed} (events removed from the tail)",
                    )
                )
    result.events = count
    result.head_sequence = prev_sequence
    result.seconds = time.perf_counter() - started
    return result
