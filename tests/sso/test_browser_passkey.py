"""In a real browser: a staff member adds a passkey (Chromium's virtual authenticator) as their second
factor, reaches the admin with it, and signs in again with password + passkey."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct-horse-battery"  # the factories' password


def sign_in_with_password(page, email: str) -> None:
    page.goto(reverse("account_login"))
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.password-login button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def test_a_passkey_is_a_second_factor_for_staff(live_server, persona_page, screenshot, settings):
    settings.MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True  # the live server is plain http
    staff = UserFactory(email="pia.passkey@example.com", is_staff=True, groups=["IAM staff"])
    page = persona_page(None)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    sign_in_with_password(page, staff.email)
    page.goto(reverse("admin:index"))  # no second factor yet: sent to enrol one, password asked again
    expect(page).to_have_url(re.compile(re.escape(reverse("account_reauthenticate"))))
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(reverse("mfa_activate_totp"))))

    page.goto(reverse("mfa_add_webauthn"))
    page.fill("input[name=name]", "Laptop passkey")
    screenshot(page, "passkey-add")
    page.click("#mfa_webauthn_add")
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    assert Authenticator.objects.filter(user=staff, type=Authenticator.Type.WEBAUTHN).count() == 1

    page.goto(reverse("admin:index"))
    expect(page).to_have_url(live_server.url + reverse("admin:index"))

    page.goto(reverse("home"))
    page.get_by_role("button", name="Sign out").click()
    sign_in_with_password(page, staff.email)
    expect(page).to_have_url(re.compile(re.escape(reverse("mfa_authenticate"))))
    page.click("#mfa_webauthn_authenticate")
    page.wait_for_url(lambda url: "/2fa/authenticate/" not in url)
    page.goto(reverse("admin:index"))
    expect(page).to_have_url(live_server.url + reverse("admin:index"))
