from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from connectors.selectors import register_summary

from . import permissions


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Show the register to those who may see it; send owners and employees to their own pages."""
    user = request.user
    if not user.has_perm("connectors.view_connector"):
        if permissions.owns_connectors(user):
            return redirect("portal:my_connectors")
        if permissions.has_identity(user):
            return redirect("portal:my_grants")
        raise PermissionDenied("You have no access to the connector register.")
    return render(request, "home.html", {"summary": register_summary()})
