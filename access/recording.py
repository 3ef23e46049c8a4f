"""What the decision point keeps of each decision.

- **Every deny** is appended to the audit chain in the request (``access.denied``: identity, device,
  connector, action, reason, policies), so the trail answers who was refused what, and why.
- **Permits** are many (a gateway asks before every call): they are counted per connector and hour
  (``DecisionCount``, beside the denies) and move ``Grant.last_used_at`` and ``Device.last_seen``
  forward, like the usage roll-up does for reported activity. Those writes are gathered in the
  process and flushed together at most every ``LANYARD_PDP_FLUSH_SECONDS`` (default 1 s): one
  UPDATE per table and one upsert per connector and hour, not a write per decision, by a thread of
  the process (``_Flusher``), not in the decision's request. A process killed outright loses at most
  that last second of counts; no decision depends on them.
- A bounded **sample** of recent decisions, with the Cedar request and entities each was decided on,
  is kept for the what-if page (``DecisionSample``; every deny, and up to
  ``LANYARD_PDP_SAMPLES_PER_FLUSH`` permits per flush; the newest ``LANYARD_PDP_SAMPLES_KEPT`` rows).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from audit.services import values_in
from connectors.models import Device, Grant
from telemetry import metrics

from .models import DecisionCount, DecisionSample

log = logging.getLogger(__name__)


class _Buffer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()
        self.flushed = time.monotonic()

    def reset(self) -> None:
        self.counts: Counter[tuple[int | None, datetime, bool]] = Counter()
        self.grants: set[int] = set()
        self.devices: set[int] = set()
        self.samples: list[DecisionSample] = []
        self.permit_samples = 0


_buffer = _Buffer()


def _summary(ask, result) -> str:
    who = (ask.identity or {}).get("email") or ask.subject_key or "?"
    what = ask.action + (f" {ask.tool[1]}" if ask.tool else "")
    where = ask.connector.name if ask.connector else (next(iter(ask.connector_ref.values()), "") or "?")
    return f"{who}: {what} on {where}"[:500]


def record(ask, result, *, key=None, sample: tuple[dict, list] | None = None) -> None:
    """Keep what the trail, the counts and the what-if page need of one decision."""
    if result.error:
        metrics.PDP_DECISIONS.labels("error").inc()
        return
    metrics.PDP_DECISIONS.labels("permit" if result.decision else "deny").inc()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    connector_id = ask.connector.pk if ask.connector else None
    if not result.decision:
        identity = ask.identity or {}
        audit.record(
            "access.denied",
            outcome=AuditEvent.Outcome.DENIED,
            actor_identity=identity.get("pk"),
            actor_label=identity.get("email") or ask.subject_key or "unknown",
            connector=ask.connector,
            device=(ask.device or {}).get("pk"),
            ingest_key=key,
            correlation_id=result.id,
            data={
                "action": ask.action,
                "tool": ask.tool[1] if ask.tool else "",
                "reason": result.reason,
                "policies": result.policies,
                "device": ask.device_id,
                "subject": ask.subject_key,
                "pep": getattr(key, "name", ""),
            },
        )
    with _buffer.lock:
        _buffer.counts[(connector_id, hour, result.decision)] += 1
        if result.decision:
            if ask.grant:
                _buffer.grants.add(ask.grant["pk"])
            if ask.device:
                _buffer.devices.add(ask.device["pk"])
        take = sample is not None and (
            not result.decision or _buffer.permit_samples < settings.LANYARD_PDP_SAMPLES_PER_FLUSH
        )
        if take:
            request, entities = sample
            _buffer.permit_samples += int(result.decision)
            _buffer.samples.append(
                DecisionSample(
                    decision=result.decision,
                    policies=result.policies,
                    reason=result.reason[:500],
                    summary=_summary(ask, result),
                    request=request,
                    entities=_only(entities, request),
                )
            )
        due = time.monotonic() - _buffer.flushed >= settings.LANYARD_PDP_FLUSH_SECONDS
    if due:
        if settings.LANYARD_PDP_FLUSH_SECONDS > 0:
            _flusher.wake()  # written by the process's flusher thread, after this answer is sent
        else:
            flush()  # every decision at once (tests, and whoever asks for it)


def _only(entities: list[dict], request: dict) -> list[dict]:
    """The entities one request reads (a batch shares one set): principal, resource and what context names."""
    wanted = {(request["principal"]["type"], request["principal"]["id"])}
    wanted.add((request["resource"]["type"], request["resource"]["id"]))
    for value in request["context"].values():
        if isinstance(value, dict) and "__entity" in value:
            wanted.add((value["__entity"]["type"], value["__entity"]["id"]))
    keep = [e for e in entities if (e["uid"]["type"], e["uid"]["id"]) in wanted]
    # ... and the entities those reach: parents (person, connector) and entity-valued attributes.
    reach = set()
    for e in keep:
        reach |= {(p["type"], p["id"]) for p in e.get("parents", [])}
        for v in e["attrs"].values():
            if isinstance(v, dict) and "__entity" in v:
                reach.add((v["__entity"]["type"], v["__entity"]["id"]))
    return keep + [e for e in entities if (e["uid"]["type"], e["uid"]["id"]) in reach - wanted]


class _Flusher:
    """One daemon thread per process that writes the gathered figures when a decision says they are due.

    The flush is a few statements a second (the counts' upsert, two usage UPDATEs, the samples'
    INSERT and trim: tens of milliseconds on a busy database); written by the decision that found them
    due, it was that decision's latency. The thread has its own database connection, closed after each
    flush; it is started on first use in each process (so a forked worker starts its own).
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.start_lock = threading.Lock()

    def wake(self) -> None:
        if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
            with self.start_lock:
                if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                    self.event = threading.Event()
                    self.pid = os.getpid()
                    self.thread = threading.Thread(target=self._run, name="pdp-flush", daemon=True)
                    self.thread.start()
        self.event.set()

    def _run(self) -> None:
        from django.db import connections

        while True:
            self.event.wait()
            self.event.clear()
            try:
                flush()
            except Exception:  # noqa: BLE001 - statistics, never a decision: keep the thread alive
                log.warning("access decision flush failed", exc_info=True)
            finally:
                connections.close_all()  # this thread's own connections only (they are per thread)


