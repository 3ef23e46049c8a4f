"""Activity: record the IdP's sign-in events in the audit log and mark the grants they used."""

from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_datetime

from audit import services as audit
from audit.models import AuditEvent

from .. import bulk
from ..idp.base import IdpActivity
from ..models import Grant, Identity
from .helpers import _aware, _get, _ip, _later, _valid
from .state import SyncState

ACTIVITY_CURSOR = "activity_since"
AUDIT_OUTCOMES = frozenset(AuditEvent.Outcome.values)


class ActivitySync(SyncState):
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
