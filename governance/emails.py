"""Email from three templates per message (subject, text, HTML), sent by a Celery task.

``send_templated("emails/request_created", to, context)`` renders ``emails/request_created-subject.txt``,
``emails/request_created-body.txt`` and ``emails/request_created-body.html``. Every template gets
``base_url`` (``LANYARD_BASE_URL``) so links are absolute.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

IAM_STAFF_GROUP = "IAM staff"


def absolute_url(path: str) -> str:
    """Return ``path`` (e.g. from ``reverse``) as an absolute link under ``LANYARD_BASE_URL``."""
    return f"{settings.LANYARD_BASE_URL}{path}"


def render_templated(template_prefix: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Return (subject, text body, HTML body) rendered from the three templates."""
    context = {"base_url": settings.LANYARD_BASE_URL, **context}
    subject = " ".join(render_to_string(f"{template_prefix}-subject.txt", context).split())
    text = render_to_string(f"{template_prefix}-body.txt", context)
    html = render_to_string(f"{template_prefix}-body.html", context)
    return subject, text, html


def send_templated(template_prefix: str, to: str | Iterable[str], context: dict[str, Any]) -> int:
    """Render the message now and queue one email per recipient; return how many were queued."""
    from connectors.queueing import enqueue

    from .tasks import send_email

    recipients = [to] if isinstance(to, str) else sorted({a for a in to if a})
    if not recipients:
        return 0
    subject, text, html = render_templated(template_prefix, context)
    sent = 0
    for address in recipients:
        # A broker outage loses this email (logged), but never the committed step that sent it.
        sent += enqueue(send_email, address, subject, text, html, what=f"email '{template_prefix}'")
    return sent


def iam_staff_emails() -> list[str]:
    """Return the addresses of active IAM staff."""
    from .models import User

    return list(
        User.objects.filter(groups__name=IAM_STAFF_GROUP, is_active=True)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
        .distinct()
    )


def _request_context(req) -> dict[str, Any]:
    return {
        "req": req,
        "connector": req.connector,
        "inbox_url": absolute_url(reverse("portal:inbox")),
        "request_url": absolute_url(reverse("portal:request_detail", args=[req.pk])),
        "connector_url": absolute_url(reverse("portal:connector_detail", args=[req.connector_id])),
    }


def _load(request_id: int):
    from .models import ConnectorRequest

    return ConnectorRequest.objects.select_related(
        "connector__business_owner", "requester", "on_behalf_of"
    ).get(pk=request_id)


def request_created(request_id: int) -> None:
    """Tell the business owner (or IAM, when the connector has no owner yet) about a new request."""
    req = _load(request_id)
    owner = req.connector.business_owner
    context = _request_context(req)
    if owner is not None and owner.is_active:
        send_templated(
            "emails/request_created", owner.email, {**context, "recipient": owner, "as_owner": True}
        )
    else:
        send_templated("emails/request_created", iam_staff_emails(), {**context, "as_owner": False})


def request_awaits_iam(request_id: int) -> None:
    """Tell IAM staff that a request passed the owner step."""
    req = _load(request_id)
    send_templated("emails/request_awaits_iam", iam_staff_emails(), _request_context(req))


def request_decided(request_id: int, step: str) -> None:
    """Tell the requester about a decision on their request."""
    req = _load(request_id)
    decision = req.decisions.select_related("decided_by").get(step=step)
    to = [req.requester.email] + ([req.on_behalf_of.email] if req.on_behalf_of else [])
    send_templated("emails/request_decided", to, {**_request_context(req), "decision": decision})


def request_provisioned(request_id: int) -> None:
    """Tell the requester that the connector is now available to them."""
    req = _load(request_id)
    to = [req.requester.email] + ([req.on_behalf_of.email] if req.on_behalf_of else [])
    send_templated(
        "emails/request_provisioned",
        to,
        {**_request_context(req), "grants_url": absolute_url(reverse("portal:my_grants"))},
    )
