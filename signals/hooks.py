"""What Lanyard transmits, hooked to the register's signals (``connectors.signals``), in the same transaction.

- a grant being revoked at its IdP (``grants_revoking``) or revoked in Lanyard (``grants_ended``):
  CAEP ``session-revoked`` about the person and the connector (complex subject ``user`` +
  ``application``); a gateway token (a Lanyard-issued OAuth token) ended: CAEP ``credential-change``
  (``change_type`` ``revoke``, or ``delete`` when it expired), so gateways drop it at once;
- an identity suspended or deprovisioned (``identities_status_recorded``; offboarding follows):
  ``session-revoked`` about the person (email subject);
- a connector suspended, revoked or resumed (``connector_status_changed``): CAEP
  ``token-claims-change`` about the application, with its new ``connector_status`` claim.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from connectors.models import Connector, Grant, Identity

from . import events as ev
from .outbox import Event, emit, live_streams

GATEWAY_PREFIX = "gateway:"  # gateway.services.GRANT_PREFIX (signals sits above gateway; kept literal)


def application(connector_id: int, name: str = "") -> dict[str, Any]:
    return {"format": "opaque", "id": f"connector:{connector_id}"}


def user(email: str, pk: int) -> dict[str, Any]:
    return {"format": "email", "email": email} if email else {"format": "opaque", "id": f"identity:{pk}"}


def _payload(reason: str, *, initiating: str = "admin", **extra: Any) -> dict[str, Any]:
    return {
        "event_timestamp": int(timezone.now().timestamp()),
        "initiating_entity": initiating,
        **({"reason_admin": {"en": reason[:300]}} if reason else {}),
        **extra,
    }


def grant_events(grant_ids: list[int]) -> list[Event]:
    """The SETs for grants just revoked (or, for gateway tokens, ended)."""
    grants = (
        Grant.objects.filter(pk__in=grant_ids)
        .select_related("identity", "connector")
        .only(
            "pk",
            "status",
            "external_id",
            "revoke_reason",
            "connector_id",
            "connector__name",
            "identity_id",
            "identity__email",
            "revoked_by_id",
        )
    )
    out = []
    for g in grants:
        subject: dict[str, Any] = {"format": "complex", "application": application(g.connector_id)}
        if g.identity_id is not None:
            subject["user"] = user(g.identity.email, g.identity_id)
        initiating = "admin" if g.revoked_by_id else "policy"
        if g.external_id.startswith(GATEWAY_PREFIX):
            change = "delete" if g.status == Grant.Status.EXPIRED else "revoke"
            payload = _payload(
                g.revoke_reason or ("expired" if change == "delete" else ""),
                initiating=initiating if change == "revoke" else "system",
                credential_type="oauth-access-token",  # CAEP: a type both sides agree on
                change_type=change,
            )
            out.append(Event(ev.CREDENTIAL_CHANGE, subject, payload, g.connector_id, g.pk))
        elif g.status in (Grant.Status.REVOKING, Grant.Status.REVOKED):
            out.append(
                Event(
                    ev.SESSION_REVOKED,
                    subject,
                    _payload(g.revoke_reason, initiating=initiating),
                    g.connector_id,
                    g.pk,
                )
            )
    return out


def on_grants(sender: Any, *, grant_ids: list[int], **kwargs: Any) -> None:
    streams = live_streams()
    if streams:
        emit(grant_events(grant_ids), streams=streams)


def on_identities(sender: Any, *, identity_ids: list[int], status: str, **kwargs: Any) -> None:
    if status not in (Identity.Status.SUSPENDED, Identity.Status.DEPROVISIONED):
        return
    streams = live_streams()
    if not streams:
        return
    rows = Identity.objects.filter(pk__in=identity_ids).values_list("pk", "email")
    reason = f"identity {status} (offboarding)"
    emit(
        (
            Event(ev.SESSION_REVOKED, user(email, pk), _payload(reason, initiating="policy"))
            for pk, email in rows
        ),
        streams=streams,
    )


def on_connector(
    sender: Any, *, connector: Connector, status: str, previous: str, reason: str = "", **kw: Any
) -> None:
    if status not in (Connector.Status.SUSPENDED, Connector.Status.REVOKED, Connector.Status.ACTIVE):
        return
    if status == Connector.Status.ACTIVE and previous != Connector.Status.SUSPENDED:
        return  # only "resumed" is a claims change a receiver acted on before
    streams = live_streams()
    if not streams:
        return
    subject = {"format": "complex", "application": application(connector.pk)}
    payload = _payload(reason, claims={"connector_status": status, "connector_name": connector.name})
    emit([Event(ev.TOKEN_CLAIMS_CHANGE, subject, payload, connector.pk)], streams=streams)


def connect() -> None:
    from connectors import signals

    signals.grants_revoking.connect(on_grants, dispatch_uid="signals.tx.grants_revoking")
    signals.grants_ended.connect(on_grants, dispatch_uid="signals.tx.grants_ended")
    signals.identities_status_recorded.connect(on_identities, dispatch_uid="signals.tx.identities")
    signals.connector_status_changed.connect(on_connector, dispatch_uid="signals.tx.connector")
