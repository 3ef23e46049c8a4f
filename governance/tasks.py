import logging

from celery import shared_task
from django.db import OperationalError

logger = logging.getLogger(__name__)


# --- ownership workflow: email and provisioning -------------------------------------------------

TRANSIENT_MAIL_ERRORS = (OSError,)  # smtplib.SMTPException is an OSError


@shared_task(
    name="governance.send_email",
    bind=True,
    max_retries=5,
    autoretry_for=TRANSIENT_MAIL_ERRORS,
    retry_backoff=30,
    retry_backoff_max=1800,
)
def send_email(self, to: str, subject: str, text: str, html: str) -> None:
    """Send one rendered message (text with an HTML alternative) to one address."""
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(html, "text/html")
    message.send()


@shared_task(name="governance.provision_request", bind=True, max_retries=6)
def provision_request(self, request_id: int, actor_id: int) -> str:
    """Ask the request's identity source to allow the app, then record the outcome."""
    from connectors.idp.base import IdpError, ProvisionRequest
    from connectors.services import source_adapter

    from .models import ConnectorRequest, User
    from .services import request_provision_complete, request_provision_failed, request_source

    req = ConnectorRequest.objects.select_related("connector", "source").get(pk=request_id)
    if req.status != ConnectorRequest.Status.APPROVED or not req.provision_data.get("queued_at"):
        return "skipped"  # already done (a duplicate delivery) or no longer wanted
    actor = User.objects.get(pk=actor_id)
    source = request_source(req)
    data = req.provision_data
    client_id = data.get("client_id") or (
        req.connector.apps.filter(source=source).values_list("client_id", flat=True).first() or ""
    )
    person = req.on_behalf_of or req.requester
    user_external_id = data.get("user_external_id") or (
        person.identities.filter(source=source).values_list("external_id", flat=True).first()
    )
    adapter = source_adapter(source)
    try:
        result = adapter.provision(
            ProvisionRequest(
                client_id=client_id,
                scopes=list(req.scopes),
                user_external_id=user_external_id,
                extra=dict(data.get("extra") or {}),
            )
        )
    except IdpError as exc:
        if exc.transient and self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(600, 15 * 2**self.request.retries)) from exc
        request_provision_failed(request=req, error=str(exc))
        return "failed"
    finally:
        adapter.close()
    if not result.done:
        request_provision_failed(request=req, error=result.detail or "The provider needs a manual step.")
        return "manual"
    request_provision_complete(request=req, actor=actor, source=source, result=result)
    return "provisioned"


# --- attestations, offboarding and ownership transfers ------------------------------------------


@shared_task(
    name="governance.attestation_mail",
    bind=True,
    max_retries=5,
    autoretry_for=TRANSIENT_MAIL_ERRORS,
    retry_backoff=30,
    retry_backoff_max=1800,
)
def attestation_mail(self, review_id: int, kind: str) -> bool:
    """Send one manager's launch, reminder or escalation email, once."""
    from .attestations import review_mail_send

    return review_mail_send(review_id=review_id, kind=kind)


@shared_task(name="governance.attestation_tick", max_retries=0)
def attestation_tick() -> dict[str, int]:
    """Drive running campaigns: reminders, escalation, the deadline policy and closing."""
    from .attestations import attestation_tick as tick

    return tick()


@shared_task(name="governance.attestation_schedule", max_retries=0)
def attestation_schedule() -> int | None:
    """Launch this period's scheduled campaign when LANYARD_ATTESTATION_SCHEDULE asks for one."""
    from .attestations import campaign_schedule_run

    campaign = campaign_schedule_run()
    return campaign.pk if campaign else None


@shared_task(
    name="governance.offboard_identity",
    max_retries=5,
    autoretry_for=(OperationalError,),  # a locked or lost database: the service is idempotent
    retry_backoff=30,
    retry_backoff_max=1800,
)
def offboard_identity(identity_id: int) -> dict[str, int]:  # kept for messages queued before reconcile
    """Offboard one deprovisioned identity: revoke its grants, hand its connectors to its manager."""
    from connectors.models import Identity

    from .offboarding import identity_offboard

    identity = Identity.objects.filter(pk=identity_id).first()
    if identity is None:
        return {}
    return identity_offboard(identity=identity, actor="system")


@shared_task(
    name="governance.offboarding_reconcile",
    max_retries=5,
    autoretry_for=(OperationalError,),  # a locked or lost database: the service is idempotent
    retry_backoff=30,
    retry_backoff_max=1800,
)
def offboarding_reconcile(
    source_id: int | None = None, identity_ids: list[int] | None = None
) -> dict[str, int]:
    """Bring grants and ownership in line with identity status: hold, release, revoke, offer."""
    from .offboarding import offboarding_reconcile as reconcile

    return reconcile(source_id=source_id, identity_ids=identity_ids, actor="system")


@shared_task(name="governance.sweep_provisioning", max_retries=0, ignore_result=True)
def sweep_provisioning() -> int:
    """Queue again the provisioning steps whose job could not be queued (broker down)."""
    from connectors.queueing import enqueue

    from .services import requests_claim_unqueued_provisioning

    claimed = requests_claim_unqueued_provisioning()
    for req_id, actor_id in claimed:
        enqueue(provision_request, req_id, actor_id, what=f"provisioning of request {req_id}")
    return len(claimed)
