"""Sign-in: the failed-login limit counts the real client behind proxies, and every sign-in security
event (failure, lockout, MFA enrolment and removal, password change, staff sign-in) is in the trail
and on the IAM security page."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from django.core.cache import cache
from django.urls import reverse

from audit.models import AuditEvent
from audit.verify import verify
from lanyard import settings as production
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"
LB = "10.0.0.1"  # the load balancer: every request behind it reaches Django from here
ATTACKER, VICTIM = "198.51.100.66", "203.0.113.10"


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    # The suite switches rate limits off; these tests run with production's.
    settings.ACCOUNT_RATE_LIMITS = production.ACCOUNT_RATE_LIMITS
    cache.clear()
    yield
    cache.clear()


def _login(client, email: str, password: str, *, remote: str, xff: str | None = None, **headers):
    extra = {"REMOTE_ADDR": remote, **headers}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return client.post(reverse("account_login"), {"login": email, "password": password}, **extra)


def _logged_in(response, client) -> bool:
    return response.status_code == 302 and "_auth_user_id" in client.session


def _spray(client, *, remote: str, xff: str | None = None, attempts: int = 11) -> None:
    """One attacker tries a wrong password on many accounts (so only the per-address limit trips)."""
    for n in range(attempts):
        _login(client, f"nobody{n}@example.com", "wrong-password-123", remote=remote, xff=xff)


def _locked(response) -> bool:
    return response.status_code == 200 and b"Too many failed login attempts" in response.content


def test_behind_a_proxy_without_the_setting_one_attacker_locks_everyone_out(client, settings):
    """The finding, kept as a test: with no trusted proxy every user shares the balancer's address."""
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    UserFactory(email="victim@example.com")
    _spray(client, remote=LB, xff=ATTACKER)
    assert _locked(_login(client, "victim@example.com", PASSWORD, remote=LB, xff=VICTIM))


