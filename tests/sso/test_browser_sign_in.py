"""In a real browser: Sign in with Okta, pick a person on the simulated IdP's page, land in Lanyard."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from connectors.models import Identity
from governance.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_employee_signs_in_through_okta_and_is_linked_to_their_identity(
    live_server,
    persona_page,
    screenshot,
    sim,
    okta_source,
):
    page = persona_page(None)
    page.goto(reverse("account_login"))
    expect(page.get_by_role("button", name="Sign in with Okta")).to_be_visible()
    screenshot(page, "sso-sign-in")
    page.get_by_role("button", name="Sign in with Okta").click()

    expect(page).to_have_url(re.compile(re.escape(sim.url) + "/okta/oauth2/v1/authorize"))
    expect(page.locator("h1")).to_have_text("Sign in with Okta")
    screenshot(page, "sso-simulated-okta")
    page.get_by_role("button", name="Emma Employee").click()

    # Home sends an employee on to their grants: the identity link makes the page theirs.
    expect(page).to_have_url(live_server.url + reverse("portal:my_grants"))
    expect(page.locator(".who")).to_contain_text("employee@lanyard.demo")
    screenshot(page, "sso-signed-in-my-grants")
    user = User.objects.get(email="employee@lanyard.demo")
    assert Identity.objects.get(source=okta_source, email__iexact=user.email).user == user
