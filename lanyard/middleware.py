"""The admin's door (non-staff refused; staff enrol MFA first) and the machine APIs' short path.

A session signed in through an IdP whose id token asserted a second factor (``amr``) needs no MFA
enrolment at the admin's door.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog
from allauth.mfa.adapter import get_adapter
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_structlog.app_settings import app_settings as structlog_settings
from django_structlog.middlewares.request import RequestMiddleware as StructlogRequestMiddleware
from django_structlog.middlewares.request import logger as request_log

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


class ApiFastPathMiddleware:
    """Machine APIs (``API_PREFIXES``) skip the portal's middleware: sessions, CSRF, auth, messages, allauth.

    The AuthZEN decision point is asked before every AI call and authenticates each request with its
    own bearer key; it never reads a session, a cookie or a signed-in user, and those middleware cost
    it about as much as a decision. Placed after ``SecurityMiddleware`` (and the metrics), a request
    under these prefixes goes from here to Django's own view handling: URL resolution, the view, the
    404/400/500 conversion and ``got_request_exception`` as on every path, with its request id bound
    to every log line by :class:`ApiRequestLogMiddleware`. Every other request continues down the
    stack unchanged.
    """

    API_PREFIXES = ("/access/v1/",)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        views = BaseHandler()
        # No view, template-response or exception middleware on this path: the view is called as is.
        views._view_middleware, views._template_response_middleware, views._exception_middleware = [], [], []
        self.api = convert_exception_to_response(
            ApiRequestLogMiddleware(convert_exception_to_response(views._get_response))
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.API_PREFIXES):
            request.user = AnonymousUser()  # nobody signs in here: the bearer key is the caller
            response = self.api(request)
            response.headers.setdefault(
                "X-Frame-Options", settings.X_FRAME_OPTIONS.upper()
            )  # as its middleware
            return response
        return self.get_response(request)


def _level(status: int) -> int:
    return {
        2: structlog_settings.STATUS_2XX_LOG_LEVEL,
        4: structlog_settings.STATUS_4XX_LOG_LEVEL,
        5: structlog_settings.STATUS_5XX_LOG_LEVEL,
    }.get(status // 100, structlog_settings.STATUS_DEFAULT_LOG_LEVEL)


class ApiRequestLogMiddleware:
    """django-structlog's request context for the API path, in one event instead of two.

    Binds ``request_id`` (the caller's ``X-Request-ID``, or a new one) and ``ip`` as
    ``django_structlog.middlewares.RequestMiddleware`` does, so every line the request logs carries
    them; logs ``request_finished`` with the status code at django-structlog's level for it (a request
    that raised is logged ``request_failed`` by django-structlog's own signal handler instead), and
    clears the context. No ``request_started`` line: a gateway asks before every call.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        upstream = (
            request.headers.get("x-request-id") if structlog_settings.TRUST_UPSTREAM_REQUEST_ID else None
        )
        structlog.contextvars.bind_contextvars(request_id=upstream or str(uuid.uuid4()))
        if structlog_settings.IP_LOGGING_ENABLED:
            StructlogRequestMiddleware.bind_ip(request)
        try:
            response = self.get_response(request)
            if hasattr(request, "_raised_exception"):
                del request._raised_exception  # django-structlog's handler logged request_failed
            else:
                request_log.log(
                    _level(response.status_code),
                    "request_finished",
                    code=response.status_code,
                    request=f"{request.method} {request.get_full_path()}",
                )
            return response
        finally:
            structlog.contextvars.clear_contextvars()
