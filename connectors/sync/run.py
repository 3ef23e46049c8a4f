"""The run: claim the source, sync phase by phase, then record the SyncRun and release the claim."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from telemetry import metrics

from .. import capabilities, services, signals
from ..idp.base import Adapter, IdpError
from ..models import IdentitySource, SyncRun
from .activity import ActivitySync
from .claim import claim_source, release_claim
from .devices import DeviceSync
from .grants import GrantSync
from .identities import IdentitySync

# The package's name, as when this was one module: logging configured for it keeps applying.
logger = logging.getLogger("connectors.sync")


class _Sync(IdentitySync, DeviceSync, GrantSync, ActivitySync):
    """One run's state with every phase: users, devices, apps, grants, risk, activity, vanished."""

    def required(self, name: str, phase: Callable[[], None]) -> None:
        """Run a phase the run cannot do without; its refusal is recorded, then fails the run."""
        try:
            phase()
        except IdpError as exc:
            self.results.append(capabilities.classify(self.source.kind, name, exc))
            raise
        self.results.append(capabilities.available(self.source.kind, name))

    def optional(self, name: str, phase: Callable[[], None]) -> None:
        """Run a phase the run can do without; an IdP refusal becomes a capability warning."""
        if name not in capabilities.specs(self.source.kind):
            phase()  # nothing to ask this kind of IdP (GitHub has no devices): only local bookkeeping
            return
        try:
            phase()
        except IdpError as exc:
            result = capabilities.classify(self.source.kind, name, exc)
            logger.warning(
                "sync of %s: optional %s skipped (%s): %s", self.source.name, name, result.state, exc
            )
            self.results.append(result)
            self.bump(f"{name}_skipped")
            return
        self.results.append(capabilities.available(self.source.kind, name))


# ---------------------------------------------------------------------------------------- entry point


def sync_source(source: IdentitySource, *, now: datetime | None = None) -> SyncRun:
    """Sync one source from its IdP into the register and return the run (refused if already running)."""
    now = now or timezone.now()
    refused = claim_source(source, now)
    if refused is not None:
        return refused
    source.refresh_from_db()
    run = SyncRun.objects.create(source=source, started_at=now)
    # Every log line of this run, in whichever process, carries its id (structlog context).
    structlog.contextvars.bind_contextvars(sync_run_id=run.pk, source=source.name)
    clock = time.perf_counter()
    state: _Sync | None = None
    adapter: Adapter | None = None
    error = ""
    try:
        adapter = services.source_adapter(source)
        state = _Sync(source=source, run=run, adapter=adapter, now=now, claim=now)
        # Users, apps and grants must be listed completely before anything is marked vanished;
        # devices and activity are optional (editions and permissions vary by tenant).
        state.required("users", state.sync_users)
        state.optional("devices", state.sync_devices)
        state.required("apps", state.sync_apps)
        state.required("grants", state.sync_grants)
        state.raise_risks()
        state.optional("activity", state.sync_activity)
        state.mark_vanished()
    except IdpError as exc:
        error = f"{source.name}: {state.phase if state else 'connect'} failed: {exc}"
        logger.warning("sync failed: %s", error)
    except Exception as exc:
        error = f"{source.name}: {state.phase if state else 'connect'} failed: {type(exc).__name__}: {exc}"
        logger.exception("sync failed: %s", error)
    finally:
        if adapter is not None:
            adapter.close()
    try:
        run = _finish(source, run, state, error)
        seconds = time.perf_counter() - clock
        logger.info(
            "sync %s in %.1f s: %s seen, %s new, %s changed, %s vanished, %s shadow",
            run.outcome,
            seconds,
            run.seen,
            run.new,
            run.changed,
            run.vanished,
            run.shadow,
        )
    finally:
        structlog.contextvars.unbind_contextvars("sync_run_id", "source")
    _observe(source, run, seconds)
    return run


def _observe(source: IdentitySource, run: SyncRun, seconds: float) -> None:
    """Prometheus: the run's duration, row counts and capability warnings, by source and outcome."""
    labels = (source.kind, source.name, run.outcome)
    metrics.SYNC_DURATION.labels(*labels).observe(seconds)
    for kind in ("seen", "new", "changed", "vanished", "shadow", "identities_seen"):
        metrics.SYNC_ROWS.labels(*labels, kind).inc(getattr(run, kind) or 0)
    for warning in run.warnings or []:
        metrics.CAPABILITY_WARNINGS.labels(
            source.kind, source.name, warning.get("capability", ""), warning.get("state", "")
        ).inc()


def _finish(source: IdentitySource, run: SyncRun, state: _Sync | None, error: str) -> SyncRun:
    finished = max(timezone.now(), run.started_at)
    claim = state.claim if state else run.started_at
    stats = dict(state.stats) if state else {}
    results = state.results if state else []
    warnings = [r.as_warning() for r in results if not r.required and r.state != capabilities.State.AVAILABLE]
    with transaction.atomic():
        run.finished_at = finished
        run.outcome = SyncRun.Outcome.FAILED if error else SyncRun.Outcome.SUCCEEDED
        run.error = error[:5000]
        run.warnings = warnings
        run.save()
        capabilities.capabilities_record(source=source, results=results, now=finished)
        release: dict[str, Any] = {"sync_claimed_at": None}
        if not error:
            release["last_success_at"] = finished
            if state and state.cursors:
                source.cursors = {**source.cursors, **state.cursors}
                release["cursors"] = source.cursors
        release_claim(source, claim, release)
        audit.record(
            "sync.failed" if error else "sync.succeeded",
            outcome=AuditEvent.Outcome.FAILURE if error else AuditEvent.Outcome.SUCCESS,
            actor="system",
            source=source,
            target=run,
            data={
                "seen": run.seen,
                "new": run.new,
                "changed": run.changed,
                "vanished": run.vanished,
                "shadow": run.shadow,
                "identities_seen": run.identities_seen,
                **stats,
                **({"error": run.error} if error else {}),
                **({"warnings": {w["capability"]: w["state"] for w in warnings}} if warnings else {}),
            },
        )
        if state:
            services.identities_announce_status_changes(changed=state.status_changes, source_id=source.pk)
        if not error:
            # Offboarding reconciles every identity's state after each complete sync, not only changes.
            transaction.on_commit(
                lambda: signals.sync_succeeded.send(sender=SyncRun, source_id=source.pk, run_id=run.pk)
            )
    return run
