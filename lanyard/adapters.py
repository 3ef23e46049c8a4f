"""allauth adapters: who may sign in, how (password or the company IdP), and what the IdP decides.

Single sign-on (issue 19) goes through allauth's generic ``openid_connect`` provider; this module only
decides. A first sign-in creates the Lanyard user just in time, linked to the person's **Identity** in
the register (by the IdP's subject where an identity source is that IdP, else by a verified email);
a person the register does not know is refused with a page that says so, and gets no account. Where a
provider maps groups to roles, the IdP is authoritative for them at every sign-in, and every change
is audited.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.stages import AuthenticateStage
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit.models import AuditEvent
from connectors.models import Identity
from governance import signin
from governance.iam_group import IAM_STAFF
from governance.iam_group import PERMISSIONS as IAM_PERMISSIONS

SSO_SESSION_KEY = "lanyard_sso"
# Read-only role an IdP group can give (LANYARD_OIDC_<ID>_AUDITOR_GROUPS): the audit trail, the
# register and the admin in view-only mode, nothing that changes state.
AUDITORS = "Auditors"
DENIED = AuditEvent.Outcome.DENIED


class AccountAdapter(DefaultAccountAdapter):
    """Accounts are created by IAM (or by the demo seed), not by open sign-up, unless configured.

    Failed sign-ins and lockouts have no allauth signal, so the adapter's hooks record them.
    """

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.LANYARD_OPEN_SIGNUP

    def get_client_ip(self, request: HttpRequest) -> str:
        """Return the client's address, honouring the trusted proxies; never a 500 on a short chain."""
        try:
            return super().get_client_ip(request)
        except ImproperlyConfigured:
            # X-Forwarded-For names fewer hops than ALLAUTH_TRUSTED_PROXY_COUNT: the request did not
            # come through every trusted proxy, so none of its entries can be believed.
            return request.META["REMOTE_ADDR"]

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            signin.locked_out(request, credentials)
            raise

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        signin.login_failed(request, credentials)
        super().authentication_failed(request, **credentials)

    def get_login_stages(self) -> list[str]:
        """allauth's stages, with its second-factor stage skipped where the IdP asserted MFA."""
        theirs = "allauth.mfa.stages.AuthenticateStage"
        ours = "lanyard.adapters.AuthenticateUnlessIdpMfaStage"
        return [ours if stage == theirs else stage for stage in super().get_login_stages()]

    def pre_login(self, request: HttpRequest, user, **kwargs: Any) -> HttpResponse | None:
        """With LANYARD_PASSWORD_LOGIN=false only the IdP signs people in, except break-glass superusers."""
        through_idp = bool((kwargs.get("signal_kwargs") or {}).get("sociallogin"))
        if not settings.LANYARD_PASSWORD_LOGIN and not through_idp and not user.is_superuser:
            signin.signin_record("auth.password_login_refused", request=request, user=user, outcome=DENIED)
            return render(
                request,
                "account/password_login_off.html",
                {"providers": sso_buttons()},
                status=403,
            )
        return super().pre_login(request, user, **kwargs)

    def login(self, request: HttpRequest, user) -> None:
        super().login(request, user)
        # After Django's login (which cycles the session): remember how this session signed in.
        sso = getattr(request, "_lanyard_sso", None)
        if sso is not None and sso.get("user_id") == user.pk:
            request.session[SSO_SESSION_KEY] = {"provider": sso["provider"], "mfa": sso["mfa"]}
        else:
            request.session.pop(SSO_SESSION_KEY, None)


class AuthenticateUnlessIdpMfaStage(AuthenticateStage):
    """Ask for Lanyard's own second factor unless the IdP's id token says one was used (``amr``)."""

    def _should_handle(self, request: HttpRequest) -> bool:
        sso = getattr(request, "_lanyard_sso", None)
        if sso and sso["mfa"] and self.login.user is not None and sso.get("user_id") == self.login.user.pk:
            return False
        return super()._should_handle(request)


def session_mfa_by_idp(request: HttpRequest) -> bool:
    """Return whether this session's sign-in came through an IdP that asserted a second factor."""
    return bool((request.session.get(SSO_SESSION_KEY) or {}).get("mfa"))


def sso_buttons() -> list[dict[str, str]]:
    """Return each configured sign-in provider's id and button label."""
    apps = settings.SOCIALACCOUNT_PROVIDERS.get("openid_connect", {}).get("APPS", [])
    return [{"id": a["provider_id"], "name": a["name"]} for a in apps]


