"""Claim and release of a source: a compare-and-swap on ``sync_claimed_at``, one sync a source at a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import IdentitySource, SyncRun

CLAIM_REFRESH_SECONDS = 60


class SyncRefused(Exception):
    """Another sync holds the source."""


class ClaimLost(Exception):
    """The claim on the source was taken over (this worker was presumed dead)."""


def claim_timeout() -> timedelta:
    return timedelta(minutes=settings.LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES)


def claim_source(source: IdentitySource, now: datetime) -> SyncRun | None:
    """Claim the source for a sync starting at ``now``; return a refused run if another sync holds it."""
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
    return None


def refresh_claim(source: IdentitySource, claim: datetime) -> datetime:
    """Move the claim held since ``claim`` to now and return it; raise ClaimLost if it was taken over."""
    new = timezone.now()
    if not IdentitySource.objects.filter(pk=source.pk, sync_claimed_at=claim).update(sync_claimed_at=new):
        raise ClaimLost(f"{source.name}: the sync claim was taken over by another worker")
    return new


def release_claim(source: IdentitySource, claim: datetime, values: dict[str, Any]) -> None:
    """Write ``values`` (which release the claim) unless another worker took the claim over meanwhile."""
    IdentitySource.objects.filter(pk=source.pk, sync_claimed_at=claim).update(**values)
