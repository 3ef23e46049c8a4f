"""Template tags for the portal navigation."""

from __future__ import annotations

from django import template

from governance import permissions

register = template.Library()


@register.simple_tag(takes_context=True)
def portal_nav(context) -> dict[str, bool]:
    """Return which portal links the signed-in user may see (cached on the request)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    if not hasattr(request, "_portal_nav"):
        iam = permissions.is_iam(user)
        owns = permissions.owns_connectors(user)
        request._portal_nav = {
            "register": user.has_perm("connectors.view_connector"),
            "my_connectors": owns or iam,
            "inbox": owns or iam or permissions.can_provision(user),
            "my_grants": permissions.has_identity(user),
            "request": iam or permissions.has_identity(user),
            "shadow": iam,
            "security": iam and user.is_staff,
        }
    return request._portal_nav