def test_behind_a_proxy_one_attacker_no_longer_locks_everyone_out(client, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    UserFactory(email="victim@example.com")
    _spray(client, remote=LB, xff=ATTACKER)
    # The attacker is locked out...
    assert _locked(_login(client, "victim@example.com", "wrong-password-123", remote=LB, xff=ATTACKER))
    # ...and the lockout names the attacker's address, not the balancer's.
    lockout = AuditEvent.objects.filter(action="auth.locked_out").latest("sequence")
    assert lockout.ip == ATTACKER
    # Everyone else behind the same balancer still signs in.
    assert _logged_in(_login(client, "victim@example.com", PASSWORD, remote=LB, xff=VICTIM), client)


def test_a_forged_forwarded_for_hop_is_not_believed(client, settings):
    """Only the hop our proxy appended counts: a client's own X-Forwarded-For entries change nothing."""
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    UserFactory(email="victim@example.com")
    for n in range(11):
        # Each request forges a different left-most address; the proxy appends the real one.
        _login(client, f"nobody{n}@example.com", "wrong", remote=LB, xff=f"192.0.2.{n}, {ATTACKER}")
    assert _locked(_login(client, "victim@example.com", PASSWORD, remote=LB, xff=f"192.0.2.99, {ATTACKER}"))


def test_a_trusted_client_ip_header_is_used_when_configured(client, settings):
    settings.ALLAUTH_TRUSTED_CLIENT_IP_HEADER = "X-Real-IP"
    UserFactory(email="victim@example.com")
    for n in range(11):
        client.post(
            reverse("account_login"),
            {"login": f"nobody{n}@example.com", "password": "wrong"},
            REMOTE_ADDR=LB,
            HTTP_X_REAL_IP=ATTACKER,
        )
    ok = client.post(
        reverse("account_login"),
        {"login": "victim@example.com", "password": PASSWORD},
        REMOTE_ADDR=LB,
        HTTP_X_REAL_IP=VICTIM,
    )
    assert _logged_in(ok, client)


def test_direct_the_limit_counts_each_client_and_ignores_forwarded_for(client, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    UserFactory(email="victim@example.com")
    # Direct, X-Forwarded-For is the client's own claim: rotating it does not escape the limit.
    for n in range(11):
        _login(client, f"nobody{n}@example.com", "wrong", remote=ATTACKER, xff=f"192.0.2.{n}")
    assert _locked(_login(client, "victim@example.com", PASSWORD, remote=ATTACKER, xff="192.0.2.200"))
    assert _logged_in(_login(client, "victim@example.com", PASSWORD, remote=VICTIM), client)


def test_a_forwarded_for_shorter_than_the_proxy_count_is_no_server_error(client, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 2
    UserFactory(email="victim@example.com")
    response = _login(client, "victim@example.com", PASSWORD, remote=VICTIM, xff="192.0.2.1")
    assert _logged_in(response, client)
    assert AuditEvent.objects.get(action="auth.login").ip == VICTIM


def test_a_failed_sign_in_is_recorded_with_account_and_address_and_never_the_password(client):
    UserFactory(email="victim@example.com")
    _login(client, "Victim@Example.com", "s3cret-guess-XYZ", remote=ATTACKER, HTTP_USER_AGENT="curl/8")
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.outcome == AuditEvent.Outcome.FAILURE
    assert event.data["account"] == "victim@example.com"
    assert event.ip == ATTACKER and event.user_agent == "curl/8"
    assert event.actor_user_id is None
    row = AuditEvent.objects.filter(pk=event.pk).values().get()
    assert "s3cret-guess-XYZ" not in repr(row)
    assert verify().ok


def test_a_lockout_is_recorded(client):
    _spray(client, remote=ATTACKER)
    events = AuditEvent.objects.filter(action="auth.locked_out")
    assert events.exists()
    assert events.first().outcome == AuditEvent.Outcome.DENIED


def test_hammering_after_a_lockout_records_one_lockout_a_minute_not_one_per_request(client):
    UserFactory(email="victim@example.com")
    for _ in range(30):
        _login(client, "victim@example.com", "wrong", remote=ATTACKER)
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 5  # the per-account limit
    assert AuditEvent.objects.filter(action="auth.locked_out").count() == 1


def test_a_staff_sign_in_is_an_admin_login_event_and_an_employee_sign_in_a_login(client):
    UserFactory(email="staff@example.com", is_staff=True, groups=["IAM staff"])
    UserFactory(email="emp@example.com")
    _login(client, "emp@example.com", PASSWORD, remote=VICTIM)
    client.logout()
    _login(client, "staff@example.com", PASSWORD, remote=VICTIM)
    assert AuditEvent.objects.get(action="auth.login").data["account"] == "emp@example.com"
    admin_login = AuditEvent.objects.get(action="auth.admin_login")
    assert admin_login.data == {"account": "staff@example.com", "staff": True}
    assert admin_login.ip == VICTIM


def _code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def test_mfa_enrolment_and_removal_are_recorded(client, django_capture_on_commit_callbacks):
    user = UserFactory(email="mfa@example.com")
    assert _logged_in(_login(client, "mfa@example.com", PASSWORD, remote=VICTIM), client)
    # Enrolling asks for the password again (allauth's reauthentication).
    client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    page = client.get(reverse("mfa_activate_totp"))
    secret = page.context["form"].secret
    with django_capture_on_commit_callbacks(execute=True):  # allauth signals enrolment on commit
        assert client.post(reverse("mfa_activate_totp"), {"code": _code(secret)}).status_code == 302
    assert Authenticator.objects.filter(user=user, type="totp").exists()
    added = AuditEvent.objects.filter(action="auth.mfa_added").values_list("data__type", flat=True)
    assert "totp" in set(added)

    assert client.post(reverse("mfa_deactivate_totp")).status_code == 302
    assert not Authenticator.objects.filter(user=user, type="totp").exists()
    assert AuditEvent.objects.filter(action="auth.mfa_removed", actor_user=user).exists()


def test_a_wrong_second_factor_code_is_recorded(client, iam):
    response = _login(client, iam.email, PASSWORD, remote=ATTACKER)
    assert response["Location"] == reverse("mfa_authenticate")
    client.post(reverse("mfa_authenticate"), {"code": "000000"}, REMOTE_ADDR=ATTACKER)
    event = AuditEvent.objects.get(action="auth.mfa_failed")
    assert event.actor_user == iam and event.ip == ATTACKER


def test_a_password_change_is_recorded_without_either_password(client):
    user = UserFactory(email="pw@example.com")
    _login(client, "pw@example.com", PASSWORD, remote=VICTIM)
    new = "a-new-long-passphrase-42"
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": new, "password2": new},
        REMOTE_ADDR=VICTIM,
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.password_changed")
    assert event.actor_user == user and event.ip == VICTIM
    row = repr(AuditEvent.objects.filter(pk=event.pk).values().get())
    assert new not in row and PASSWORD not in row


def test_a_password_set_by_staff_in_the_admin_is_recorded(client):
    from tests.conftest import enrol_totp

    admin_user = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)
    enrol_totp(admin_user)
    user = UserFactory(email="reset-me@example.com")
    client.force_login(admin_user)
    new = "an-admin-chosen-passphrase-7"
    response = client.post(
        f"/admin/governance/user/{user.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
        REMOTE_ADDR=VICTIM,
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="auth.password_set_by_admin")
    assert event.actor_user == admin_user and event.data["account"] == "reset-me@example.com"
    assert event.ip == VICTIM and new not in repr(AuditEvent.objects.filter(pk=event.pk).values().get())


# ------------------------------------------------------------------------------ the security page


def test_the_security_page_lists_the_events_for_iam(client, iam):
    _spray(client, remote=ATTACKER, attempts=3)
    client.force_login(iam)
    response = client.get(reverse("portal:security"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "nobody0@example.com" in body and ATTACKER in body
    filtered = client.get(reverse("portal:security"), {"account": "nobody1"}).content.decode()
    assert "nobody1@example.com" in filtered and "nobody2@example.com" not in filtered
    assert client.get(reverse("portal:security"), {"ip": "not-an-ip"}).status_code == 200


@pytest.mark.parametrize("persona", ["outsider", "employee", "owner"])
def test_the_security_page_refuses_everyone_but_iam_staff(client, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("portal:security")).status_code == 403


@pytest.mark.parametrize("rows", [1, 40])
def test_the_security_page_costs_the_same_queries_for_1_row_and_40(
    client, iam, rows, django_assert_num_queries
):
    _spray(client, remote=ATTACKER, attempts=rows)
    client.force_login(iam)
    # session, user, the user's groups/permissions for is_iam and nav, the count and the page.
    with django_assert_num_queries(QUERIES):
        assert client.get(reverse("portal:security")).status_code == 200


QUERIES = 8


def test_the_trusted_proxy_settings_come_from_the_environment(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from django.conf import settings as s;"
        "print(s.ALLAUTH_TRUSTED_PROXY_COUNT, s.ALLAUTH_TRUSTED_CLIENT_IP_HEADER)"
    )
    env = {
        **os.environ,
        "DEBUG": "true",
        "LANYARD_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "lanyard.settings",
        "DATABASE_URL": "",
        "LANYARD_TRUSTED_PROXY_COUNT": "2",
        "LANYARD_TRUSTED_CLIENT_IP_HEADER": "X-Real-IP",
    }
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1].split() == ["2", "X-Real-IP"], out.stderr[-2000:]


def test_a_negative_proxy_count_fails_the_system_check(settings):
    from governance.signin import check_proxy_settings

    assert check_proxy_settings() == []
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = -1
    assert [e.id for e in check_proxy_settings()] == ["lanyard.E120"]
