"""The request journey in a real browser against a live server and the simulated Entra tenant.

employee requests → owner approves → IAM approves and provisions (Entra delegated grant over HTTP) →
owner revokes the holder's grant → the grant is gone at the simulator; the outsider is refused everywhere.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

import simulator
from connectors.models import Grant
from governance.models import ConnectorRequest
from tests.factories import ConnectorAppFactory, ConnectorFactory, GrantFactory, IdentityFactory
from tests.governance.simworld import PROVIDER, TENANT, entra_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sim(settings):
    handle = simulator.start(**TENANT)
    settings.LANYARD_IDP_TIMEOUT = 5.0
    settings.LANYARD_IDP_BACKOFF_BASE = 0.01
    settings.LANYARD_IDP_BACKOFF_MAX = 0.05
    yield handle
    handle.stop()


def _shadow_connector() -> None:
    shadow = ConnectorFactory(discovered=True, name="Unvetted Notes Bot", vendor="Unknown", risk="high")
    app = ConnectorAppFactory(connector=shadow)
    for _ in range(3):
        GrantFactory(connector=shadow, app=app, identity=IdentityFactory(), scopes=["Mail.Read"])


def test_a_request_goes_from_employee_to_owner_to_iam_to_provisioned_and_is_revoked_by_the_owner(
    sim, live_server, persona_page, screenshot, employee, owner, iam, iam2
):
    world = entra_world(sim, employee=employee, owner=owner)
    _shadow_connector()

    # The employee asks for access to an active connector.
    page = persona_page(employee)
    page.goto(reverse("portal:request_new"))
    page.check("input[name=kind][value=existing]")
    page.select_option("select[name=connector]", str(world.connector.pk))
    page.fill("textarea[name=justification]", "Transcripts of my customer calls for the CRM.")
    page.fill("textarea[name=scopes]", "Calendars.Read\nOnlineMeetings.Read")
    screenshot(page, "request-form")
    page.click("#request-form button")
    expect(page.locator("#request-status")).to_have_text("Waiting for the business owner")
    req = ConnectorRequest.objects.get()
    screenshot(page, "request-detail")

    # The owner approves from the decisions inbox.
    page = persona_page(owner)
    page.goto(reverse("portal:inbox"))
    expect(page.locator("#inbox")).to_contain_text("Max Manager")
    screenshot(page, "inbox-owner")
    page.click(f'[data-test="approve-{req.pk}"]')
    expect(page.locator(".messages")).to_contain_text(f"Request #{req.pk} approved.")

    # IAM approves, then provisions through Entra's API.
    page = persona_page(iam)
    page.goto(reverse("portal:inbox"))
    screenshot(page, "inbox-iam")
    page.click(f'[data-test="approve-{req.pk}"]')
    expect(page.locator(".messages")).to_contain_text(f"Request #{req.pk} approved.")
    page.goto(reverse("portal:request_detail", args=[req.pk]))
    page.click("#provision-form button")
    expect(page.locator("#request-status")).to_have_text("Provisioned")
    grant = Grant.objects.get(connector=world.connector, identity=world.identity)
    assert sim.grant_exists(PROVIDER, grant.external_id) is True
    page.goto(reverse("portal:shadow"))
    expect(page.locator("#shadow")).to_contain_text("Unvetted Notes Bot")
    screenshot(page, "shadow-triage")

    # The employee sees the new grant.
    page = persona_page(employee)
    page.goto(reverse("portal:my_grants"))
    expect(page.locator("#grants")).to_contain_text(world.connector.name)
    screenshot(page, "my-grants")

    # The owner revokes the holder's grant from the connector page; Entra no longer has it.
    page = persona_page(owner)
    page.goto(reverse("portal:my_connectors"))
    screenshot(page, "my-connectors")
    page.click(f"#my-connectors a:text('{world.connector.name}')")
    expect(page.locator("#grants")).to_contain_text(world.identity.email)
    screenshot(page, "connector-detail")
    page.click(f'[data-test="revoke-grant-{grant.pk}"]')
    expect(page.locator(".messages")).to_contain_text("is being revoked")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert sim.grant_exists(PROVIDER, grant.external_id) is False


def test_the_outsider_is_refused_every_portal_page(
    live_server, persona_page, outsider, owned_connector, employee
):
    req = ConnectorRequest.objects.create(
        connector=owned_connector, kind="existing", requester=employee, justification="x"
    )
    page = persona_page(outsider)
    urls = [
        reverse("home"),
        reverse("portal:my_connectors"),
        reverse("portal:inbox"),
        reverse("portal:request_new"),
        reverse("portal:my_grants"),
        reverse("portal:shadow"),
        reverse("portal:connector_detail", args=[owned_connector.pk]),
        reverse("portal:connector_sanction", args=[owned_connector.pk]),
        reverse("portal:request_detail", args=[req.pk]),
    ]
    for url in urls:
        response = page.goto(url)
        assert response.status == 403, url
    expect(page.locator("body")).not_to_contain_text(re.compile("Meeting Notes AI"))
