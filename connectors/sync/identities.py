"""Identities: upsert from the IdP's user listing, link managers, deprovision those no longer listed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.functions import Lower

from .. import bulk, people, services
from ..idp.base import IdpUser
from ..models import Identity
from .helpers import _get, _valid
from .state import CHUNK, VANISHED_REASON, SyncState

IDENTITY_FIELDS = ("email", "name", "department", "status", "is_service", "link_key")
IDENTITY_STATUSES = frozenset(Identity.Status.values)


class IdentitySync(SyncState):
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
        self._link_people()

    def _link_people(self) -> None:
        """Put this source's identities into people with the other sources' (connectors.people)."""
        for key, n in people.link_people().items():
            self.bump(key, n)
        self.keep_claim()

    @staticmethod
    def _identity_values(u: IdpUser) -> dict[str, Any]:
        return {
            "email": (u.email or "")[:254],
            "name": (u.name or "")[:200],
            "department": (u.department or "")[:100],
            "status": _valid(u.status, IDENTITY_STATUSES, Identity.Status.ACTIVE),
            "is_service": bool(u.is_service),
            "link_key": (u.link_key or "")[:255],
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
