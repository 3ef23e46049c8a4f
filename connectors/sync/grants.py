"""Apps and grants: known apps, shadow discovery, grant upserts, risk raises, vanished grants."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from audit import services as audit

from .. import bulk, catalog, risk, services
from ..idp.base import IdpGrant
from ..models import CatalogEntry, Connector, ConnectorApp, Grant, Risk
from .helpers import _assess, _aware, _get, _json, _later, _valid
from .state import CHUNK, VANISHED_REASON, SyncState

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
RISK_ORDER = list(Risk.values)


class GrantSync(SyncState):
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
        """Return (app pk, connector pk) for the grant's client id, adding a path or a shadow connector.

        An app this source has not listed before becomes another path of the connector it already is
        elsewhere (the same id in another source of this kind: a sync or IAM put it there) or of the
        catalog's product; only an app known to neither becomes a new discovered connector.
        """
        found = self.apps.get(g.client_id)
        if found is not None:
            return found
        meta = self.app_meta.get(g.client_id)
        name = ((meta.name if meta else "") or g.app_name or g.client_id)[:200]
        assessment = _assess(tuple(g.scopes), g.consent_type == Grant.ConsentType.ALL_PRINCIPALS)
        connector, matched_by, entry = self._known_connector(g.client_id)
        if connector is None:
            level = assessment.level
            if entry is not None and RISK_ORDER.index(entry.risk) > RISK_ORDER.index(level):
                level = entry.risk  # the catalog's default risk is a floor
            connector = Connector.objects.create(
                name=entry.name if entry else name,
                vendor=(entry.publisher if entry else (meta.publisher if meta else ""))[:200],
                kind=entry.kind
                if entry
                else _valid(meta.kind if meta else "", Connector.Kind.values, Connector.Kind.OAUTH_APP),
                status=Connector.Status.DISCOVERED,
                risk=level,
                risk_score=assessment.score,
                catalog_entry=entry,
                discovered_at=self.now,
                status_changed_at=self.now,
                created_at=self.now,
            )
            if entry is not None:
                self._catalog_connectors[entry.pk] = connector.pk
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
        data = {
            "client_id": g.client_id,
            "app_name": name,
            "publisher": app.publisher,
            "verified": app.verified,
            "risk": assessment.level,
            "risk_score": assessment.score,
            "scopes": list(g.scopes),
            "catalog": entry.slug if entry else None,
            "sync_run": self.run.pk,
        }
        if matched_by is None:
            audit.record(
                "connector.discovered",
                actor=self._actor,
                connector=connector,
                source=self.source,
                target=connector,
                data=data,
            )
            self.run.shadow += 1
            self.discovered.add(connector.pk)
        else:
            audit.record(
                "connector.path_added",
                actor=self._actor,
                connector=connector,
                source=self.source,
                target=app,
                data={**data, "matched_by": matched_by},
            )
            self.bump("paths_added")
        self.apps[g.client_id] = (app.pk, connector.pk)
        self.connectors[connector.pk] = connector
        return app.pk, connector.pk

    def _known_connector(self, client_id: str) -> tuple[Connector | None, str | None, CatalogEntry | None]:
        """Return (connector, how it matched, catalog entry) for a client id new to this source."""
        if self._matcher is None:
            # Loaded once per run, and only when the run meets an app it does not know.
            self._matcher = catalog.Matcher(self.source.kind)
            self._kin_apps = dict(
                ConnectorApp.objects.filter(source__kind=self.source.kind)
                .exclude(source=self.source)
                .order_by("-pk")
                .values_list("client_id", "connector_id")
            )
            self._catalog_connectors = {}
            for entry_id, pk in (
                Connector.objects.filter(catalog_entry__isnull=False)
                .exclude(status=Connector.Status.MERGED)
                .order_by("-pk")
                .values_list("catalog_entry_id", "pk")
            ):
                self._catalog_connectors[entry_id] = pk
        kin = self._kin_apps.get(client_id)
        if kin is not None:
            return self._connector(kin), "same id in another source", None
        entry = self._matcher.entry_for(client_id)
        if entry is None:
            return None, None, None
        # Two sources discovering one product at once: the entry's row lock makes the second one wait
        # and then find the first one's connector.
        CatalogEntry.objects.select_for_update().filter(pk=entry.pk).first()
        pk = self._catalog_connectors.get(entry.pk) or (
            Connector.objects.filter(catalog_entry=entry)
            .exclude(status=Connector.Status.MERGED)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if pk is None:
            return None, None, entry
        return self._connector(pk), f"catalog:{entry.slug}", entry

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
