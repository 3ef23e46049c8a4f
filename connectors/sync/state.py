"""The state one sync run carries from phase to phase, and what every phase shares."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from ..capabilities import Result
from ..idp.base import Adapter, IdpApp
from ..models import Connector, Device, Grant, Identity, IdentitySource, SyncRun
from .claim import CLAIM_REFRESH_SECONDS, refresh_claim
from .helpers import PkSet

VANISHED_REASON = "vanished at IdP"
ANALYZE_AFTER_ROWS = 5000
CHUNK = 1000


@dataclass
class SyncState:
    source: IdentitySource
    run: SyncRun
    adapter: Adapter
    now: datetime
    claim: datetime
    phase: str = "start"
    refreshed: float = field(default_factory=time.monotonic)
    # external id -> pk of this source's identities; external id -> manager external id of those seen
    identity_pks: dict[str, int] = field(default_factory=dict)
    managers: dict[str, str | None] = field(default_factory=dict)
    device_pks: dict[str, int] = field(default_factory=dict)
    # client id -> (ConnectorApp pk, Connector pk); metadata of apps not (yet) in the register
    apps: dict[str, tuple[int, int]] = field(default_factory=dict)
    app_meta: dict[str, IdpApp] = field(default_factory=dict)
    connectors: dict[int, Connector] = field(default_factory=dict)
    connector_scores: dict[int, int] = field(default_factory=dict)
    discovered: set[int] = field(default_factory=set)
    # Loaded on the first app new to this source (see GrantSync._known_connector).
    _matcher: Any = None
    _kin_apps: dict[str, int] = field(default_factory=dict)
    _catalog_connectors: dict[int, int] = field(default_factory=dict)
    seen_grants: PkSet = field(default_factory=PkSet)
    seen_identities: PkSet = field(default_factory=PkSet)
    # status -> identity pks newly suspended/deprovisioned in this run (signalled at the end)
    status_changes: dict[str, list[int]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    analyzed: dict[str, int] = field(default_factory=dict)
    cursors: dict[str, Any] = field(default_factory=dict)
    # What each capability answered in this run (see connectors.capabilities)
    results: list[Result] = field(default_factory=list)

    def bump(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    @contextmanager
    def page(self) -> Iterator[None]:
        """One transaction per page; on PostgreSQL its commit does not wait for the disk.

        A crash can then lose the last pages' commits, whole: the run is left unfinished and the
        next sync writes them again. The run's final commit waits for the disk, and with it for
        every earlier one (the log is written in order).
        """
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield

    def grew(self, model: type[Identity | Device | Grant], rows: int) -> None:
        """Refresh PostgreSQL's statistics when a table grew a lot during this run.

        A first sync multiplies a table's size within minutes, long before autovacuum analyses it:
        with statistics saying "a few rows", the planner reads the per-page lookups through a
        one-column index and filters every row of the source, so each page gets slower.
        """
        if connection.vendor != "postgresql":
            return
        table = model._meta.db_table
        total = self.inserted.get(table, 0) + rows
        self.inserted[table] = total
        if total >= self.analyzed.get(table, ANALYZE_AFTER_ROWS):
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
            self.analyzed[table] = total * 4

    def keep_claim(self) -> None:
        """Refresh the claim now and then, so a long sync is not taken for a dead one."""
        if time.monotonic() - self.refreshed < CLAIM_REFRESH_SECONDS:
            return
        self.claim = refresh_claim(self.source, self.claim)
        self.refreshed = time.monotonic()

    @property
    def _actor(self) -> str:
        return f"sync:{self.source.name}"

    def _connector(self, pk: int) -> Connector:
        if pk not in self.connectors:
            self.connectors[pk] = Connector.objects.get(pk=pk)
        return self.connectors[pk]
