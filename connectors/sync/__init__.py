"""Sync one identity source into the register, page by page, in bulk, idempotently.

``sync_source`` claims the source with a compare-and-swap on ``sync_claimed_at`` (so two workers never
sync one source at once), then streams identities, devices, apps, grants and activity from the
adapter. Each page costs a fixed number of queries: one to load the rows it names, one bulk insert
of the new ones, one bulk update of the ones that really changed. Only keys are kept between
pages (identity ids, the primary keys of the grants seen), so memory does not grow with the tenant.

Grants and identities that the IdP no longer lists are marked gone only after a complete listing:
any failure leaves them alone and fails the run.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit import services as audit
from audit.models import AuditEvent

from .. import bulk, risk, services
from ..idp.base import Adapter, IdpActivity, IdpApp, IdpDevice, IdpError, IdpGrant, IdpUser
from ..models import Connector, ConnectorApp, Device, Grant, Identity, IdentitySource, SyncRun

logger = logging.getLogger(__name__)

VANISHED_REASON = "vanished at IdP"
ACTIVITY_CURSOR = "activity_since"
CLAIM_REFRESH_SECONDS = 60
ANALYZE_AFTER_ROWS = 5000
CHUNK = 1000

IDENTITY_FIELDS = ("email", "name", "department", "status", "is_service")
DEVICE_FIELDS = ("name", "platform", "managed", "compliant", "owner_id", "last_seen")
APP_FIELDS = ("name", "publisher", "verified", "external_id")
GRANT_FIELDS = (
    "connector_id",
    "app_id",
    "identity_id",
    "device_id",
    "kind",
    "consent_type",
    "scopes",
    "expires_at",
    "last_used_at",
    "token_hint",
    "idp_data",
)
GRANT_STATUS_FIELDS = ("status", "revoked_at", "revoked_by_id", "revoke_reason")
GRANT_COLUMNS = ("pk", "external_id", *GRANT_FIELDS, *GRANT_STATUS_FIELDS)
GRANT_KINDS = frozenset(Grant.Kind.values)
CONSENT_TYPES = frozenset(Grant.ConsentType.values)
IDENTITY_STATUSES = frozenset(Identity.Status.values)
AUDIT_OUTCOMES = frozenset(AuditEvent.Outcome.values)


class SyncRefused(Exception):
    """Another sync holds the source."""


class ClaimLost(Exception):
    """The claim on the source was taken over (this worker was presumed dead)."""


# ---------------------------------------------------------------------------------------- helpers


class PkSet:
    """A set of positive integer primary keys as a bitmap: one bit a key, however many are added."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, pk: int) -> None:
        byte, bit = divmod(pk, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1 + len(self._bits) // 2))
        if not self._bits[byte] & (1 << bit):
            self._bits[byte] |= 1 << bit
            self.count += 1

    def __contains__(self, pk: int) -> bool:
        byte, bit = divmod(pk, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))

    def __len__(self) -> int:
        return self.count


def _aware(value: datetime | None) -> datetime | None:
    if value is None or timezone.is_aware(value):
        return value
    return value.replace(tzinfo=UTC)


def _get(mapping: dict[str, int], key: str | None) -> int | None:
    return mapping.get(key) if key else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip())) if value else None
    except ValueError:
        return None


