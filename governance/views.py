from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from connectors.selectors import register_summary


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Show the three questions to people allowed to see the whole register."""
    if not request.user.has_perm("connectors.view_connector"):
        raise PermissionDenied("You have no access to the connector register.")
    return render(request, "home.html", {"summary": register_summary()})
