"""Celery tasks of the register: sync, revocation at the IdP, the revocation sweep and grant expiry."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from telemetry import metrics

from . import services, sync
from .idp.base import NotFound, PermanentIdpError, RevokeOutcome, TransientIdpError
from .models import Grant, IdentitySource, IllegalTransition

logger = logging.getLogger(__name__)


@shared_task(name="connectors.sync_source", max_retries=0, ignore_result=True)
def sync_source(source_id: int, force: bool = False) -> str:
    """Sync one source if it is enabled and due (or ``force``); a duplicate delivery finds it not due."""
    source = IdentitySource.objects.filter(pk=source_id, enabled=True).first()
    if source is None:
        return "skipped: no such enabled source"
    if not force and not source.is_due():
        return "skipped: not due"
    run = sync.sync_source(source)
    return run.outcome


@shared_task(name="connectors.sync_due_sources", max_retries=0, ignore_result=True)
def sync_due_sources() -> int:
    """Enqueue a sync of every enabled source whose interval has passed and that nobody is syncing."""
    now = timezone.now()
    stale = now - sync.claim_timeout()
    due = [
        s.pk
        for s in IdentitySource.objects.filter(enabled=True).only(
            "pk", "enabled", "sync_interval", "last_sync_started_at", "sync_claimed_at"
        )
        if s.is_due(now) and (s.sync_claimed_at is None or s.sync_claimed_at < stale)
    ]
    for pk in due:
        sync_source.delay(pk)
    return len(due)


def _backoff(retries: int) -> int:
    return min(30 * 2**retries, 1800)


@shared_task(
    bind=True,
    name="connectors.revoke_grant_at_idp",
    max_retries=settings.LANYARD_REVOKE_MAX_RETRIES,
    ignore_result=True,
    acks_late=True,
)
def revoke_grant_at_idp(self, grant_id: int) -> str:
    """Revoke a revoking grant at its IdP; success or 404 marks it revoked, transient errors retry."""
    grant = Grant.objects.select_related("source", "identity", "app").filter(pk=grant_id).first()
    if grant is None or grant.status != Grant.Status.REVOKING:
        return "skipped: not revoking"
    now = timezone.now()
    if not services.grant_revoke_claim(grant_id=grant.pk, now=now):
        return "skipped: another delivery is revoking it"
    try:
        if grant.source is None:
            outcome = RevokeOutcome.REVOKED
        else:
            adapter = services.source_adapter(grant.source)
            try:
                outcome = adapter.revoke_grant(
                    services.grant_ref(grant), confirm_tenant_wide=grant.revoke_tenant_wide_confirmed
                )
            except NotFound:
                outcome = RevokeOutcome.ALREADY_GONE
            finally:
                adapter.close()
    except TransientIdpError as exc:
        metrics.REVOCATIONS.labels("transient_error").inc()
        retries = self.request.retries
        limit = settings.LANYARD_REVOKE_MAX_RETRIES  # read now, not at import, so it can be tuned
        last = retries >= limit
        countdown = _backoff(retries)
        # The sweep takes over once Celery's retries are spent (or if the retry message is lost).
        sweep = timedelta(minutes=settings.LANYARD_REVOKE_SWEEP_MINUTES)
        retry_at = now + sweep if last else now + timedelta(seconds=countdown) + sweep
        try:
            services.grant_record_revoke_failure(
                grant=grant, error=str(exc), permanent=False, retry_at=retry_at
            )
        except IllegalTransition:
            return "skipped: not revoking"
        if last:
            metrics.REVOCATIONS.labels("gave_up").inc()
            logger.warning("revocation of grant %s gave up after %s retries: %s", grant_id, retries, exc)
            return "retries exhausted: left to the sweep"
        raise self.retry(exc=exc, countdown=countdown, max_retries=limit)
    except PermanentIdpError as exc:
        metrics.REVOCATIONS.labels("refused").inc()
        retry_at = now + timedelta(minutes=settings.LANYARD_REVOKE_PERMANENT_RETRY_MINUTES)
        try:
            services.grant_record_revoke_failure(
                grant=grant, error=str(exc), permanent=True, retry_at=retry_at
            )
        except IllegalTransition:
            return "skipped: not revoking"
        logger.warning("revocation of grant %s refused by the IdP: %s", grant_id, exc)
        return "failed"
    try:
        services.grant_mark_revoked(grant=grant, idp_outcome=str(outcome))
    except IllegalTransition:
        return "skipped: not revoking"
    metrics.REVOCATIONS.labels(str(outcome)).inc()
    return str(outcome)


@shared_task(name="connectors.sweep_revoking", max_retries=0, ignore_result=True)
def sweep_revoking() -> int:
    """Re-enqueue grants left revoking past their retry time, so a revocation is never lost."""
    from .queueing import enqueue

    pks = services.grants_claim_revoke_retries()
    for pk in pks:
        enqueue(revoke_grant_at_idp, pk, what=f"revocation of grant {pk}")
    return len(pks)


@shared_task(name="connectors.expire_stale_grants", max_retries=0, ignore_result=True)
def expire_stale_grants() -> dict[str, int]:
    """Apply the expiry policy: expire past-expiry grants, revoke stale and unsanctioned ones."""
    summary = services.grants_apply_expiry_policy()
    return {
        "expired": summary.expired,
        "stale": summary.stale.total,
        "unsanctioned": summary.unsanctioned.total,
        "skipped_tenant_wide": summary.stale.skipped_tenant_wide + summary.unsanctioned.skipped_tenant_wide,
    }
