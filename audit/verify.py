"""Verify the audit trail end to end: hashes, contiguity, links, checkpoint signatures and coverage.

The walk streams the events in sequence order in chunks (constant memory) and stops at the first
bad event. Checkpoints are few (one per period) and are read whole. The reported sequence is the
first one that cannot be trusted, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max

from .chain import CHAIN_VERSION, GENESIS_HASH, HASHED_FIELDS, canonical, hash_prepared
from .checkpoints import (
    CheckpointRow,
    key_ring,
    public_key,
    registered_keys,
    signature_valid,
    succession_problem,
)
from .models import AuditChainHead, AuditCheckpoint, AuditEvent, IngestKey
from .witness import Witness, WitnessError, WitnessRecord, configured_witness

_PREV = HASHED_FIELDS.index("prev_hash")
_DATA = HASHED_FIELDS.index("data")
_TIMES = {"occurred_at", "recorded_at"}
_HASH = len(HASHED_FIELDS)
_CONFIGURED = object()


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
    witnessed: int | None = None  # witness records compared (None: no witness)
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
    rows: list[CheckpointRow],
    keys: dict[str, Ed25519PublicKey],
    result: VerifyResult,
    order: dict[str, int] | None = None,
) -> dict[int, tuple[str, str]]:
    """Check signatures and the signature chain; return {sequence: (head_hash, "checkpoint <id>")}."""
    expected: dict[int, tuple[str, str]] = {}
    prev_signature, prev_sequence = "", 0
    previous: CheckpointRow | None = None
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
        succession = succession_problem(row, previous, order or {})
        if succession:
            result.problems.append(Problem(row.sequence, f"checkpoint {row.id}: {succession}"))
            return expected
        expected.setdefault(row.sequence, (row.head_hash, f"checkpoint {row.id}"))
        prev_signature, prev_sequence, previous = row.signature, row.sequence, row
    return expected


def _check_witness(
    witness: Witness,
    rows: list[CheckpointRow],
    keys: dict[str, Ed25519PublicKey],
    pinned: dict[int, tuple[str, str]],
    result: VerifyResult,
) -> int:
    """Compare the witness with the database's checkpoints; pin what it witnessed; return its count.

    - a witness record must carry a valid signature (a line appended by whoever can write there
      but does not hold the signing key is a forgery);
    - a checkpoint in both must be identical (a checkpoint rewritten in the database);
    - every database checkpoint since the first witnessed one must be in the witness (they are
      written before the checkpoint commits);
    - each witnessed (sequence, head hash) is pinned on the chain: a tail cut or a rewrite of
      events, checkpoints and head together no longer matches it. A witnessed checkpoint the
      database lacks is not an error in itself (a commit that failed after the write), as long as
      the chain still holds the hash it signed.
    """
    by_id = {row.id: row for row in rows}
    seen: set[int] = set()
    count = 0
    for item in witness.records():
        if isinstance(item, WitnessError):
            result.problems.append(Problem(0, f"witness: {item}"))
            continue
        count += 1
        record: WitnessRecord = item
        as_row = CheckpointRow(
            record.id,
            record.created_at,
            record.sequence,
            record.head_hash,
            record.prev_signature,
            record.signature,
            record.key_id,
            record.prev_key_id,
        )
        if not signature_valid(as_row, keys):
            reason = "signature does not verify" if record.key_id in keys else f"unknown key {record.key_id}"
            result.problems.append(Problem(record.sequence, f"witness {record.where}: {reason} (forged)"))
            continue
        seen.add(record.id)
        row = by_id.get(record.id)
        if row is not None and row != as_row:
            result.problems.append(
                Problem(
                    record.sequence,
                    f"checkpoint {record.id} differs from the witness ({record.where}): "
                    "rewritten in the database",
                )
            )
        label = f"the witness's checkpoint {record.id} ({record.where})"
        if record.sequence > 0:
            known = pinned.get(record.sequence)
            if known is not None and known[0] != record.head_hash:
                result.problems.append(
                    Problem(record.sequence, f"{label} and {known[1]} name different hashes")
                )
            else:
                pinned.setdefault(record.sequence, (record.head_hash, label))
    if seen:
        first = min(seen)
        for row in rows:
            if row.id > first and row.id not in seen:
                result.problems.append(
                    Problem(
                        row.sequence, f"checkpoint {row.id} is not in the witness (inserted in the database?)"
                    )
                )
    return count


@dataclass(frozen=True, slots=True)
class _Walk:
    count: int
    last_sequence: int
    last_hash: str
    problem: Problem | None


def _walk(
    using: str,
    first: int,
    last: int | None,
    expected: dict[int, tuple[str, str]],
    chunk_size: int,
) -> _Walk:
    """Check events ``first``..``last`` (to the end when None) in order; stop at the first bad one.

    ``expected`` pins hashes at sequences: {sequence: (hash, what pins it, for the message)}.
    """
    events = AuditEvent.objects.using(using).order_by("sequence")
    if first > 1:
        before = events.filter(sequence=first - 1).values_list("hash", flat=True).first()
        if before is None:
            return _Walk(0, first - 1, "", Problem(first - 1, "missing"))
        events = events.filter(sequence__gte=first)
    if last is not None:
        events = events.filter(sequence__lte=last)
    prev_sequence, prev_hash = first - 1, before if first > 1 else GENESIS_HASH
    sha256 = hashlib.sha256
    count = 0
    problem = None
    if connections[using].vendor == "postgresql":
        rows = _pg_rows(using, first, last, chunk_size)
        loads = json.loads

        def digest(row: tuple) -> str:
            prepared = [CHAIN_VERSION, *row[:_HASH]]
            prepared[1 + _DATA] = loads(prepared[1 + _DATA])
            return hash_prepared(prepared)

    else:
        rows = events.values_list(*HASHED_FIELDS, "hash").iterator(chunk_size=chunk_size)

        def digest(row: tuple) -> str:
            return sha256(canonical(row[:_HASH])).hexdigest()

    for row in rows:
        sequence = row[0]
        if sequence != prev_sequence + 1:
            missing = prev_sequence + 1
            reason = (
                f"missing (next event found is {sequence})"
                if sequence > missing
                else f"out of order (found {sequence} after {prev_sequence})"
            )
            problem = Problem(missing, reason)
            break
        if row[_PREV] != prev_hash:
            problem = Problem(sequence, "prev_hash does not match the previous event's hash")
            break
        if digest(row) != row[_HASH]:
            problem = Problem(sequence, "hash does not match the event's contents")
            break
        if sequence in expected and expected[sequence][0] != row[_HASH]:
            problem = Problem(sequence, f"{expected[sequence][1]} names another hash here (chain rewritten)")
            break
        prev_sequence, prev_hash = sequence, row[_HASH]
        count += 1
    if problem is None and last is not None and prev_sequence < last:
        problem = Problem(prev_sequence + 1, "missing")
    return _Walk(count, prev_sequence, prev_hash, problem)


def _read_head(using: str) -> tuple[int, str] | None:
    return AuditChainHead.objects.using(using).filter(pk=1).values_list("sequence", "hash").first()


def _check_head(using: str, head: tuple[int, str] | None, walk: _Walk, result: VerifyResult) -> None:
    """Cross-check the chain-head row and the rest of the database against where the walk ended.

    Deleting the newest events (after the last checkpoint) leaves a contiguous, well-linked chain:
    only the head row, which every writer moves forward in the transaction that appends, still
    names the higher sequence. ``head`` was read before the walk, so every event up to it was
    committed before the walk began and must have been seen (its hash is pinned like a
    checkpoint's, see ``verify``); the head is read again after the walk, when it must have
    reached the last event seen. An attacker may rewind the head too, or empty everything; then
    other rows that only exist once events were recorded (an ingest key is created with an
    event) still say so.
    """
    end = walk.last_sequence
    if head is None:
        if end > 0 and _read_head(using) is None:
            result.problems.append(Problem(end, "the chain head row is missing although events exist"))
        elif end == 0 and IngestKey.objects.using(using).exists():
            result.problems.append(
                Problem(1, "the trail is empty but an ingest key exists, and creating one records an event")
            )
        return
    sequence, hash_ = head
    if sequence > end:
        result.problems.append(
            Problem(
                end + 1,
                f"the chain head names sequence {sequence} but the chain ends at {end} "
                "(events removed from the tail)",
            )
        )
        return
    after = _read_head(using)
    if after is None or after[0] < end:
        named = "no sequence" if after is None else f"sequence {after[0]}"
        result.problems.append(
            Problem(
                (after[0] if after else 0) + 1,
                f"the chain head names {named} but the chain ends at {end} (events added behind its back)",
            )
        )
    elif sequence == 0 and hash_ != GENESIS_HASH:
        result.problems.append(Problem(0, "the chain head names sequence 0 but not the genesis hash"))


def _pg_rows(using: str, first: int, last: int | None, chunk_size: int) -> Iterator[tuple]:
    """Stream events from a server-side cursor, times as epoch microseconds, data as JSON text.

    Skips the ORM's per-row converters, which cost more than the hashing itself.
    """
    table = AuditEvent._meta.db_table
    columns = [
        f"(extract(epoch FROM {name}) * 1000000)::bigint" if name in _TIMES else name
        for name in (*HASHED_FIELDS, "hash")
    ]
    columns[_DATA] = "data::text"
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE sequence >= %s"  # noqa: S608 - our identifiers
    params: list[int] = [first]
    if last is not None:
        sql += " AND sequence <= %s"
        params.append(last)
    # Inside a transaction the server-side cursor streams; in autocommit Django declares it
    # WITH HOLD, and PostgreSQL then materialises the whole result before the first row.
    with transaction.atomic(using=using), connections[using].chunked_cursor() as cursor:
        cursor.execute(sql + " ORDER BY sequence", params)
        while chunk := cursor.fetchmany(chunk_size):
            yield from chunk


def _walk_in_child(args: tuple) -> _Walk:
    connections.close_all()  # never share the parent's socket
    try:
        return _walk(*args)
    finally:
        connections.close_all()


def verify(
    *,
    using: str = DEFAULT_DB_ALIAS,
    chunk_size: int = 10_000,
    public_keys: list[Ed25519PublicKey] | None = None,
    workers: int = 1,
    witness: Witness | None | object = _CONFIGURED,
) -> VerifyResult:
    """Walk the chain and the checkpoints; return what was checked and the problems found.

    ``witness`` (by default the configured one, see ``audit.witness``; None for none) is compared
    with the database's checkpoints, and the hashes it witnessed are pinned on the chain.

    With ``workers`` > 1 the sequence range is split between processes, each recomputing its
    part's hashes; every part also checks its first event's link to the part before it.
    """
    started = time.perf_counter()
    result = VerifyResult()
    if witness is _CONFIGURED:
        witness = configured_witness()
    # The keys: the registered succession (AuditSigningKey), trusted from its first key, or from
    # ``public_keys`` when given (an auditor's published keys); a trail from before registration
    # existed has none registered and is checked with the configured key.
    registered = registered_keys(using)
    if public_keys is None and not registered:
        public_keys = [public_key()]
    ring = key_ring(registered, public_keys)
    result.problems.extend(Problem(0, problem) for problem in ring.problems)
    keys = ring.keys

    head = _read_head(using)  # before the walk: every event up to it is committed (see _check_head)
    rows = [
        CheckpointRow(*values)
        for values in AuditCheckpoint.objects.using(using)
        .order_by("id")
        .values_list(
            "id",
            "created_at",
            "sequence",
            "head_hash",
            "prev_signature",
            "signature",
            "key_id",
            "prev_key_id",
        )
    ]
    result.checkpoints = len(rows)
    expected = _check_checkpoints(rows, keys, result, ring.order)
    if 0 in expected and expected[0][0] != GENESIS_HASH:
        result.problems.append(Problem(0, f"{expected[0][1]}: empty chain with a head hash"))
    pinned = dict(expected)
    if witness is not None:
        result.witnessed = _check_witness(witness, rows, keys, pinned, result)
    signed = max(pinned, default=0)
    if head is not None and head[0] > 0:
        if head[0] in pinned and pinned[head[0]][0] != head[1]:
            result.problems.append(
                Problem(head[0], f"the chain head and {pinned[head[0]][1]} name different hashes")
            )
        pinned.setdefault(head[0], (head[1], "the chain head"))

    top = AuditEvent.objects.using(using).aggregate(top=Max("sequence"))["top"] or 0
    if workers > 1 and top > workers * chunk_size:
        step = -(-top // workers)
        parts = [(using, lo, min(lo + step - 1, top), pinned, chunk_size) for lo in range(1, top + 1, step)]
        connections.close_all()
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            walks = pool.map(_walk_in_child, parts)
    else:
        walks = [_walk(using, 1, None, pinned, chunk_size)]
    result.events = sum(w.count for w in walks)
    problems = [w.problem for w in walks if w.problem is not None]
    result.problems.extend(problems)
    result.head_sequence = walks[-1].last_sequence if not problems else min(p.sequence for p in problems) - 1
    if not problems and signed > result.head_sequence:
        result.problems.append(
            Problem(
                result.head_sequence + 1,
                f"chain ends at {result.head_sequence} but {pinned[signed][1]} "
                f"signed {signed} (events removed from the tail)",
            )
        )
    if not problems:
        _check_head(using, head, walks[-1], result)
    result.seconds = time.perf_counter() - started
    return result