def _json(value: Any) -> Any:
    """Return ``value`` as it reads back from a JSON column, so comparisons are exact."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=4096)
def _assess(scopes: tuple[str, ...], tenant_wide: bool) -> risk.Assessment:
    return risk.assess(scopes, tenant_wide=tenant_wide)


def _valid(choice: str, choices: Collection[str], default: str) -> str:
    return choice if choice in choices else default


# ---------------------------------------------------------------------------------------- the run


@dataclass
class _Sync:
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
    seen_grants: PkSet = field(default_factory=PkSet)
    seen_identities: PkSet = field(default_factory=PkSet)
    # status -> identity pks newly suspended/deprovisioned in this run (signalled at the end)
    status_changes: dict[str, list[int]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    analyzed: dict[str, int] = field(default_factory=dict)
    cursors: dict[str, Any] = field(default_factory=dict)

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
        new = timezone.now()
        if not IdentitySource.objects.filter(pk=self.source.pk, sync_claimed_at=self.claim).update(
            sync_claimed_at=new
        ):
            raise ClaimLost(f"{self.source.name}: the sync claim was taken over by another worker")
        self.claim = new
        self.refreshed = time.monotonic()

    # ------------------------------------------------------------------------------------ identities

    def sync_users(self) -> None:
        self.phase = "users"
        User = get_user_model()
        for page in self.adapter.iter_users():
            page = list({u.external_id: u for u in page}.values())
            self.run.identities_seen += len(page)
            with self.page():
                existing = {
                    i.external_id: i
                    for i in Identity.objects.filter(
                        source=self.source, external_id__in=[u.external_id for u in page]
                    ).only("pk", "external_id", "user_id", *IDENTITY_FIELDS)
                }
                unlinked = {
                    u.email.lower()
                    for u in page
                    if u.email and (u.external_id not in existing or existing[u.external_id].user_id is None)
                }
                users = (
                    dict(
                        User.objects.annotate(e=Lower("email")).filter(e__in=unlinked).values_list("e", "pk")
                    )
                    if unlinked
                    else {}
                )
                new: list[Identity] = []
                changed: list[Identity] = []
                fields: set[str] = set()
                changes: list[tuple[Identity, str | None]] = []
                for u in page:
                    values = self._identity_values(u)
                    row = existing.get(u.external_id)
                    if row is None:
                        row = Identity(
                            source=self.source,
                            external_id=u.external_id,
                            first_seen=self.now,
                            last_seen=self.now,
                            user_id=users.get(u.email.lower()),
                            status_changed_at=self.now
                            if values["status"] != Identity.Status.ACTIVE
                            else None,
                            **values,
                        )
                        new.append(row)
                        if row.status != Identity.Status.ACTIVE:
                            changes.append((row, None))
                    else:
                        diff = {k for k, v in values.items() if getattr(row, k) != v}
                        if row.user_id is None and users.get(u.email.lower()):
                            row.user_id = users[u.email.lower()]
                            diff.add("user_id")
                        if diff:
                            previous = row.status
                            for k in diff - {"user_id"}:
                                setattr(row, k, values[k])
                            row.last_seen = self.now
                            diff.add("last_seen")
                            if "status" in diff:
                                row.status_changed_at = self.now
                                diff.add("status_changed_at")
                                changes.append((row, previous))
                            changed.append(row)
                            fields |= diff
                    self.managers[u.external_id] = u.manager_external_id or None
                if new:
                    Identity.objects.bulk_create(new)
                    self.bump("identities_new", len(new))
                    self.grew(Identity, len(new))
                if changed:
                    bulk.update(Identity, changed, fields)
                    self.bump("identities_changed", len(changed))
                self._identity_status_changed(changes)
            self.keep_claim()
        self._link_managers()

    @staticmethod
    def _identity_values(u: IdpUser) -> dict[str, Any]:
        return {
            "email": (u.email or "")[:254],
            "name": (u.name or "")[:200],
            "department": (u.department or "")[:100],
            "status": _valid(u.status, IDENTITY_STATUSES, Identity.Status.ACTIVE),
            "is_service": bool(u.is_service),
        }

    def _identity_status_changed(self, changes: list[tuple[Identity, str | None]], reason: str = "") -> None:
        if not changes:
            return
        services.identities_record_status_changes(
            changes=changes, source=self.source, actor=self._actor, reason=reason
        )
        for identity, _ in changes:
            if identity.status in services.OFFBOARDING_STATUSES:
                self.status_changes.setdefault(identity.status, []).append(identity.pk)

    @property
    def _actor(self) -> str:
        return f"sync:{self.source.name}"

    def _link_managers(self) -> None:
        """Point every identity seen at its manager, now that all of them exist."""
        rows = Identity.objects.filter(source=self.source).values_list("pk", "external_id", "manager_id")
        self.identity_pks = {ext: pk for pk, ext, _ in rows.iterator(chunk_size=5000)}
        fixes: list[Identity] = []
        for pk, ext, manager_id in rows.iterator(chunk_size=5000):
            if ext not in self.managers:
                continue
            wanted = _get(self.identity_pks, self.managers[ext])
            if wanted != manager_id:
                fixes.append(Identity(pk=pk, manager_id=wanted))
            if len(fixes) >= CHUNK:
                bulk.update(Identity, fixes, ["manager"])
                self.bump("managers_changed", len(fixes))
                fixes = []
        if fixes:
            bulk.update(Identity, fixes, ["manager"])
            self.bump("managers_changed", len(fixes))
        # From here on only "was this identity listed?" matters: keep one bit per identity, not a map.
        for ext in self.managers:
            if ext in self.identity_pks:
                self.seen_identities.add(self.identity_pks[ext])
        self.managers = {}

    # ------------------------------------------------------------------------------------ devices

    def sync_devices(self) -> None:
        self.phase = "devices"
        for page in self.adapter.iter_devices():
            with self.page():
                self._upsert_devices(page)
            self.keep_claim()
        self.device_pks = dict(
            Device.objects.filter(source=self.source)
            .values_list("external_id", "pk")
            .iterator(chunk_size=5000)
        )

    def _upsert_devices(self, page: Iterable[IdpDevice]) -> dict[str, Device]:
        page = list({d.external_id: d for d in page if d.external_id}.values())
        existing = {
            d.external_id: d
            for d in Device.objects.filter(
                source=self.source, external_id__in=[d.external_id for d in page]
            ).only("pk", "external_id", *DEVICE_FIELDS)
        }
        new: list[Device] = []
        changed: list[Device] = []
        fields: set[str] = set()
        for d in page:
            owner = _get(self.identity_pks, d.owner_external_id)
            values = {
                "name": (d.name or "")[:200],
                "platform": (d.platform or "")[:50],
                "managed": bool(d.managed),
                "compliant": bool(d.compliant),
            }
            row = existing.get(d.external_id)
            if row is None:
                row = Device(
                    source=self.source,
                    external_id=d.external_id,
                    owner_id=owner,
                    first_seen=self.now,
                    last_seen=_aware(d.last_seen),
                    **values,
                )
                new.append(row)
                existing[d.external_id] = row
                continue
            diff = {k for k, v in values.items() if getattr(row, k) != v}
            for k in diff:
                setattr(row, k, values[k])
            if owner is not None and row.owner_id != owner:
                row.owner_id = owner
                diff.add("owner_id")
            last_seen = _later(row.last_seen, _aware(d.last_seen))
            if last_seen != row.last_seen:
                row.last_seen = last_seen
                diff.add("last_seen")
            if diff:
                changed.append(row)
                fields |= diff
        if new:
            Device.objects.bulk_create(new)
            self.device_pks.update((d.external_id, d.pk) for d in new)
            self.bump("devices_new", len(new))
            self.grew(Device, len(new))
        if changed:
            bulk.update(Device, changed, fields)
            self.bump("devices_changed", len(changed))
        return existing

    # ------------------------------------------------------------------------------------ apps

    def sync_apps(self) -> None:
        self.phase = "apps"
        self.apps = {
            client_id: (pk, connector_id)
            for pk, client_id, connector_id in ConnectorApp.objects.filter(source=self.source).values_list(
                "pk", "client_id", "connector_id"
            )
        }
        for page in self.adapter.iter_apps():
            page = list({a.client_id: a for a in page}.values())
            with self.page():
                known = [a for a in page if a.client_id in self.apps]
                rows = {
                    r.client_id: r
                    for r in ConnectorApp.objects.filter(
                        source=self.source, client_id__in=[a.client_id for a in known]
                    ).only("pk", "client_id", *APP_FIELDS)
                }
                changed: list[ConnectorApp] = []
                fields: set[str] = set()
                for a in page:
                    row = rows.get(a.client_id)
                    if row is None:
                        self.app_meta[a.client_id] = a
                        continue
                    values = {
                        "name": (a.name or "")[:200],
                        "publisher": (a.publisher or "")[:200],
                        "verified": bool(a.verified),
                        "external_id": (a.external_id or "")[:255],
                    }
                    diff = {k for k, v in values.items() if getattr(row, k) != v}
                    if diff:
                        for k in diff:
                            setattr(row, k, values[k])
                        row.last_seen = self.now
                        changed.append(row)
                        fields |= diff | {"last_seen"}
                if changed:
                    bulk.update(ConnectorApp, changed, fields)
                    self.bump("apps_changed", len(changed))
            self.keep_claim()

    def _app_for(self, g: IdpGrant) -> tuple[int, int]:
        """Return (app pk, connector pk) for the grant's client id, discovering a shadow connector."""
        found = self.apps.get(g.client_id)
        if found is not None:
            return found
        meta = self.app_meta.get(g.client_id)
        name = ((meta.name if meta else "") or g.app_name or g.client_id)[:200]
        assessment = _assess(tuple(g.scopes), g.consent_type == Grant.ConsentType.ALL_PRINCIPALS)
        connector = Connector.objects.create(
            name=name,
            vendor=(meta.publisher if meta else "")[:200],
            kind=_valid(meta.kind if meta else "", Connector.Kind.values, Connector.Kind.OAUTH_APP),
            status=Connector.Status.DISCOVERED,
            risk=assessment.level,
            risk_score=assessment.score,
            discovered_at=self.now,
            status_changed_at=self.now,
            created_at=self.now,
        )
        app = ConnectorApp.objects.create(
            connector=connector,
            source=self.source,
            client_id=g.client_id[:255],
            external_id=(meta.external_id if meta else "")[:255],
            name=name,
            publisher=(meta.publisher if meta else "")[:200],
            verified=bool(meta.verified) if meta else False,
            first_seen=self.now,
            last_seen=self.now,
        )
        audit.record(
            "connector.discovered",
            actor=self._actor,
            connector=connector,
            source=self.source,
            target=connector,
            data={
                "client_id": g.client_id,
                "app_name": name,
                "publisher": connector.vendor,
                "verified": app.verified,
                "risk": assessment.level,
                "risk_score": assessment.score,
                "scopes": list(g.scopes),
                "sync_run": self.run.pk,
            },
        )
        self.run.shadow += 1
        self.discovered.add(connector.pk)
        self.apps[g.client_id] = (app.pk, connector.pk)
        self.connectors[connector.pk] = connector
        return app.pk, connector.pk

    # ------------------------------------------------------------------------------------ grants

    def sync_grants(self) -> None:
        self.phase = "grants"
        for page in self.adapter.iter_grants():
            with self.page():
                self._grants_page(page)
            self.keep_claim()

    def _grants_page(self, page: list[IdpGrant]) -> None:
        page = list({g.external_id: g for g in page}.values())
        self.run.seen += len(page)
        # Plain tuples, not model instances: a resync compares every row and changes almost none.
        existing = {
            row[1]: row
            for row in Grant.objects.filter(source=self.source, external_id__in=[g.external_id for g in page])
            .order_by()
            .values_list(*GRANT_COLUMNS)
        }
        new: list[dict[str, Any]] = []
        changed: list[Grant] = []
        fields: set[str] = set()
        events: list[dict[str, Any]] = []
        for g in page:
            app_pk, connector_pk = self._app_for(g)
            tenant_wide = g.consent_type == Grant.ConsentType.ALL_PRINCIPALS
            score = _assess(tuple(g.scopes), tenant_wide).score
            if score > self.connector_scores.get(connector_pk, -1):
                self.connector_scores[connector_pk] = score
            identity = _get(self.identity_pks, g.user_external_id)
            idp_data = dict(g.extra or {})
            if g.user_external_id and identity is None:
                idp_data[services.USER_KEY] = g.user_external_id
            values = {
                "connector_id": connector_pk,
                "app_id": app_pk,
                "identity_id": identity,
                "kind": g.kind if g.kind in GRANT_KINDS else Grant.Kind.OAUTH_CONSENT,
                "consent_type": g.consent_type
                if g.consent_type in CONSENT_TYPES
                else Grant.ConsentType.PRINCIPAL,
                "scopes": list(g.scopes),
                "expires_at": _aware(g.expires_at),
                "token_hint": (g.token_hint or "")[-16:],
                "idp_data": idp_data,
            }
            device = _get(self.device_pks, g.device_external_id)
            found = existing.get(g.external_id)
            if found is None:
                new.append(
                    {
                        "source_id": self.source.pk,
                        "external_id": g.external_id[:255],
                        "device_id": device,
                        "last_used_at": _aware(g.last_used_at),
                        "first_seen": self.now,
                        "last_seen": self.now,
                        **values,
                    }
                )
                continue
            current = dict(zip(GRANT_COLUMNS, found, strict=True))
            self.seen_grants.add(current["pk"])
            diff = {k for k, v in values.items() if current[k] != v}
            if "idp_data" in diff or "scopes" in diff:
                # Compare as the JSON column reads back (tuples become lists, keys strings).
                for k in ("idp_data", "scopes"):
                    values[k] = _json(values[k])
                    if current[k] == values[k]:
                        diff.discard(k)
            if device is not None and current["device_id"] != device:
                values["device_id"] = device
                diff.add("device_id")
            last_used = _later(current["last_used_at"], _aware(g.last_used_at))
            if last_used != current["last_used_at"]:
                values["last_used_at"] = last_used
                diff.add("last_used_at")
            status = current["status"]
            if not diff and status not in (Grant.Status.REVOKED, Grant.Status.EXPIRED):
                continue
            row = Grant(**current)
            for k in diff:
                setattr(row, k, values[k])
            event = self._reappeared(row, values["expires_at"])
            if event:
                diff |= set(GRANT_STATUS_FIELDS)
                events.append(event)
            if diff:
                row.last_seen = self.now
                changed.append(row)
                fields |= diff | {"last_seen"}
        if new:
            # New rows need no place in seen_grants: their first_seen is this run's (see mark_vanished).
            bulk.insert(Grant, new)
            self.run.new += len(new)
            self.grew(Grant, len(new))
        if changed:
            bulk.update(Grant, changed, fields)
            self.run.changed += len(changed)
        if events:
            audit.record_batch(events)

    def _reappeared(self, row: Grant, expires_at: datetime | None) -> dict[str, Any] | None:
        """Reactivate a grant the IdP lists again after it was revoked or expired; return its event."""
        if row.status == Grant.Status.REVOKED:
            # Revoked while this run was listing: the listing predates the revocation.
            if row.revoked_at is not None and row.revoked_at >= self.run.started_at:
                return None
            action = "grant.reappeared"
        elif row.status == Grant.Status.EXPIRED:
            if expires_at is not None and expires_at <= self.now:
                return None
            action = "grant.renewed"
        else:
            return None
        previous, reason = row.status, row.revoke_reason
        row.status = Grant.Status.ACTIVE
        row.revoked_at = None
        row.revoked_by_id = None
        row.revoke_reason = ""
        return {
            "action": action,
            "actor": self._actor,
            "connector": self._connector(row.connector_id),
            "grant": row,
            "source": self.source,
            "target": row,
            "data": {"from": previous, "previous_reason": reason, "sync_run": self.run.pk},
        }

    def _connector(self, pk: int) -> Connector:
        if pk not in self.connectors:
            self.connectors[pk] = Connector.objects.get(pk=pk)
        return self.connectors[pk]

    def raise_risks(self) -> None:
        """Raise each connector's risk to the riskiest scopes its grants hold in this source."""
        self.phase = "risk"
        pks = list(self.connector_scores)
        if not pks:
            return
        with self.page():
            rows = list(
                Connector.objects.select_for_update()
                .filter(pk__in=pks)
                .only("pk", "name", "risk", "risk_score")
            )
            changed: list[Connector] = []
            events: list[dict[str, Any]] = []
            for c in rows:
                score = self.connector_scores[c.pk]
                if score <= c.risk_score:
                    continue
                previous = (c.risk, c.risk_score)
                c.risk_score, c.risk = score, risk.level_for(score)
                changed.append(c)
                if c.pk in self.discovered:
                    continue  # part of this run's discovery, not a change worth its own event
                events.append(
                    {
                        "action": "connector.risk_raised",
                        "actor": self._actor,
                        "connector": c,
                        "source": self.source,
                        "target": c,
                        "data": {"from": list(previous), "to": [c.risk, c.risk_score]},
                    }
                )
            if changed:
                Connector.objects.bulk_update(changed, ["risk", "risk_score"])
            if events:
                audit.record_batch(events)

    # ------------------------------------------------------------------------------------ activity

    def sync_activity(self) -> None:
        self.phase = "activity"
        since = parse_datetime(self.source.cursors.get(ACTIVITY_CURSOR) or "") or None
        newest = since
        for page in self.adapter.iter_activity(since=since):
            with self.page():
                newest = _later(newest, self._activity_page(page))
            self.keep_claim()
        if newest is not None and newest != since:
            self.cursors[ACTIVITY_CURSOR] = newest.isoformat()

    def _activity_page(self, page: list[IdpActivity]) -> datetime | None:
        if not page:
            return None
        devices = self._upsert_devices([e.device for e in page if e.device is not None])
        people = {
            i.pk: i
            for i in Identity.objects.filter(
                pk__in={
                    self.identity_pks[e.user_external_id]
                    for e in page
                    if e.user_external_id in self.identity_pks
                }
            ).only("pk", "email")
        }
        wanted: dict[tuple[int, int], tuple[datetime, int | None]] = {}
        for e in page:
            person = _get(self.identity_pks, e.user_external_id)
            app = self.apps.get(e.client_id)
            if person is None or app is None:
                continue
            device = devices.get(e.device.external_id) if e.device else None
            key = (app[0], person)
            when = _aware(e.occurred_at)
            if key not in wanted or when > wanted[key][0]:
                wanted[key] = (when, device.pk if device else None)
        # A person may hold several grants of one app (a consent and its refresh tokens): all were used.
        grants: dict[tuple[int, int], list[Grant]] = {}
        if wanted:
            rows = Grant.objects.filter(
                source=self.source,
                app_id__in={k[0] for k in wanted},
                identity_id__in={k[1] for k in wanted},
            ).only("pk", "app_id", "identity_id", "connector_id", "external_id", "last_used_at", "device_id")
            for row in rows.order_by("pk"):
                key = (row.app_id, row.identity_id)
                if key in wanted:
                    grants.setdefault(key, []).append(row)
        changed: list[Grant] = []
        for key, held in grants.items():
            when, device = wanted[key]
            for row in held:
                if row.last_used_at is None or when > row.last_used_at:
                    row.last_used_at = when
                    if device is not None:
                        row.device_id = device
                    changed.append(row)
        if changed:
            bulk.update(Grant, changed, ["last_used_at", "device"])
            self.bump("grants_used", len(changed))
        events = []
        newest = None
        for e in page:
            person = _get(self.identity_pks, e.user_external_id)
            app = self.apps.get(e.client_id)
            held = grants.get((app[0], person)) if app and person else None
            grant = held[0] if held else None
            when = _aware(e.occurred_at)
            newest = _later(newest, when)
            events.append(
                {
                    "action": f"idp.{e.action}"[:64],
                    "occurred_at": when,
                    "outcome": _valid(e.outcome, AUDIT_OUTCOMES, AuditEvent.Outcome.UNKNOWN),
                    "actor": people.get(person) if person else None,
                    "actor_label": None
                    if person in people
                    else (e.user_email or e.user_external_id or "unknown"),
                    "connector": self._connector(app[1]) if app else None,
                    "grant": grant,
                    "source": self.source,
                    "device": devices.get(e.device.external_id) if e.device else None,
                    "ip": _ip(e.ip),
                    "user_agent": e.user_agent,
                    "external_id": f"idp:{self.source.pk}:{e.external_id}"[:200],
                    "data": {"client_id": e.client_id, **(e.data or {})},
                }
            )
        self.bump("activity_recorded", audit.record_batch(events))
        return newest

    # ------------------------------------------------------------------------------------ vanished

    def mark_vanished(self) -> None:
        """After a complete listing: grants still active but not listed were revoked outside Lanyard."""
        self.phase = "vanished"
        unseen: list[int] = []
        active = Grant.objects.filter(
            source=self.source, status=Grant.Status.ACTIVE, first_seen__lt=self.now
        ).values_list("pk", flat=True)
        for pk in active.iterator(chunk_size=5000):
            if pk not in self.seen_grants:
                unseen.append(pk)
        for i in range(0, len(unseen), CHUNK):
            with self.page():
                rows = list(
                    Grant.objects.select_for_update()
                    .filter(pk__in=unseen[i : i + CHUNK], status=Grant.Status.ACTIVE)
                    .only("pk", "status", "connector_id", "external_id", "revoked_at", "revoke_reason")
                )
                for g in rows:
                    g.status = Grant.Status.REVOKED
                    g.revoked_at = self.now
                    g.revoke_reason = VANISHED_REASON
                bulk.update(Grant, rows, ["status", "revoked_at", "revoke_reason"])
                audit.record_batch(
                    {
                        "action": "grant.vanished",
                        "actor": self._actor,
                        "connector": self._connector(g.connector_id),
                        "grant": g,
                        "source": self.source,
                        "target": g,
                        "data": {"reason": VANISHED_REASON, "sync_run": self.run.pk},
                    }
                    for g in rows
                )
                self.run.vanished += len(rows)
        self._identities_vanished()

    def _identities_vanished(self) -> None:
        """After a complete listing: identities no longer listed are deprovisioned."""
        gone = [
            pk
            for pk in Identity.objects.filter(source=self.source)
            .exclude(status=Identity.Status.DEPROVISIONED)
            .values_list("pk", flat=True)
            .iterator(chunk_size=5000)
            if pk not in self.seen_identities
        ]
        for i in range(0, len(gone), CHUNK):
            with self.page():
                rows = list(
                    Identity.objects.select_for_update()
                    .filter(pk__in=gone[i : i + CHUNK])
                    .exclude(status=Identity.Status.DEPROVISIONED)
                    .only("pk", "email", "status", "status_changed_at")
                )
                changes = []
                for row in rows:
                    changes.append((row, row.status))
                    row.status = Identity.Status.DEPROVISIONED
                    row.status_changed_at = self.now
                bulk.update(Identity, rows, ["status", "status_changed_at"])
                self._identity_status_changed(changes, reason=VANISHED_REASON)
                self.bump("identities_vanished", len(rows))


