"""The admin's door: non-staff are refused; staff must enrol MFA first (LANYARD_REQUIRE_STAFF_MFA).

A session signed in through an IdP whose id token asserted a second factor (``amr``) needs none here.
"""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.adapter import get_adapter
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from .adapters import session_mfa_by_idp


class RequireStaffMFAMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.path.startswith("/admin/")
            and request.user.is_authenticated
            and not request.user.is_staff
            and request.path != "/admin/logout/"
        ):
            # Django's admin would redirect to a login page this person cannot use: say no instead.
            raise PermissionDenied("The admin is for IAM staff.")
        if (
            settings.LANYARD_REQUIRE_STAFF_MFA
            and request.path.startswith("/admin/")
            and request.user.is_authenticated
            and request.user.is_staff
            and not get_adapter().is_mfa_enabled(request.user)
            and not session_mfa_by_idp(request)
        ):
            messages.warning(request, "Set up two-factor authentication before using the admin.")
            return redirect(f"{reverse('mfa_activate_totp')}?next={request.get_full_path()}")
        return self.get_response(request)
