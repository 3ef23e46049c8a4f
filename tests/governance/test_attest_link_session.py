"""A review link's token is exchanged by POST for a short session; no later URL, redirect or page
holds it, and neither the token nor the session reaches past the campaign deadline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from governance import tokens
from governance.models import Attestation
from tests.governance import test_attest_links as links
from tests.governance.test_attest_links import link_for, refused, token_of

setup = links.setup  # the campaign fixture, shared

pytestmark = pytest.mark.django_db


def test_no_url_redirect_or_page_after_the_exchange_holds_the_token(client, setup):
    link = link_for("mia@example.com")
    token = token_of(link)
    clean = link.split("?")[0]

    button = client.get(link)
    assert button.status_code == 200 and b"Open my review" in button.content
    opened = client.post(clean, {"token": token})
    assert opened.status_code == 302
    assert opened["Location"] == clean and token not in opened["Location"]

    page = client.get(opened["Location"])
    assert page.status_code == 200 and "Ann Analyst" in page.content.decode()
    assert token not in page.content.decode()

    attestation = Attestation.objects.filter(identity=setup["ben"]).get()
    decided = client.post(clean, {f"decision-{attestation.pk}": "keep"})
    assert decided.status_code == 302 and token not in decided["Location"] and "t=" not in decided["Location"]
    attestation.refresh_from_db()
    assert attestation.decision == "keep"
    assert token not in client.get(decided["Location"]).content.decode()


def test_the_links_get_alone_opens_no_session(setup):
    """A mail scanner prefetching the link gets a button, not the review, and no right to it."""
    scanner = Client()
    link = link_for("mia@example.com")
    assert scanner.get(link).status_code == 200
    assert scanner.get(link.split("?")[0]).status_code == 403


def test_the_exchange_gives_a_fresh_session_id(client, setup):
    link = link_for("mia@example.com")
    client.get(link)
    before = client.cookies["sessionid"].value if "sessionid" in client.cookies else None
    client.post(link.split("?")[0], {"token": token_of(link)})
    assert client.cookies["sessionid"].value != before


def test_the_session_is_for_one_reviewer_of_one_campaign(client, setup):
    link = link_for("mia@example.com")
    client.post(link.split("?")[0], {"token": token_of(link)})
    lee = setup["lee"]
    assert client.get(f"/attest/review/{setup['campaign'].pk}/{lee.pk}/").status_code == 403


def test_the_session_times_out(client, setup, monkeypatch, settings):
    link = link_for("mia@example.com")
    client.post(link.split("?")[0], {"token": token_of(link)})
    later = timezone.now() + timedelta(minutes=settings.LANYARD_ATTESTATION_SESSION_MINUTES, seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    response = client.get(link.split("?")[0])
    assert response.status_code == 403 and b"timed out" in response.content
    refused("session_expired")


def test_the_session_ends_at_the_deadline(client, setup, monkeypatch):
    campaign = setup["campaign"]
    monkeypatch.setattr(timezone, "now", lambda: campaign.deadline - timedelta(minutes=1))
    link = link_for("mia@example.com")
    client.post(link.split("?")[0], {"token": token_of(link)})
    assert client.get(link.split("?")[0]).status_code == 200
    monkeypatch.setattr(timezone, "now", lambda: campaign.deadline + timedelta(seconds=1))
    assert client.get(link.split("?")[0]).status_code in (403, 410)


def test_a_token_claiming_a_later_expiry_is_refused_after_the_deadline(client, setup, monkeypatch):
    """Whatever expiry a token carries, the campaign deadline is checked on every use."""
    campaign, mia = setup["campaign"], setup["mia"]
    token = tokens.make_review_token(
        campaign_id=campaign.pk, reviewer_id=mia.pk, expires_at=campaign.deadline + timedelta(days=365)
    )
    url = f"/attest/review/{campaign.pk}/{mia.pk}/"
    monkeypatch.setattr(timezone, "now", lambda: campaign.deadline + timedelta(seconds=1))
    assert client.get(f"{url}?t={token}").status_code == 410
    assert client.post(url, {"token": token}).status_code == 410
    assert AuditEvent.objects.filter(action="attestation.link_refused", data__reason="expired").count() == 2


def test_a_refused_link_records_the_client_behind_the_proxy(client, setup, settings):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    link = link_for("mia@example.com")
    client.get(link + "x", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert refused("tampered").ip == "198.51.100.9"
