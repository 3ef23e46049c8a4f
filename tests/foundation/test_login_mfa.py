"""Login goes through allauth (admin included); staff must enrol MFA before using the admin."""

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from django.urls import reverse

from tests.conftest import enrol_totp
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def _current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def test_staff_without_mfa_are_sent_to_enrol_before_the_admin(client):
    staff = UserFactory(is_staff=True, groups=["IAM staff"])
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa_activate_totp"))


def test_staff_with_mfa_reach_the_admin(client, iam):
    client.force_login(iam)
    assert client.get(reverse("admin:index")).status_code == 200


def test_the_requirement_can_be_switched_off(client, settings):
    settings.LANYARD_REQUIRE_STAFF_MFA = False
    staff = UserFactory(is_staff=True, groups=["IAM staff"])
    client.force_login(staff)
    assert client.get(reverse("admin:index")).status_code == 200


def test_the_admin_login_is_allauths(client):
    response = client.get(reverse("admin:login") + "?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_non_staff_are_refused_by_the_admin_even_when_logged_in(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("admin:login")).status_code == 403
    assert client.get(reverse("admin:index")).status_code == 403


def test_password_then_totp_code_logs_in(client):
    user = UserFactory(email="totp@example.com", is_staff=True, groups=["IAM staff"])
    secret = enrol_totp(user)
    response = client.post(reverse("account_login"), {"login": "totp@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session  # not logged in before the second factor

    assert client.post(reverse("mfa_authenticate"), {"code": "000000"}).status_code == 200
    assert "_auth_user_id" not in client.session

    response = client.post(reverse("mfa_authenticate"), {"code": _current_code(secret)})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(reverse("admin:index")).status_code == 200


def test_recovery_codes_are_offered(client, iam):
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    codes = RecoveryCodes.activate(iam).generate_codes()
    assert len(codes) >= 8
    response = client.post(reverse("account_login"), {"login": iam.email, "password": PASSWORD})
    assert response["Location"] == reverse("mfa_authenticate")
    response = client.post(reverse("mfa_authenticate"), {"code": codes[0]})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(iam.pk)


def test_a_wrong_password_does_not_log_in(client, iam):
    response = client.post(reverse("account_login"), {"login": iam.email, "password": "wrong-password-x"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_there_is_no_open_sign_up(client):
    response = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": "a-long-password-1", "password2": "a-long-password-1"},
    )
    assert b"Sign Up Closed" in response.content or response.status_code == 403
    from governance.models import User

    assert not User.objects.filter(email="new@example.com").exists()
