"""Re-encrypt every stored secret with the newest key of ``LANYARD_ENCRYPTION_KEYS``.

The fields come from ``crypto.encrypted_fields()`` (each app registers its own). Each model is
walked in primary-key order, ``batch_size`` rows at a time, one transaction per batch: the rows
are locked (``select_for_update``), every value not already under the newest key is rotated
(``MultiFernet.rotate``, which keeps the plaintext and its original timestamp) and written back
with one ``bulk_update``. A batch commits whole or not at all, so an interruption leaves values
that are either rotated or still readable with the old key; running again skips the rotated ones
(``crypto.is_current``) and finishes the rest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.services import record

from . import crypto


class RotationError(Exception):
    """Rotation cannot start (no keys configured)."""


@dataclass(slots=True)
class FieldCount:
    """What was found in one (model, field): rotated now, already current, unreadable."""

    label: str
    rotated: int = 0
    current: int = 0
    old_key: int = 0  # --check only: readable only with an older key
    unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "rotated": self.rotated,
            "current": self.current,
            "old_key": self.old_key,
            "unreadable": self.unreadable,
        }


@dataclass(slots=True)
class RotationReport:
    fields: list[FieldCount] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(f.rotated for f in self.fields)

    @property
    def old_key(self) -> int:
        return sum(f.old_key for f in self.fields)

    @property
    def unreadable(self) -> int:
        return sum(f.unreadable for f in self.fields)

    def as_data(self) -> dict[str, Any]:
        return {f.label: f.as_dict() for f in self.fields}


def _label(model: type, field_name: str) -> str:
    return f"{model._meta.label}.{field_name}"


def _require_keys() -> None:
    if not settings.LANYARD_ENCRYPTION_KEYS:
        raise RotationError(
            "LANYARD_ENCRYPTION_KEYS is not set: there is no newest key to rotate to "
            "(the DEBUG fallback key cannot be rotated)."
        )


def _classify(token: str) -> str:
    if crypto.is_current(token):
        return "current"
    try:
        crypto.decrypt_json(token)
    except crypto.DecryptionError:
        return "unreadable"
    return "old_key"


def encryption_key_check() -> RotationReport:
    """Count, per field, the values under the newest key, only under an older one, and unreadable."""
    _require_keys()
    report = RotationReport()
    for model, name in crypto.encrypted_fields():
        count = FieldCount(_label(model, name))
        tokens = model._base_manager.exclude(**{name: ""}).values_list(name, flat=True).iterator()
        for token in tokens:
            kind = _classify(token)
            setattr(count, kind, getattr(count, kind) + 1)
        report.fields.append(count)
    return report


def _rotate_batch(model: type, name: str, after: Any, batch_size: int, count: FieldCount) -> Any:
    """Rotate one batch of rows with primary key above ``after``; return the last key seen (None: done)."""
    with transaction.atomic():
        rows = list(
            model._base_manager.select_for_update()
            .filter(**({} if after is None else {"pk__gt": after}))
            .exclude(**{name: ""})
            .order_by("pk")
            .only("pk", name)[:batch_size]
        )
        if not rows:
            return None
        changed = []
        for row in rows:
            token = getattr(row, name)
            if crypto.is_current(token):
                count.current += 1
                continue
            try:
                setattr(row, name, crypto.rotate(token))
            except crypto.DecryptionError:
                count.unreadable += 1  # left as it is: no configured key reads it
                continue
            changed.append(row)
        if changed:
            model._base_manager.bulk_update(changed, [name])
        # Counted only once the batch is written: a failure rolls the batch back and adds nothing.
        count.rotated += len(changed)
        return rows[-1].pk


def encryption_key_rotate(*, actor: Any = "system", batch_size: int = 200) -> RotationReport:
    """Re-encrypt every registered value with the newest key, in batches; record the counts."""
    _require_keys()
    report = RotationReport()
    try:
        for model, name in crypto.encrypted_fields():
            count = FieldCount(_label(model, name))
            report.fields.append(count)
            after = _rotate_batch(model, name, None, batch_size, count)
            while after is not None:
                after = _rotate_batch(model, name, after, batch_size, count)
    except BaseException:
        # Interrupted (an error, Ctrl-C): what committed stays rotated; say so in the trail. If the
        # database itself is what failed this cannot be written either, and the original error
        # (re-raised below) is the one that matters.
        with contextlib.suppress(Exception), transaction.atomic():
            record(
                "crypto.key_rotation_interrupted",
                actor=actor,
                outcome="failure",
                data={"keys": len(settings.LANYARD_ENCRYPTION_KEYS), "fields": report.as_data()},
            )
        raise
    with transaction.atomic():
        record(
            "crypto.key_rotated",
            actor=actor,
            outcome="success" if not report.unreadable else "failure",
            data={"keys": len(settings.LANYARD_ENCRYPTION_KEYS), "fields": report.as_data()},
        )
    return report
