"""Sign-in providers from the environment: LANYARD_OIDC_PROVIDERS and LANYARD_OIDC_<ID>_* variables."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from lanyard import settings as lanyard_settings


def test_each_named_provider_becomes_an_openid_connect_app(monkeypatch):
    monkeypatch.setenv("LANYARD_OIDC_PROVIDERS", "okta, entra")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_SERVER_URL", "https://acme.okta.com/")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_CLIENT_ID", "0oa1")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_SECRET", "s1")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_SOURCE", "Acme Okta")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_STAFF_GROUPS", "Lanyard IAM,IT Admins")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_AUDITOR_GROUPS", "Lanyard Auditors")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_NAME", "Microsoft")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_SERVER_URL", "https://login.microsoftonline.com/t-id/v2.0")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_CLIENT_ID", "app-id")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_SECRET", "s2")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_SUBJECT_CLAIM", "oid")
    monkeypatch.setenv("LANYARD_OIDC_ENTRA_TOKEN_AUTH_METHOD", "client_secret_post")
    okta, entra = lanyard_settings._oidc_apps()
    assert okta["provider_id"] == "okta" and okta["name"] == "Okta" and okta["client_id"] == "0oa1"
    assert okta["settings"]["server_url"] == "https://acme.okta.com"
    assert okta["settings"]["oauth_pkce_enabled"] is True
    assert okta["settings"]["lanyard_staff_groups"] == ["Lanyard IAM", "IT Admins"]
    assert okta["settings"]["lanyard_source"] == "Acme Okta"
    assert okta["settings"]["lanyard_auditor_groups"] == ["Lanyard Auditors"]
    assert entra["name"] == "Microsoft" and entra["settings"]["lanyard_subject_claim"] == "oid"
    assert entra["settings"]["token_auth_method"] == "client_secret_post"
    assert entra["settings"]["lanyard_staff_groups"] == []  # no groups: Entra does not decide roles
    assert entra["settings"]["lanyard_auditor_groups"] == []


def test_none_named_means_no_buttons(monkeypatch):
    monkeypatch.delenv("LANYARD_OIDC_PROVIDERS", raising=False)
    assert lanyard_settings._oidc_apps() == []


def test_a_provider_without_its_secret_fails_at_start_up(monkeypatch):
    monkeypatch.setenv("LANYARD_OIDC_PROVIDERS", "okta")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_SERVER_URL", "https://acme.okta.com")
    monkeypatch.setenv("LANYARD_OIDC_OKTA_CLIENT_ID", "0oa1")
    monkeypatch.delenv("LANYARD_OIDC_OKTA_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="LANYARD_OIDC_OKTA_SECRET"):
        lanyard_settings._oidc_apps()


def test_a_provider_id_must_be_a_plain_name(monkeypatch):
    monkeypatch.setenv("LANYARD_OIDC_PROVIDERS", "ok ta/x")
    with pytest.raises(ImproperlyConfigured, match="letters, digits"):
        lanyard_settings._oidc_apps()
