"""Sign-in security events in the audit trail: who, from where, which account; never a password.

allauth's signals (and the account adapter, for failures and lockouts, which have no signal) land
here. The client address is allauth's, so behind a load balancer it honours
``ALLAUTH_TRUSTED_PROXY_COUNT`` / ``ALLAUTH_TRUSTED_CLIENT_IP_HEADER`` exactly as the rate limits do.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import record
from httpapi.client import client_ip

ACTIONS = {
    "auth.login": "Signed in",
    "auth.admin_login": "Staff signed in (admin access)",
    "auth.login_failed": "Wrong password or unknown account",
    "auth.locked_out": "Refused: too many failed sign-ins",
    "auth.mfa_failed": "Wrong second-factor code",
    "auth.mfa_added": "Second factor enrolled",
    "auth.mfa_removed": "Second factor removed",
    "auth.mfa_reset": "Recovery codes regenerated",
    "auth.password_changed": "Password changed",
    "auth.password_set": "Password set",
    "auth.password_reset": "Password reset",
    "auth.password_set_by_admin": "Password set by staff in the admin",
    # Single sign-on (lanyard.adapters): the company IdP's sign-ins and the roles its groups give.
    "auth.sso_account_created": "Account created at first sign-in through the identity provider",
    "auth.sso_linked": "Linked to their identities in the register at sign-in",
    "auth.sso_refused": "Refused: the identity provider's person is not in the register",
    "auth.role_granted": "IAM staff role given by the identity provider's groups",
    "auth.role_removed": "IAM staff role removed: no longer in the identity provider's group",
    "auth.password_login_refused": "Refused: password sign-in is switched off",
}
FAILED = AuditEvent.Outcome.FAILURE
DENIED = AuditEvent.Outcome.DENIED


def _account(credentials: dict[str, Any]) -> str:
    """Return the account a sign-in named (the login, lower-cased), never another credential."""
    value = credentials.get("email") or credentials.get("login") or credentials.get("username") or ""
    return str(value).strip().lower()[:254]


def signin_record(
    action: str,
    *,
    request: HttpRequest | None,
    user=None,
    account: str = "",
    outcome: str = AuditEvent.Outcome.SUCCESS,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one sign-in security event with the client's address and user agent."""
    account = account or (getattr(user, "email", "") or "").lower()
    payload = {"account": account, **(data or {})}
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:500] if request is not None else ""
    with transaction.atomic():
        return record(
            action,
            actor=user,
            actor_label=None if user is not None else (account or "anonymous"),
            outcome=outcome,
            target=user,
            data=payload,
            ip=client_ip(request),
            user_agent=user_agent,
        )


def login_failed(request: HttpRequest | None, credentials: dict[str, Any]) -> None:
    """Record a wrong password or an unknown account (the credentials' password is never read)."""
    signin_record("auth.login_failed", request=request, account=_account(credentials), outcome=FAILED)


LOCKOUT_RECORD_SECONDS = 60


def locked_out(request: HttpRequest | None, credentials: dict[str, Any]) -> None:
    """Record a sign-in refused by the failed-login rate limit, once a minute per address and account."""
    # Failures are bounded by the limit itself; refusals are not, so an attacker hammering after the
    # lockout would otherwise write one chained event per request.
    account = _account(credentials)
    digest = hashlib.sha256(f"{client_ip(request)}|{account}".encode()).hexdigest()
    if not cache.add(f"lanyard:lockout-recorded:{digest}", 1, timeout=LOCKOUT_RECORD_SECONDS):
        return
    signin_record("auth.locked_out", request=request, account=account, outcome=DENIED)


# ------------------------------------------------------------------------------- signal receivers


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    action = "auth.admin_login" if user.is_staff else "auth.login"
    signin_record(action, request=request, user=user, data={"staff": bool(user.is_staff)})


def on_mfa_failed(sender, request, user, **kwargs) -> None:
    signin_record("auth.mfa_failed", request=request, user=user, outcome=FAILED)


def _mfa(action: str):
    def receiver(sender, request, user, authenticator=None, **kwargs) -> None:
        kind = getattr(authenticator, "type", "") or ""
        signin_record(action, request=request, user=user, data={"type": str(kind)})

    return receiver


def _password(action: str):
    def receiver(sender, request, user, **kwargs) -> None:
        signin_record(action, request=request, user=user)

    return receiver


def check_proxy_settings(app_configs=None, **kwargs) -> list:
    """A negative proxy count would make allauth read the wrong X-Forwarded-For entry (lanyard.E120)."""
    from django.conf import settings
    from django.core import checks

    count = settings.ALLAUTH_TRUSTED_PROXY_COUNT
    if not isinstance(count, int) or count < 0:
        return [
            checks.Error(
                "LANYARD_TRUSTED_PROXY_COUNT must be 0 (direct) or the number of proxies you run.",
                id="lanyard.E120",
            )
        ]
    return []


def connect() -> None:
    """Connect the receivers to allauth's signals (from GovernanceConfig.ready)."""
    from allauth.account import signals as account
    from allauth.mfa import signals as mfa

    account.user_logged_in.connect(on_user_logged_in, dispatch_uid="governance.signin.login")
    mfa.authentication_failed.connect(on_mfa_failed, dispatch_uid="governance.signin.mfa_failed")
    for signal, action in (
        (mfa.authenticator_added, "auth.mfa_added"),
        (mfa.authenticator_removed, "auth.mfa_removed"),
        (mfa.authenticator_reset, "auth.mfa_reset"),
    ):
        signal.connect(_mfa(action), dispatch_uid=f"governance.signin.{action}", weak=False)
    for signal, action in (
        (account.password_changed, "auth.password_changed"),
        (account.password_set, "auth.password_set"),
        (account.password_reset, "auth.password_reset"),
    ):
        signal.connect(_password(action), dispatch_uid=f"governance.signin.{action}", weak=False)
