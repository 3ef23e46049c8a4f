"""Health checks on django-health-check, and the registry apps add their own checks to.

Two groups:

- ``ready``: what a load balancer needs before sending traffic (database, cache, broker, migrations).
- ``lanyard``: whether Lanyard is doing its job (syncs fresh, revocations flowing, mail leaving,
  checkpoints signed, beat alive), shown to IAM staff at ``/ops/health/`` and as JSON.

An app adds a check by subclassing :class:`DatabaseCheck` (or django-health-check's ``HealthCheck``)
and calling :func:`register` from its ``AppConfig.ready()``; nothing else needs to change.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable, ServiceWarning

READY = "ready"
LANYARD = "lanyard"

_registry: dict[str, dict[str, tuple[type[HealthCheck], dict[str, Any]]]] = {READY: {}, LANYARD: {}}


def register(check: type[HealthCheck], *, group: str = LANYARD, **options: Any) -> type[HealthCheck]:
    """Add a check class (with its constructor options) to a group; registering it again replaces it."""
    _registry.setdefault(group, {})[f"{check.__module__}.{check.__qualname__}"] = (check, options)
    return check


def registered(group: str) -> list[tuple[type[HealthCheck], dict[str, Any]]]:
    """Return the checks of a group in the order they were registered."""
    return list(_registry.get(group, {}).values())


def title(check: HealthCheck) -> str:
    """Return the check's human title (its ``title`` attribute, else the class name)."""
    return getattr(check, "title", "") or type(check).__name__


def ago(delta: datetime.timedelta) -> str:
    """Return a duration as a person says it ("3 h 5 min", "42 s")."""
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


@dataclasses.dataclass
class DatabaseCheck(HealthCheck):
    """A check that reads the database: ``probe()`` runs in the request's thread (Django's ORM rule)."""

    title = ""

    async def run(self) -> None:
        await sync_to_async(self.probe)()

    def probe(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------ readiness


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (Redis in production)."""

    title = "Celery broker"
    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        from celery import current_app

        try:
            with current_app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            # The URL may carry a password: name the failure, never the URL.
            raise ServiceUnavailable(
                f"The Celery broker does not answer ({type(exc).__name__}): "
                "start Redis or fix CELERY_BROKER_URL."
            ) from exc


@dataclasses.dataclass
class Migrations(DatabaseCheck):
    """Every migration this code ships is applied to the database."""

    title = "Migrations applied"

    def probe(self) -> None:
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
            raise ServiceUnavailable(
                f"{len(plan)} migration(s) not applied ({names}{'…' if len(plan) > 5 else ''}): "
                "run `manage.py migrate` before starting this release."
            )


# ------------------------------------------------------------------------------------- beat alive

HEARTBEAT_KEY = "lanyard:heartbeat"


def heartbeat_record(now: datetime.datetime | None = None) -> datetime.datetime:
    """Record that beat scheduled the heartbeat and a worker ran it (in the shared cache)."""
    now = now or timezone.now()
    cache.set(HEARTBEAT_KEY, now.isoformat(), timeout=7 * 24 * 3600)
    return now


def heartbeat_last() -> datetime.datetime | None:
    value = cache.get(HEARTBEAT_KEY)
    return datetime.datetime.fromisoformat(value) if value else None


@dataclasses.dataclass
class BeatAlive(HealthCheck):
    """Beat schedules the heartbeat every LANYARD_HEARTBEAT_SECONDS and a worker runs it."""

    title = "Beat alive (heartbeat)"

    async def run(self) -> None:
        from django.conf import settings

        interval = datetime.timedelta(seconds=settings.LANYARD_HEARTBEAT_SECONDS)
        last = await sync_to_async(heartbeat_last)()
        if last is None:
            raise ServiceUnavailable(
                "No heartbeat was ever recorded: start exactly one `celery beat` and a worker on the "
                "default queue (see the README, Operations)."
            )
        age = timezone.now() - last
        if age > 3 * interval:
            raise ServiceUnavailable(
                f"Last heartbeat {ago(age)} ago (expected every {ago(interval)}): beat or every worker "
                "of the default queue is down; scheduled syncs, sweeps and checkpoints are not running."
            )


register(Database, group=READY)
register(Cache, group=READY)
register(Broker, group=READY)
register(Migrations, group=READY)
register(BeatAlive, group=LANYARD)


def instantiate(group: str) -> Iterator[HealthCheck]:
    for check, options in registered(group):
        yield check(**options)


__all__ = [
    "LANYARD",
    "READY",
    "BeatAlive",
    "Broker",
    "DatabaseCheck",
    "HealthCheck",
    "Migrations",
    "ServiceUnavailable",
    "ServiceWarning",
    "ago",
    "heartbeat_record",
    "register",
    "registered",
]
