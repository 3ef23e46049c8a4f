"""Sign-in through the company IdP (the simulated Okta and Google): just-in-time accounts, refusals."""

from __future__ import annotations

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from connectors.models import Identity
from governance.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def actions(user=None) -> list[str]:
    events = AuditEvent.objects.filter(action__startswith="auth.").order_by("sequence")
    if user is not None:
        events = events.filter(target_id=str(user.pk)) if hasattr(AuditEvent, "target_id") else events
    return list(events.values_list("action", flat=True))


def test_the_login_page_has_a_button_per_provider(sim):
    page = Client().get(reverse("account_login")).content.decode()
    assert "Sign in with Okta" in page and "Sign in with Google" in page
    assert 'name="password"' in page


def test_first_sign_in_creates_the_user_linked_to_their_okta_identity(sim, okta_source, sign_in):
    client = Client()
    response = sign_in(client, "employee@lanyard.demo", mfa=False)
    assert response.status_code == 302, response.content[:800]
    assert response["Location"] == reverse("home")
    user = User.objects.get(email="employee@lanyard.demo")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert not user.has_usable_password() and not user.is_staff
    identity = Identity.objects.get(source=okta_source, email__iexact="employee@lanyard.demo")
    assert identity.user_id == user.pk
    account = SocialAccount.objects.get(user=user)
    assert account.provider == "okta" and account.uid == identity.external_id  # the subject is the Okta id
    recorded = actions()
    assert "auth.sso_account_created" in recorded and "auth.sso_linked" in recorded
    assert "auth.role_granted" not in recorded
    assert client.get(reverse("portal:my_grants")).status_code == 200


def test_a_second_sign_in_is_the_same_account(sim, okta_source, sign_in):
    sign_in(Client(), "employee@lanyard.demo")
    response = sign_in(Client(), "employee@lanyard.demo")
    assert response.status_code == 302
    assert User.objects.filter(email__iexact="employee@lanyard.demo").count() == 1
    assert SocialAccount.objects.count() == 1
    assert actions().count("auth.sso_account_created") == 1


def test_an_existing_lanyard_account_is_linked_not_duplicated(sim, okta_source, sign_in):
    existing = User.objects.create_user(username="max", email="manager@lanyard.demo", password="x" * 14)
    client = Client()
    assert sign_in(client, "Manager@lanyard.demo").status_code == 302
    assert client.session["_auth_user_id"] == str(existing.pk)
    assert User.objects.filter(email__iexact="manager@lanyard.demo").count() == 1
    assert SocialAccount.objects.get().user == existing
    assert Identity.objects.get(source=okta_source, email__iexact="manager@lanyard.demo").user == existing


def test_iam_group_gives_iam_staff_and_removal_takes_it_away_at_next_sign_in(sim, okta_source, sign_in):
    client = Client()
    assert sign_in(client, "iam@lanyard.demo").status_code == 302
    user = User.objects.get(email="iam@lanyard.demo")
    assert user.is_staff and user.groups.filter(name="IAM staff").exists()
    assert user.has_perm("connectors.decide_connector")
    granted = AuditEvent.objects.get(action="auth.role_granted")
    assert granted.data["role"] == "IAM staff" and granted.data["groups"] == ["Lanyard IAM"]

    sim.oidc_groups("iam@lanyard.demo", remove=["Lanyard IAM"])
    client.post(reverse("account_logout"))
    assert sign_in(client, "iam@lanyard.demo").status_code == 302
    user = User.objects.get(pk=user.pk)
    assert not user.is_staff and not user.groups.filter(name="IAM staff").exists()
    removed = AuditEvent.objects.get(action="auth.role_removed")
    assert removed.data["provider"] == "okta"
    assert client.get(reverse("admin:index")).status_code == 403

    # Back in the group: back to IAM staff; an unchanged sign-in records no role change.
    sim.oidc_groups("iam@lanyard.demo", add=["Lanyard IAM"])
    sign_in(Client(), "iam@lanyard.demo")
    sign_in(Client(), "iam@lanyard.demo")
    assert actions().count("auth.role_granted") == 2 and actions().count("auth.role_removed") == 1


def test_a_person_the_register_does_not_know_is_refused_with_no_account(sim, transactional_db, sign_in):
    # Nothing synced: the Okta person is not in the register yet.
    response = sign_in(Client(), "employee@lanyard.demo")
    assert response.status_code == 403
    assert "is not in Lanyard" in response.content.decode()
    assert not User.objects.exists() and not SocialAccount.objects.exists()
    refused = AuditEvent.objects.get(action="auth.sso_refused")
    assert refused.outcome == "denied" and refused.data["reason"] == "no_identity"
    assert refused.data["provider"] == "okta"


