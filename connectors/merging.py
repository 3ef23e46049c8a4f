"""One connector per product: IAM merges two connectors into one, or splits a path back out."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import services as audit

from .models import Connector, ConnectorApp, Grant, IllegalTransition, Risk
from .signals import connector_merged

RISK_ORDER = list(Risk.values)


def connector_merge(*, survivor: Connector, merged: Connector, actor: Any) -> Connector:
    """Fold ``merged`` into ``survivor``: its paths, grants and requests move; it stays as a merged alias."""
    if survivor.pk == merged.pk:
        raise IllegalTransition("A connector cannot be merged into itself.")
    with transaction.atomic():
        rows = {
            c.pk: c for c in Connector.objects.select_for_update().filter(pk__in=[survivor.pk, merged.pk])
        }
        survivor, merged = rows[survivor.pk], rows[merged.pk]
        for c in (survivor, merged):
            if c.status == Connector.Status.MERGED:
                raise IllegalTransition(f"Connector '{c.name}' is already merged into another one.")
        apps = list(ConnectorApp.objects.filter(connector=merged).values_list("pk", flat=True))
        moved_grants = Grant.objects.filter(connector=merged).update(connector=survivor)
        ConnectorApp.objects.filter(pk__in=apps).update(connector=survivor)
        fields = ["status", "status_changed_at", "merged_into"]
        previous = merged.status
        merged.status, merged.status_changed_at, merged.merged_into = (
            Connector.Status.MERGED,
            timezone.now(),
            survivor,
        )
        merged.save(update_fields=fields)
        changed = []
        if survivor.catalog_entry_id is None and merged.catalog_entry_id is not None:
            survivor.catalog_entry_id = merged.catalog_entry_id
            changed.append("catalog_entry")
        if (
            RISK_ORDER.index(merged.risk) > RISK_ORDER.index(survivor.risk)
            or merged.risk_score > survivor.risk_score
        ):
            survivor.risk = max(survivor.risk, merged.risk, key=RISK_ORDER.index)
            survivor.risk_score = max(survivor.risk_score, merged.risk_score)
            changed += ["risk", "risk_score"]
        if merged.discovered_at and (
            survivor.discovered_at is None or merged.discovered_at < survivor.discovered_at
        ):
            survivor.discovered_at = merged.discovered_at
            changed.append("discovered_at")
        if changed:
            survivor.save(update_fields=changed)
        moved = connector_merged.send(sender=Connector, survivor=survivor, merged=merged)
        audit.record(
            "connector.merged",
            actor=actor,
            connector=survivor,
            target=merged,
            data={
                "survivor": survivor.pk,
                "survivor_name": survivor.name,
                "merged": merged.pk,
                "merged_name": merged.name,
                "merged_status": previous,
                "paths": apps,
                "grants": moved_grants,
                **{k: v for _, result in moved for k, v in (result or {}).items()},
            },
        )
    return survivor


def connector_split(*, app: ConnectorApp, actor: Any) -> Connector:
    """Move one path (and its grants) out of its connector into a new discovered connector of its own."""
    with transaction.atomic():
        app = ConnectorApp.objects.select_for_update().select_related("connector", "source").get(pk=app.pk)
        old = Connector.objects.select_for_update().get(pk=app.connector_id)
        if ConnectorApp.objects.filter(connector=old).count() < 2:
            raise IllegalTransition(
                f"'{app}' is the only path of '{old.name}': there is nothing to split off."
            )
        now = timezone.now()
        new = Connector.objects.create(
            name=app.name or app.client_id,
            vendor=app.publisher,
            kind=old.kind,
            status=Connector.Status.DISCOVERED,
            risk=old.risk,
            risk_score=old.risk_score,
            discovered_at=app.first_seen,
            status_changed_at=now,
        )
        app.connector = new
        app.save(update_fields=["connector"])
        grants = Grant.objects.filter(app=app, connector=old).update(connector=new)
        audit.record(
            "connector.split",
            actor=actor,
            connector=new,
            source=app.source,
            target=app,
            data={
                "from": old.pk,
                "from_name": old.name,
                "to": new.pk,
                "client_id": app.client_id,
                "grants": grants,
            },
        )
    return new