# ---------------------------------------------------------------------------------------- entry point


def claim_timeout() -> timedelta:
    return timedelta(minutes=settings.LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES)


def sync_source(source: IdentitySource, *, now: datetime | None = None) -> SyncRun:
    """Sync one source from its IdP into the register and return the run (refused if already running)."""
    now = now or timezone.now()
    claimed = (
        IdentitySource.objects.filter(pk=source.pk)
        .filter(Q(sync_claimed_at__isnull=True) | Q(sync_claimed_at__lt=now - claim_timeout()))
        .update(sync_claimed_at=now, last_sync_started_at=now)
    )
    if not claimed:
        holder = IdentitySource.objects.filter(pk=source.pk).values_list("sync_claimed_at", flat=True).first()
        return SyncRun.objects.create(
            source=source,
            started_at=now,
            finished_at=now,
            outcome=SyncRun.Outcome.REFUSED,
            error=(
                f"{source.name}: a sync is already running (claimed at {holder:%Y-%m-%d %H:%M:%S} UTC); "
                f"this one was refused. The claim is taken over if it is older than "
                f"{settings.LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES} minutes."
            ),
        )
    source.refresh_from_db()
    run = SyncRun.objects.create(source=source, started_at=now)
    state: _Sync | None = None
    adapter: Adapter | None = None
    error = ""
    try:
        adapter = services.source_adapter(source)
        state = _Sync(source=source, run=run, adapter=adapter, now=now, claim=now)
        state.sync_users()
        state.sync_devices()
        state.sync_apps()
        state.sync_grants()
        state.raise_risks()
        state.sync_activity()
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
    return _finish(source, run, state, error)


def _finish(source: IdentitySource, run: SyncRun, state: _Sync | None, error: str) -> SyncRun:
    finished = max(timezone.now(), run.started_at)
    claim = state.claim if state else run.started_at
    stats = dict(state.stats) if state else {}
    with transaction.atomic():
        run.finished_at = finished
        run.outcome = SyncRun.Outcome.FAILED if error else SyncRun.Outcome.SUCCEEDED
        run.error = error[:5000]
        run.save()
        release: dict[str, Any] = {"sync_claimed_at": None}
        if not error:
            release["last_success_at"] = finished
            if state and state.cursors:
                source.cursors = {**source.cursors, **state.cursors}
                release["cursors"] = source.cursors
        IdentitySource.objects.filter(pk=source.pk, sync_claimed_at=claim).update(**release)
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
            },
        )
        if state:
            services.identities_announce_status_changes(changed=state.status_changes, source_id=source.pk)
    return run
