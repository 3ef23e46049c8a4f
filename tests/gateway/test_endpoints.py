"""Registering an upstream: only MCP-server connectors, credential write-only and encrypted at rest."""

import json

import pytest

from gateway.admin import EndpointForm
from gateway.models import Endpoint
from tests.factories import ConnectorFactory

pytestmark = pytest.mark.django_db

SECRET = "upstream-secret-value-123"


def form(connector, creds="", slug="wiki"):
    return EndpointForm(
        data={
            "connector": connector.pk,
            "slug": slug,
            "upstream_url": "https://wiki.example.com/mcp",
            "transport": "streamable_http",
            "new_credentials": creds,
        }
    )


def test_credential_is_encrypted_and_write_only():
    connector = ConnectorFactory(kind="mcp_server")
    f = form(connector, json.dumps({"headers": {"Authorization": f"Bearer {SECRET}"}}))
    assert f.is_valid(), f.errors
    endpoint = f.save()
    stored = Endpoint.objects.get(pk=endpoint.pk)
    assert SECRET not in stored.credentials_encrypted
    assert stored.credentials == {"headers": {"Authorization": f"Bearer {SECRET}"}}
    assert SECRET not in EndpointForm(instance=stored).as_p()
    # Blank keeps the stored credential.
    again = EndpointForm(instance=stored, data=form(connector).data)
    assert again.is_valid(), again.errors
    assert again.save().credentials == stored.credentials


def test_only_mcp_server_connectors():
    f = form(ConnectorFactory(kind="oauth_app"))
    assert not f.is_valid() and "MCP server" in str(f.errors["connector"])


@pytest.mark.parametrize("creds", ["{bad", "[]", '{"headers": {"A": 1}}', '{"token": "x"}'])
def test_bad_credentials_are_clear_errors(creds):
    f = form(ConnectorFactory(kind="mcp_server"), creds)
    assert not f.is_valid() and "new_credentials" in f.errors


def test_slug_must_be_lowercase_url_safe():
    assert not form(ConnectorFactory(kind="mcp_server"), slug="Wiki_1").is_valid()


def test_outsider_and_iam_without_permission_refused_in_admin(client, outsider):
    client.force_login(outsider)
    assert client.get("/admin/gateway/endpoint/").status_code in (302, 403)
