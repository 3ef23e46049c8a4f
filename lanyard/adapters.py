from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    """Accounts are created by IAM (or by the demo seed), not by open sign-up, unless configured."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.LANYARD_OPEN_SIGNUP
