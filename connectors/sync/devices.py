"""Devices: upsert from the IdP's device listing and from the devices activity events name."""

from __future__ import annotations

from collections.abc import Iterable

from .. import bulk
from ..idp.base import IdpDevice
from ..models import Device
from .helpers import _aware, _get, _later
from .state import SyncState

DEVICE_FIELDS = ("name", "platform", "managed", "compliant", "owner_id", "last_seen")


class DeviceSync(SyncState):
    def sync_devices(self) -> None:
        self.phase = "devices"
        try:
            for page in self.adapter.iter_devices():
                with self.page():
                    self._upsert_devices(page)
                self.keep_claim()
        finally:
            # Devices known from earlier runs still link grants when this listing is refused.
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
