"""The IAM security page in a real browser: a wrong password typed into the sign-in form shows up there."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_failed_sign_in_in_the_browser_is_on_the_iam_security_page(
    live_server, persona_page, screenshot, employee, iam
):
    visitor = persona_page(None)
    visitor.goto(reverse("account_login"))
    visitor.fill("input[name=login]", employee.email)
    visitor.fill("input[name=password]", "not-my-password-42")
    visitor.click("form button[type=submit]")
    expect(visitor.locator("form")).to_contain_text("not correct")

    page = persona_page(iam)
    page.goto(reverse("portal:security"))
    expect(page.locator("h1")).to_have_text("Sign-in security")
    row = page.locator("table tbody tr").filter(has_text=employee.email)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("127.0.0.1")
    expect(page.locator("body")).not_to_contain_text("not-my-password-42")
    screenshot(page, "security-events")
