"""Who may see and do what in the portal.

IAM staff act through model permissions held by the "IAM staff" group; business owners through
object permissions (django-guardian, ``ConnectorUserObjectPermission``) on the connectors they own;
employees through the identities linked to their user. These checks are for one object at a time
(a detail page, a POST); lists are scoped in ``governance.selectors`` with joins instead.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from connectors.models import Connector, Grant

from .models import ConnectorRequest, ConnectorUserObjectPermission


def is_iam(user: AbstractBaseUser) -> bool:
    """Return whether the user decides the IAM step (model permission, from the IAM staff group)."""
    return user.is_active and user.has_perm("connectors.decide_connector")


def can_provision(user: AbstractBaseUser) -> bool:
    return user.is_active and user.has_perm("connectors.provision_connector")


def can_manage_register(user: AbstractBaseUser) -> bool:
    """Return whether the user suspends, resumes and revokes any connector (IAM)."""
    return user.is_active and user.has_perm("connectors.revoke_connector")


def owns_connectors(user: AbstractBaseUser) -> bool:
    """Return whether the user holds an object permission on any connector."""
    return ConnectorUserObjectPermission.objects.filter(user=user).exists()


def holds_object_permission(user: AbstractBaseUser, codename: str, connector: Connector) -> bool:
    """Return whether the user holds ``codename`` on this connector itself (superuser status aside)."""
    return (
        user.is_active
        and ConnectorUserObjectPermission.objects.filter(
            user=user,
            content_object=connector,
            permission__codename=codename,
            permission__content_type__app_label="connectors",
        ).exists()
    )


def has_identity(user: AbstractBaseUser) -> bool:
    return user.identities.exists()


def can_view_connector(user: AbstractBaseUser, connector: Connector) -> bool:
    return user.has_perm("connectors.view_connector") or user.has_perm("connectors.view_connector", connector)


def can_revoke_connector(user: AbstractBaseUser, connector: Connector) -> bool:
    return can_manage_register(user) or user.has_perm("connectors.revoke_connector", connector)


def can_revoke_grant(user: AbstractBaseUser, grant: Grant) -> bool:
    """Return whether the user may revoke a grant: their own, one on a connector they own, or IAM."""
    if grant.identity_id is not None and grant.identity.user_id == user.pk:
        return True
    return can_revoke_connector(user, grant.connector)


def can_view_request(user: AbstractBaseUser, req: ConnectorRequest) -> bool:
    if user.pk in (req.requester_id, req.on_behalf_of_id) or is_iam(user):
        return True
    return user.has_perm("connectors.view_connector", req.connector)


def require(allowed: bool, message: str = "You do not have access to this page.") -> None:
    """Raise PermissionDenied (403) unless ``allowed``."""
    if not allowed:
        raise PermissionDenied(message)
