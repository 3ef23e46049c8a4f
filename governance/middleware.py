"""Staff must enrol MFA before they can use the admin (``LANYARD_REQUIRE_STAFF_MFA``)."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.adapter import get_adapter
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse


class RequireStaffMFAMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            settings.LANYARD_REQUIRE_STAFF_MFA
            and request.path.startswith("/admin/")
            and request.user.is_authenticated
            and request.user.is_staff
            and not get_adapter().is_mfa_enabled(request.user)
        ):
            messages.warning(request, "Set up two-factor authentication before using the admin.")
            return redirect(f"{reverse('mfa_activate_totp')}?next={request.get_full_path()}")
        return self.get_response(request)