def test_google_signs_in_by_verified_email_and_refuses_an_unknown_address(sim, okta_source, sign_in):
    # Google is configured without an identity source: the verified email finds the Okta identity.
    client = Client()
    assert sign_in(client, "owner@lanyard.demo", provider="google").status_code == 302
    user = User.objects.get(email="owner@lanyard.demo")
    assert Identity.objects.get(source=okta_source, email__iexact="owner@lanyard.demo").user == user
    # Google does not decide roles (no groups configured for it).
    assert not user.is_staff

    Identity.objects.filter(email__iexact="manager@lanyard.demo").update(email="max.m@elsewhere.example")
    response = sign_in(Client(), "manager@lanyard.demo", provider="google")
    assert response.status_code == 403 and not User.objects.filter(email="manager@lanyard.demo").exists()


def test_a_suspended_identity_is_refused(sim, okta_source, sign_in):
    Identity.objects.filter(email__iexact="employee@lanyard.demo").update(status=Identity.Status.SUSPENDED)
    response = sign_in(Client(), "employee@lanyard.demo")
    assert response.status_code == 403 and "suspended" in response.content.decode()
    assert not User.objects.exists()


def test_a_tampered_state_signs_no_one_in(sim, okta_source):
    client = Client()
    client.post(reverse("openid_connect_login", kwargs={"provider_id": "okta"}))
    response = client.get(
        reverse("openid_connect_callback", kwargs={"provider_id": "okta"}), {"code": "x", "state": "forged"}
    )
    assert response.status_code == 401  # allauth's "third-party login failure" page
    assert "_auth_user_id" not in client.session and not User.objects.exists()


def test_the_subject_decides_who_it_is_whatever_email_the_idp_sends(sim, okta_source, sign_in):
    identity = Identity.objects.get(source=okta_source, email__iexact="employee@lanyard.demo")
    Identity.objects.filter(pk=identity.pk).update(email="Emma.E@acmecorp.example")
    assert sign_in(Client(), "employee@lanyard.demo").status_code == 302
    user = User.objects.get(identities=identity)
    assert user.email == "emma.e@acmecorp.example"
    assert not User.objects.filter(email="employee@lanyard.demo").exists()


def test_the_admin_offers_no_place_to_store_idp_client_secrets(admin_client, settings):
    settings.LANYARD_REQUIRE_STAFF_MFA = False
    assert admin_client.get("/admin/socialaccount/socialapp/").status_code == 404
    assert admin_client.get("/admin/socialaccount/socialtoken/").status_code == 404
    assert admin_client.get("/admin/socialaccount/socialaccount/").status_code == 200


def test_an_auditor_group_gives_read_only_access_and_removal_takes_it(sim, okta_source, sign_in, settings):
    okta = settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"][0]
    okta["settings"]["lanyard_auditor_groups"] = ["Lanyard Auditors"]
    sim.oidc_groups("manager@lanyard.demo", add=["Lanyard Auditors"])
    client = Client()
    assert sign_in(client, "manager@lanyard.demo").status_code == 302
    user = User.objects.get(email="manager@lanyard.demo")
    assert user.is_staff and list(user.groups.values_list("name", flat=True)) == ["Auditors"]
    assert user.has_perm("audit.view_auditevent") and user.has_perm("connectors.view_grant")
    assert not user.has_perm("connectors.decide_connector") and not user.has_perm("connectors.change_grant")
    assert client.get(reverse("audit:events")).status_code == 200
    assert client.get(reverse("admin:index")).status_code == 200  # the id token asserted MFA
    granted = AuditEvent.objects.get(action="auth.role_granted")
    assert granted.data["role"] == "Auditors"

    sim.oidc_groups("manager@lanyard.demo", remove=["Lanyard Auditors"])
    client = Client()
    sign_in(client, "manager@lanyard.demo")
    user = User.objects.get(pk=user.pk)
    assert not user.is_staff and not user.groups.exists()
    assert client.get(reverse("audit:events")).status_code == 403
    assert AuditEvent.objects.get(action="auth.role_removed").data["role"] == "Auditors"


def test_a_hand_set_staff_flag_follows_the_idp_and_is_audited(sim, okta_source, sign_in):
    User.objects.create_user(username="emma", email="employee@lanyard.demo", is_staff=True)
    sign_in(Client(), "employee@lanyard.demo")
    assert not User.objects.get(email="employee@lanyard.demo").is_staff
    assert AuditEvent.objects.get(action="auth.role_removed").data["role"] == "admin access"
