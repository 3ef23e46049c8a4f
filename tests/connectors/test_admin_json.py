"""The admin's JSON inputs (identity-source credentials, catalog files) answer bad JSON with a form
error, never a 500: they decode through the hardened reader's decoder (httpapi.body)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from connectors import catalog
from connectors.models import IdentitySource

pytestmark = pytest.mark.django_db
DEEP = "[" * 100_000 + "]" * 100_000


def _source_form(credentials: str) -> dict:
    return {
        "kind": "okta",
        "name": "Acme Okta",
        "base_url": "https://acme.okta.com",
        "token_url": "",
        "enabled": "on",
        "sync_interval": "01:00:00",
        "new_credentials": credentials,
    }


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (DEEP, "nested too deeply"),
        ("{not json", "Malformed JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"api_token": "a\\ud800"}', "valid"),
    ],
)
def test_bad_credentials_json_is_a_form_error_not_a_server_error(client, iam, credentials, message):
    client.force_login(iam)
    response = client.post(reverse("admin:connectors_identitysource_add"), _source_form(credentials))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not IdentitySource.objects.exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [(DEEP.encode(), "nested too deeply"), (b'{"apps": ["\xff"]}', "not valid UTF-8"), (b"{", "Malformed")],
)
def test_a_bad_catalog_file_is_a_form_error_not_a_server_error(client, iam, raw, message):
    client.force_login(iam)
    upload = SimpleUploadedFile("catalog.json", raw, content_type="application/json")
    response = client.post(reverse("admin:connectors_catalogentry_upload"), {"file": upload})
    assert response.status_code == 200
    assert message in response.content.decode()


def test_the_catalog_loader_refuses_deep_nesting_with_its_own_error():
    with pytest.raises(catalog.CatalogError, match="nested too deeply"):
        catalog.load(DEEP.encode())
