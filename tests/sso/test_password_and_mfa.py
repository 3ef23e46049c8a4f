"""LANYARD_PASSWORD_LOGIN=false leaves only the IdP (and break-glass superusers); staff MFA at the IdP."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from governance.models import User
from tests.conftest import enrol_totp
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery"  # the factories' password


@pytest.mark.django_db
def test_with_password_login_off_an_employee_password_is_refused(client, settings, employee):
    settings.LANYARD_PASSWORD_LOGIN = False
    response = client.post(reverse("account_login"), {"login": employee.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "Password sign-in is switched off" in response.content.decode()
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.get(action="auth.password_login_refused")
    assert event.outcome == "denied" and event.data["account"] == employee.email


@pytest.mark.django_db
def test_with_password_login_off_staff_are_refused_too(client, settings, iam):
    settings.LANYARD_PASSWORD_LOGIN = False
    response = client.post(reverse("account_login"), {"login": iam.email, "password": PASSWORD})
    assert response.status_code == 403 and "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_break_glass_superuser_still_signs_in_with_a_password(client, settings):
    settings.LANYARD_PASSWORD_LOGIN = False
    root = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)
    response = client.post(reverse("account_login"), {"login": root.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(root.pk)


@pytest.mark.django_db
def test_with_password_login_on_passwords_work_as_before(client, employee):
    response = client.post(reverse("account_login"), {"login": employee.email, "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(employee.pk)


@pytest.mark.django_db
def test_the_login_page_hides_the_password_form_behind_break_glass_when_off(client, settings):
    settings.LANYARD_PASSWORD_LOGIN = False
    page = client.get(reverse("account_login")).content.decode()
    assert "break-glass" in page
    settings.LANYARD_PASSWORD_LOGIN = True
    assert "break-glass" not in client.get(reverse("account_login")).content.decode()


# --- MFA: through the simulated Okta, whose id token says amr ["pwd","mfa","otp"] when the person
# passed Okta Verify on its login page and ["pwd"] when not.

pytestmark_sso = pytest.mark.django_db(transaction=True)


@pytestmark_sso
def test_staff_whose_idp_asserted_mfa_reach_the_admin_without_a_lanyard_second_factor(
    sim, okta_source, sign_in
):
    client = Client()
    assert sign_in(client, "iam@lanyard.demo", mfa=True).status_code == 302
    assert client.session["lanyard_sso"] == {"provider": "okta", "mfa": True}
    assert client.get(reverse("admin:index")).status_code == 200


@pytestmark_sso
def test_staff_without_mfa_at_the_idp_must_still_enrol_lanyards(sim, okta_source, sign_in):
    client = Client()
    assert sign_in(client, "iam@lanyard.demo", mfa=False).status_code == 302
    assert client.session["lanyard_sso"] == {"provider": "okta", "mfa": False}
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("mfa_activate_totp"))
    # Just signed in through the IdP, they can enrol at once (no password to re-enter: they have none).
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200 and b"secret" in page.content.lower()


@pytestmark_sso
def test_staff_with_totp_are_asked_for_it_unless_the_idp_asserted_mfa(sim, okta_source, sign_in):
    sign_in(Client(), "iam@lanyard.demo", mfa=True)
    user = User.objects.get(email="iam@lanyard.demo")
    enrol_totp(user)

    client = Client()
    response = sign_in(client, "iam@lanyard.demo", mfa=False)
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session

    client = Client()
    response = sign_in(client, "iam@lanyard.demo", mfa=True)
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.session["_auth_user_id"] == str(user.pk)


@pytestmark_sso
def test_with_password_login_off_the_idp_still_signs_people_in(sim, okta_source, sign_in, settings):
    settings.LANYARD_PASSWORD_LOGIN = False
    client = Client()
    assert sign_in(client, "employee@lanyard.demo").status_code == 302
    assert "_auth_user_id" in client.session
