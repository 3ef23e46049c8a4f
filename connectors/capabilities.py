"""What each kind of source can be asked, what it needs, and what to tell IAM when it refuses.

A sync reads five capabilities. Users, apps and grants are **required**: without a complete listing
of them nothing can be marked vanished, so their failure fails the run. Devices and activity
(sign-ins, token events, audit logs) are **optional**: real tenants often lack the permission or the
edition, so a refusal there becomes a capability warning on the run and on the source, and the run
goes on. Each source keeps one ``SourceCapability`` row per capability, written by the sync and by
the admin's Test connection (``capabilities_probe``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import services as audit

from .idp.base import Adapter, IdpError
from .models import IdentitySource, SourceCapability

State = SourceCapability.State
Kind = IdentitySource.Kind
REQUIRED = ("users", "apps", "grants")
OPTIONAL = ("devices", "activity")


@dataclass(frozen=True, slots=True)
class Spec:
    """One capability of one kind of source: the endpoint, what it needs, and the hints."""

    endpoint: str
    needs: str  # the minimum permission, scope or role
    hint_permission: str  # how to grant it
    hint_edition: str = ""  # which edition or licence has it, if it depends on one


SPECS: dict[str, dict[str, Spec]] = {
    Kind.GOOGLE_WORKSPACE: {
        "users": Spec(
            "GET admin/directory/v1/users",
            "admin.directory.user.readonly",
            "In the Admin console (Security › API controls › Domain-wide delegation) add the scope "
            "https://www.googleapis.com/auth/admin.directory.user.readonly to the "
            "service account's client id.",
        ),
        "apps": Spec(
            "GET admin/directory/v1/users/{userKey}/tokens",
            "admin.directory.user.security",
            "Add the scope https://www.googleapis.com/auth/admin.directory.user.security to the service "
            "account's domain-wide delegation.",
        ),
        "grants": Spec(
            "GET admin/directory/v1/users/{userKey}/tokens",
            "admin.directory.user.security",
            "Add the scope https://www.googleapis.com/auth/admin.directory.user.security to the service "
            "account's domain-wide delegation; the delegated admin must hold the User Management privilege.",
        ),
        "devices": Spec(
            "GET admin/directory/v1/customer/{customer}/devices/mobile",
            "admin.directory.device.mobile.readonly",
            "Add the scope https://www.googleapis.com/auth/admin.directory.device.mobile.readonly to the "
            "service account's domain-wide delegation; the delegated admin needs the Manage Devices "
            "privilege.",
            "Mobile device management needs Google Workspace Business Starter or above with advanced "
            "mobile management for full device details.",
        ),
        "activity": Spec(
            "GET admin/reports/v1/activity/users/all/applications/token",
            "admin.reports.audit.readonly",
            "Add the scope https://www.googleapis.com/auth/admin.reports.audit.readonly to the service "
            "account's domain-wide delegation; the delegated admin needs the Reports privilege.",
        ),
    },
    Kind.MICROSOFT_ENTRA: {
        "users": Spec(
            "GET v1.0/users",
            "User.Read.All",
            "Grant the Graph application permission User.Read.All and admin-consent it.",
        ),
        "apps": Spec(
            "GET v1.0/servicePrincipals",
            "Application.Read.All",
            "Grant the Graph application permission Application.Read.All and admin-consent it.",
        ),
        "grants": Spec(
            "GET v1.0/oauth2PermissionGrants",
            "DelegatedPermissionGrant.ReadWrite.All",
            "Grant the Graph application permissions DelegatedPermissionGrant.ReadWrite.All and "
            "AppRoleAssignment.ReadWrite.All (revocation needs write) and admin-consent them.",
        ),
        "devices": Spec(
            "GET v1.0/devices",
            "Device.Read.All",
            "Grant the Graph application permission Device.Read.All and admin-consent it.",
        ),
        "activity": Spec(
            "GET v1.0/auditLogs/signIns",
            "AuditLog.Read.All",
            "Grant the Graph application permission AuditLog.Read.All and admin-consent it.",
            "Sign-in logs need a Microsoft Entra ID P1 or P2 licence in the tenant.",
        ),
    },
    Kind.OKTA: {
        "users": Spec(
            "GET api/v1/users",
            "okta.users.read",
            "Give the API token's admin the Read-only Administrator role (or grant okta.users.read to the "
            "service app).",
        ),
        "apps": Spec(
            "GET api/v1/apps",
            "okta.apps.read",
            "Give the API token's admin the Read-only Administrator role (or grant okta.apps.read).",
        ),
        "grants": Spec(
            "GET api/v1/users/{id}/grants, /clients",
            "okta.users.manage",
            "Revoking consents and tokens needs an admin with user management (okta.users.manage).",
        ),
        "devices": Spec(
            "GET api/v1/devices",
            "okta.devices.read",
            "Give the API token's admin a role with okta.devices.read (Read-only Administrator has it).",
            "The Devices API exists only in Okta Identity Engine orgs; an Okta Classic Engine org has no "
            "/api/v1/devices. Upgrade the org to Identity Engine to list devices.",
        ),
        "activity": Spec(
            "GET api/v1/logs",
            "okta.logs.read",
            "Give the API token's admin the Read-only Administrator or Report Administrator role "
            "(okta.logs.read).",
        ),
    },
    Kind.GITHUB: {
        "users": Spec(
            "GET orgs/{org}/members",
            "Members: read",
            "Give the GitHub App the organization permission Members (read) and accept it in the org's "
            "installation settings.",
        ),
        "apps": Spec(
            "GET orgs/{org}/installations",
            "Administration: read",
            "Give the GitHub App the organization permission Administration (read).",
        ),
        "grants": Spec(
            "GET orgs/{org}/personal-access-tokens",
            "Personal access tokens: read and write",
            "Give the GitHub App the organization permissions Personal access tokens (read and write) and "
            "Personal access token requests (read and write); classic PATs under SAML SSO also need "
            "Administration (read).",
        ),
        "activity": Spec(
            "GET orgs/{org}/audit-log",
            "Administration: read (audit log)",
            "Give the GitHub App the organization permission Administration (read).",
            "The organization audit-log API exists only on GitHub Enterprise Cloud; on GitHub Free and "
            "Team it answers 404. Without it Lanyard gets no GitHub token activity.",
        ),
    },
}

# Provider error codes that say "your edition or licence does not have this", whatever the status.
EDITION_CODES = ("Authentication_RequestFromNonPremiumTenantOrB2CTenant", "not licensed", "E0000015")


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    required: bool
    state: str
    endpoint: str = ""
    detail: str = ""
    hint: str = ""

    def as_warning(self) -> dict[str, str]:
        out = asdict(self)
        out["capability"] = out.pop("name")
        out.pop("required")
        return out


def specs(kind: str) -> dict[str, Spec]:
    """Return the capabilities a kind of source has, required first."""
    return SPECS.get(kind, {})


def is_required(name: str) -> bool:
    return name in REQUIRED


def available(kind: str, name: str) -> Result:
    spec = specs(kind).get(name)
    return Result(name, is_required(name), State.AVAILABLE, spec.endpoint if spec else "")


def classify(kind: str, name: str, exc: IdpError) -> Result:
    """Turn an adapter's failure of one capability into its state, the provider's words and the hint."""
    spec = specs(kind).get(name) or Spec("", "", "")
    detail = str(exc)[:500]
    text = f"{exc.message}"
    edition = any(code.lower() in text.lower() for code in EDITION_CODES)
    if exc.status == 404 or edition:
        # An endpoint the tenant does not have: its edition (where that is the documented cause).
        if spec.hint_edition:
            return Result(
                name, is_required(name), State.NOT_IN_EDITION, spec.endpoint, detail, spec.hint_edition
            )
        return Result(name, is_required(name), State.ERROR, spec.endpoint, detail, spec.hint_permission)
    if exc.status in (401, 403):
        hint = spec.hint_permission if exc.status == 403 else "Check the source's credentials."
        return Result(name, is_required(name), State.MISSING_PERMISSION, spec.endpoint, detail, hint)
    hint = (
        "The identity provider failed; the next sync tries again." if exc.transient else spec.hint_permission
    )
    return Result(name, is_required(name), State.ERROR, spec.endpoint, detail, hint)


def capabilities_record(
    *, source: IdentitySource, results: list[Result], now: datetime | None = None
) -> None:
    """Write one SourceCapability row per result (one statement), replacing what was known."""
    if not results:
        return
    now = now or timezone.now()
    SourceCapability.objects.bulk_create(
        [
            SourceCapability(
                source=source,
                name=r.name,
                required=r.required,
                state=r.state,
                endpoint=r.endpoint[:200],
                detail=r.detail[:500],
                hint=r.hint[:500],
                last_checked=now,
            )
            for r in results
        ],
        update_conflicts=True,
        unique_fields=["source", "name"],
        update_fields=["required", "state", "endpoint", "detail", "hint", "last_checked"],
    )


def _first_page(pages: Iterator[Any]) -> None:
    try:
        next(iter(pages))
    except StopIteration:
        pass
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def _probes(adapter: Adapter, now: datetime) -> dict[str, Callable[[], Iterator[Any]]]:
    return {
        "users": adapter.iter_users,
        "apps": adapter.iter_apps,
        "grants": adapter.iter_grants,
        "devices": adapter.iter_devices,
        "activity": lambda: adapter.iter_activity(since=now - timedelta(days=1)),
    }


def capabilities_probe(*, source: IdentitySource, actor: Any, adapter: Adapter | None = None) -> list[Result]:
    """Ask the IdP for the first page of each capability; record the states and one audit event.

    Nothing read is written to the register: only the capability rows and the event change.
    """
    from .services import source_adapter

    now = timezone.now()
    results: list[Result] = []
    try:
        adapter = adapter or source_adapter(source)
    except IdpError as exc:
        results = [classify(source.kind, name, exc) for name in specs(source.kind)]
    else:
        try:
            probes = _probes(adapter, now)
            for name in specs(source.kind):
                try:
                    _first_page(probes[name]())
                except IdpError as exc:
                    results.append(classify(source.kind, name, exc))
                else:
                    results.append(available(source.kind, name))
        finally:
            adapter.close()
    with transaction.atomic():
        capabilities_record(source=source, results=results, now=now)
        audit.record(
            "source.capabilities_checked",
            actor=actor,
            source=source,
            target=source,
            data={"capabilities": {r.name: r.state for r in results}},
        )
    return results


__all__ = [
    "OPTIONAL",
    "REQUIRED",
    "Result",
    "Spec",
    "available",
    "capabilities_probe",
    "capabilities_record",
    "classify",
    "specs",
]