_flusher = _Flusher()
_flushing = threading.Lock()  # one flush at a time: the exit flush waits for the thread's


def flush() -> None:
    """Write the gathered counts, usage times and samples (a few statements, whatever the traffic)."""
    with _flushing:
        _flush()


def _flush() -> None:
    with _buffer.lock:
        counts, grants, devices, samples = _buffer.counts, _buffer.grants, _buffer.devices, _buffer.samples
        _buffer.reset()
        _buffer.flushed = time.monotonic()
    if not (counts or grants or devices or samples):
        return
    now = timezone.now()
    try:
        with transaction.atomic():
            merged: Counter[tuple[int | None, datetime]] = Counter()
            denied: Counter[tuple[int | None, datetime]] = Counter()
            for (connector_id, hour, permit), n in counts.items():
                (merged if permit else denied)[(connector_id, hour)] += n
            _upsert_counts(merged, denied)
            if grants:
                Grant.objects.filter(
                    Q(last_used_at__isnull=True) | Q(last_used_at__lt=now), values_in("pk", grants)
                ).update(last_used_at=now)
            if devices:
                Device.objects.filter(
                    Q(last_seen__isnull=True) | Q(last_seen__lt=now), values_in("pk", devices)
                ).update(last_seen=now)
            if samples:
                DecisionSample.objects.bulk_create(samples)
                keep = settings.LANYARD_PDP_SAMPLES_KEPT
                edge = DecisionSample.objects.order_by("-pk").values_list("pk", flat=True)[keep : keep + 1]
                if edge:
                    DecisionSample.objects.filter(pk__lte=edge[0]).delete()
    except DatabaseError:
        # Statistics, never a decision: log and drop rather than fail the request that flushed.
        log.warning("could not flush access decision counts", exc_info=True)


def _upsert_counts(permits: Counter, denies: Counter) -> None:
    """Add the counts to their connector-hour rows: one INSERT ... ON CONFLICT per 500 rows.

    PostgreSQL and SQLite (3.24+) share the syntax. A null connector (a question that named none Lanyard
    knows) never conflicts and makes a row per flush; the figures sum rows.
    """
    keys = sorted(set(permits) | set(denies), key=lambda k: (k[0] or 0, k[1]))
    table = DecisionCount._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params: list = []
            for connector_id, hour in chunk:
                stored = connection.ops.adapt_datetimefield_value(hour)
                params += [connector_id, stored, permits[(connector_id, hour)], denies[(connector_id, hour)]]
            cursor.execute(
                f"INSERT INTO {table} (connector_id, hour, permits, denies) VALUES {values} "  # noqa: S608
                f"ON CONFLICT (connector_id, hour) DO UPDATE SET "
                f"permits = {table}.permits + excluded.permits, denies = {table}.denies + excluded.denies",
                params,
            )


def install_exit_flush() -> None:
    atexit.register(_exit_flush)


def _exit_flush() -> None:
    try:
        flush()
    except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to report to
        pass


def counts_since(since: datetime) -> dict[int | None, tuple[int, int]]:
    """Permits and denies per connector since ``since`` (the dashboard's figures)."""
    rows = DecisionCount.objects.filter(hour__gte=since).values_list("connector_id", "permits", "denies")
    out: dict[int | None, tuple[int, int]] = {}
    for connector_id, permits, denies in rows:
        p, d = out.get(connector_id, (0, 0))
        out[connector_id] = (p + permits, d + denies)
    return out


def pending() -> dict[str, Any]:
    with _buffer.lock:
        return {"counts": sum(_buffer.counts.values()), "samples": len(_buffer.samples)}
