"""The resource-server side of the gateway: RFC 9728 metadata and the 401 challenge, over ASGI."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.models import Connector
from gateway import resource
from gateway.models import Endpoint
from tests.factories import ConnectorFactory
from tests.gateway.servers import run_async

from .test_authorization_server import full_flow

pytestmark = pytest.mark.django_db(transaction=True)


async def echo(request: Request):
    claims, refused = await resource.authenticate(request, request.path_params["slug"])
    return refused or JSONResponse({"grant": claims["lanyard_grant"]})


APP = Starlette(
    routes=[
        Route("/.well-known/oauth-protected-resource/mcp/{slug}", resource.protected_resource_metadata),
        Route("/mcp/{slug}", echo, methods=["GET", "POST"]),
    ]
)


def call(method, path, **kwargs):
    async def go():
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://gw") as c:
                return await c.request(method, path, **kwargs)
        finally:
            # The ORM ran in asgiref's executor thread: close its connection, or the test database
            # cannot be dropped at teardown (PostgreSQL).
            await sync_to_async(connections.close_all)()

    return run_async(go())


def test_metadata_per_endpoint(endpoint, settings):
    doc = call("GET", "/.well-known/oauth-protected-resource/mcp/team-wiki").json()
    assert doc["resource"] == "http://127.0.0.1:8901/mcp/team-wiki"
    assert doc["authorization_servers"] == [settings.LANYARD_BASE_URL]
    assert doc["resource_name"] == "Team Wiki MCP"
    assert call("GET", "/.well-known/oauth-protected-resource/mcp/nope").status_code == 404


def test_no_token_is_a_401_pointing_at_the_metadata(endpoint):
    answer = call("POST", "/mcp/team-wiki")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer resource_metadata="http://127.0.0.1:8901/.well-known/oauth-protected-resource/mcp/team-wiki",'
        ' scope="mcp"'
    )


def test_valid_token_passes_and_other_endpoint_is_refused(client, employee, endpoint, pdp):
    _, token = full_flow(client, employee)
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    assert call("POST", "/mcp/team-wiki", headers=auth).status_code == 200
    other = ConnectorFactory(name="CRM MCP", kind="mcp_server")
    Endpoint.objects.create(connector=other, slug="crm", upstream_url="http://127.0.0.1:9/mcp")
    refused = call("POST", "/mcp/crm", headers=auth)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "another connector" in refused.json()["error_description"]


def test_suspension_refuses_the_next_call(client, employee, endpoint, pdp):
    _, token = full_flow(client, employee)
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    assert call("POST", "/mcp/team-wiki", headers=auth).status_code == 200
    Connector.objects.filter(pk=endpoint.connector_id).update(status=Connector.Status.SUSPENDED)
    assert call("POST", "/mcp/team-wiki", headers=auth).status_code == 401


def test_garbage_token_is_invalid_token(endpoint):
    answer = call("POST", "/mcp/team-wiki", headers={"Authorization": "Bearer garbage"})
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]