# ------------------------------------------------------------------------------ single sign-on


class SsoRefused(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _claims(sociallogin: SocialLogin) -> dict[str, Any]:
    """Return the person's claims: the id token's, completed by userinfo (which allauth prefers)."""
    extra = sociallogin.account.extra_data or {}
    return {**(extra.get("id_token") or {}), **(extra.get("userinfo") or {})}


def _app_settings(sociallogin: SocialLogin, request: HttpRequest) -> tuple[str, dict[str, Any]]:
    provider = sociallogin.account.get_provider(request)
    return provider.app.provider_id, dict(provider.app.settings or {})


def match_identity(claims: dict[str, Any], app: dict[str, Any]) -> Identity:
    """Return the register's identity for these claims, or raise SsoRefused saying why not."""
    source = app.get("lanyard_source") or ""
    if source:
        subject = str(claims.get(app.get("lanyard_subject_claim") or "sub") or "")
        identity = (
            Identity.objects.filter(source__name=source, external_id=subject).select_related("user").first()
            if subject
            else None
        )
        if identity is None:
            raise SsoRefused(
                "no_identity",
                f"Your account at this identity provider is not in Lanyard's register ({source}) yet. "
                "It appears after the next sync; ask IAM if it does not.",
            )
        candidates = [identity]
    else:
        email = str(claims.get("email") or "").strip()
        if not email or claims.get("email_verified") is not True:
            raise SsoRefused(
                "email_unverified",
                "The identity provider did not vouch for your email address, so Lanyard cannot tell "
                "who you are. Ask IAM to link this provider to its identity source.",
            )
        candidates = list(
            Identity.objects.filter(email__iexact=email, unverified=False, is_service=False)
            .select_related("user")
            .order_by("pk")
        )
        if not candidates:
            raise SsoRefused(
                "no_identity",
                f"No one with the address {email} is in Lanyard's register. Lanyard is for people of "
                "the company's identity providers; ask IAM if you should be.",
            )
    active = [i for i in candidates if i.status == Identity.Status.ACTIVE]
    if not active:
        raise SsoRefused("identity_inactive", "Your identity is suspended or deprovisioned in the register.")
    return active[0]


def _groups(claims: dict[str, Any], app: dict[str, Any]) -> set[str]:
    value = claims.get(app.get("lanyard_groups_claim") or "groups") or []
    if isinstance(value, str):
        value = [value]
    return {str(g) for g in value} if isinstance(value, list) else set()


def auditor_group() -> Group:
    """Return the read-only "Auditors" group (created on first use): every view permission of IAM staff."""
    group, created = Group.objects.get_or_create(name=AUDITORS)
    if created:
        for app_label, models in IAM_PERMISSIONS.items():
            for model in (m for m, actions in models.items() if "view" in actions):
                group.permissions.add(
                    Permission.objects.get(
                        content_type__app_label=app_label, content_type__model=model, codename=f"view_{model}"
                    )
                )
    return group


def sync_roles(*, user, claims: dict[str, Any], app: dict[str, Any], provider_id: str, request) -> list[str]:
    """Grant or remove IAM staff and auditor as the IdP's groups say; audit each change; return them."""
    mapped = [
        (IAM_STAFF, set(app.get("lanyard_staff_groups") or [])),
        (AUDITORS, set(app.get("lanyard_auditor_groups") or [])),
    ]
    mapped = [(role, idp_groups) for role, idp_groups in mapped if idp_groups]
    if not mapped:
        return []  # this provider does not decide roles
    groups = _groups(claims, app)
    changes = []
    with transaction.atomic():
        for role, idp_groups in mapped:
            group = auditor_group() if role == AUDITORS else Group.objects.get(name=IAM_STAFF)
            member = user.groups.filter(pk=group.pk).exists()
            should = bool(groups & idp_groups)
            data = {"role": role, "provider": provider_id, "groups": sorted(groups & idp_groups)}
            if should and not member:
                user.groups.add(group)
                signin.signin_record("auth.role_granted", request=request, user=user, data=data)
                changes.append(f"{role} granted")
            elif not should and member:
                user.groups.remove(group)
                signin.signin_record("auth.role_removed", request=request, user=user, data=data)
                changes.append(f"{role} removed")
        # The admin's door follows the roles; a break-glass superuser keeps it whatever the IdP says.
        staff = user.is_superuser or user.groups.filter(name__in=[IAM_STAFF, AUDITORS]).exists()
        if staff != user.is_staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
            if not changes:  # the admin flag was set by hand, not by a role: its change is audited too
                action = "auth.role_granted" if staff else "auth.role_removed"
                data = {"role": "admin access", "provider": provider_id, "groups": sorted(groups)}
                signin.signin_record(action, request=request, user=user, data=data)
                changes.append(f"admin access {'granted' if staff else 'removed'}")
    return changes


def link_identities(*, user, identity: Identity, provider_id: str, request) -> int:
    """Link the identity, and the other identities of the same person, to the user; audit it."""
    with transaction.atomic():
        rows = Identity.objects.filter(user__isnull=True)
        if identity.person_id is not None:
            rows = rows.filter(person_id=identity.person_id)
        else:
            rows = rows.filter(pk=identity.pk)
        pks = list(rows.values_list("pk", flat=True))
        if pks:
            Identity.objects.filter(pk__in=pks).update(user=user)
            signin.signin_record(
                "auth.sso_linked",
                request=request,
                user=user,
                data={"provider": provider_id, "identities": pks, "matched": identity.pk},
            )
    return len(pks)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Just-in-time accounts for people in the register; refusal for everyone else."""

    def _refuse(self, request: HttpRequest, claims: dict, provider_id: str, exc: SsoRefused) -> None:
        signin.signin_record(
            "auth.sso_refused",
            request=request,
            account=str(claims.get("email") or claims.get("sub") or "")[:254],
            outcome=DENIED,
            data={"provider": provider_id, "reason": exc.reason},
        )
        response = render(request, "account/sso_refused.html", {"message": exc.message}, status=403)
        raise ImmediateHttpResponse(response)

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        provider_id, app = _app_settings(sociallogin, request)
        claims = _claims(sociallogin)
        try:
            identity = match_identity(claims, app)
            user = self._user_for(sociallogin, identity)
        except SsoRefused as exc:
            self._refuse(request, claims, provider_id, exc)
        amr = {str(v) for v in (sociallogin.account.extra_data or {}).get("id_token", {}).get("amr") or []}
        request._lanyard_sso = {  # type: ignore[attr-defined]
            "provider": provider_id,
            "mfa": bool(amr & set(settings.LANYARD_SSO_MFA_AMR)),
            "identity": identity,
            "claims": claims,
            "app": app,
            "user_id": user.pk if user is not None else None,
        }
        if user is None:
            # A new account, which save_user() creates and links, under the register's address: the
            # identity is who this is, whatever spelling (or other address) the IdP sends.
            idp_email = str(claims.get("email") or "").strip().lower()
            sociallogin.user.email = identity.email.lower()
            sociallogin.email_addresses = [
                EmailAddress(
                    email=identity.email.lower(),
                    verified=idp_email == identity.email.lower() and claims.get("email_verified") is True,
                    primary=True,
                )
            ]
            return
        if not sociallogin.is_existing:
            sociallogin.connect(request, user)
        self._after(request, user)

    def _user_for(self, sociallogin: SocialLogin, identity: Identity):
        """Return the Lanyard user this sign-in is, or None for a new one; refuse a conflict."""
        User = type(sociallogin.user)
        if sociallogin.is_existing:
            user = sociallogin.user
        elif identity.user is not None:
            user = identity.user
        else:
            user = User.objects.filter(email__iexact=identity.email).order_by("pk").first()
        if user is not None and identity.user_id not in (None, user.pk):
            raise SsoRefused(
                "identity_conflict",
                "Your identity in the register belongs to another Lanyard account. Ask IAM to sort it out.",
            )
        return user

    def _after(self, request: HttpRequest, user) -> None:
        sso = request._lanyard_sso  # type: ignore[attr-defined]
        sso["user_id"] = user.pk
        link_identities(user=user, identity=sso["identity"], provider_id=sso["provider"], request=request)
        sync_roles(
            user=user, claims=sso["claims"], app=sso["app"], provider_id=sso["provider"], request=request
        )

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        # pre_social_login refused everyone the register does not know; the rest get an account.
        return getattr(request, "_lanyard_sso", None) is not None

    def is_auto_signup_allowed(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form=None):
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            sso = request._lanyard_sso  # type: ignore[attr-defined]
            signin.signin_record(
                "auth.sso_account_created", request=request, user=user, data={"provider": sso["provider"]}
            )
            self._after(request, user)
        return user


def sign_in_context(request: HttpRequest) -> dict[str, Any]:
    """Template context for the sign-in pages: whether password sign-in is offered to everyone."""
    return {"password_login": settings.LANYARD_PASSWORD_LOGIN}
