"""Prometheus metric definitions (prometheus-client), importable by every app.

Counters and histograms are updated where the work happens (web or worker). With
``PROMETHEUS_MULTIPROC_DIR`` set (production: gunicorn workers and Celery worker processes share one
directory), prometheus-client writes each process's values to files there and ``/metrics`` sums them;
gunicorn's ``child_exit`` and Celery's ``worker_process_shutdown`` mark dead processes.

Values that live in the database (revocations pending, chain length, checkpoint age, sync age) are
not kept in process memory at all: apps register a *scrape-time collector* with
:func:`register_collector`, which ``/metrics`` runs once per scrape in the answering process, so
every process would report the same number and none can go stale.

Label values are bounded: source kinds and names (a handful per tenant), outcomes, task names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# --- HTTP and database (the web process) ---------------------------------------------------------
HTTP_REQUESTS = Counter(
    "lanyard_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "lanyard_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_QUERIES = Counter("lanyard_db_queries_total", "SQL statements executed, by database alias.", ["alias"])
DB_ERRORS = Counter("lanyard_db_errors_total", "SQL statements that raised, by alias.", ["alias"])
DB_LATENCY = Histogram(
    "lanyard_db_query_duration_seconds",
    "SQL statement time, by database alias.",
    ["alias"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)

# --- cache (telemetry/cache.py: Django's backends, counted) --------------------------------------------
CACHE_GETS = Counter(
    "lanyard_cache_gets_total", "Cache reads, by backend kind and result (hit, miss).", ["backend", "result"]
)
CACHE_OPERATIONS = Counter(
    "lanyard_cache_operations_total",
    "Cache writes and deletes, by backend kind and operation (set, add, delete, incr, touch).",
    ["backend", "operation"],
)

# --- sync -----------------------------------------------------------------------------------------
SYNC_DURATION = Histogram(
    "lanyard_sync_duration_seconds",
    "Duration of one source's sync run, by source and outcome.",
    ["source_kind", "source", "outcome"],
    buckets=(0.5, 1, 5, 15, 30, 60, 300, 900, 1800),
)
SYNC_ROWS = Counter(
    "lanyard_sync_rows_total",
    "Rows a sync saw or changed, by source, outcome and kind of row count "
    "(seen, new, changed, vanished, shadow, identities_seen).",
    ["source_kind", "source", "outcome", "kind"],
)
CAPABILITY_WARNINGS = Counter(
    "lanyard_capability_warnings_total",
    "Optional IdP capabilities a sync found unavailable, by source, capability and state.",
    ["source_kind", "source", "capability", "state"],
)

# --- revocation -------------------------------------------------------------------------------------
REVOCATIONS = Counter(
    "lanyard_revocations_total",
    "Revocation attempts at an IdP, by outcome (revoked, already_gone, transient_error, refused, gave_up).",
    ["outcome"],
)

# --- ingest -----------------------------------------------------------------------------------------
INGEST_EVENTS = Counter("lanyard_ingest_events_total", "AI activity events accepted by the ingest API.")
INGEST_REJECTED = Counter(
    "lanyard_ingest_rejected_batches_total", "Ingest batches refused, by HTTP status.", ["status"]
)

# --- access decisions (AuthZEN) ----------------------------------------------------------------------
PDP_DECISIONS = Counter(
    "lanyard_pdp_decisions_total", "Access decisions, by outcome (permit, deny, error).", ["outcome"]
)
PDP_LATENCY = Histogram(
    "lanyard_pdp_request_seconds",
    "Server time of an AuthZEN request, by endpoint.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)

# --- Shared Signals transmitter ------------------------------------------------------------------------
SSF_DELIVERY_LAG = Histogram(
    "lanyard_ssf_delivery_lag_seconds",
    "From a SET written to Lanyard's outbox (with the change it reports) to its delivery, by method "
    "(push: the receiver accepted it; poll: a poll served it).",
    ["delivery"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)

# --- gateway (the MCP gateway process) -------------------------------------------------------------------
GATEWAY_CALLS = Counter(
    "lanyard_gateway_calls_total",
    "MCP requests the gateway decided, by method and outcome (success, denied, upstream_error, "
    "upstream_timeout).",
    ["method", "outcome"],
)
GATEWAY_LATENCY = Histogram(
    "lanyard_gateway_call_duration_seconds",
    "Gateway time of a decided MCP request (PDP and upstream included), by method.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

# --- Celery (the worker processes) -----------------------------------------------------------------
TASKS = Counter("lanyard_celery_tasks_total", "Celery tasks finished, by task and state.", ["task", "state"])
TASK_DURATION = Histogram(
    "lanyard_celery_task_duration_seconds",
    "Celery task run time, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
)

# --- scrape-time collectors ------------------------------------------------------------------------
_collectors: dict[str, Callable[[], Iterable[Metric]]] = {}


def register_collector(name: str, collect: Callable[[], Iterable[Metric]]) -> None:
    """Add a function that yields metric families from the database at each scrape."""
    _collectors[name] = collect


class _ScrapeTime(Collector):
    def collect(self) -> Iterable[Metric]:
        for collect in _collectors.values():
            yield from collect()


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """Return every metric in the text format: all processes' (multiprocess mode) plus scrape-time."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_ScrapeTime())
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(_scrape_only())


def _scrape_only() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_ScrapeTime())
    return registry


def mark_process_dead(pid: int) -> None:
    """Tell multiprocess mode a process exited (its live gauges go; counters are kept)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
