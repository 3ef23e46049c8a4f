from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest

from governance import signin


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
