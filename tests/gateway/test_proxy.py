"""End to end: the SDK's client → the gateway (uvicorn, free port) → a real SDK upstream (MCPServer).

Everything is on real HTTP: the upstream is ``gateway.demo_upstream`` (the SDK's MCPServer) on its
own port and checks the credential only the gateway holds; the PDP is the stand-in AuthZEN server
of conftest.py (``pdp`` fixture), also on a real port, until the access app's PDP lands.
"""

from __future__ import annotations

import socket
import time

import anyio
import httpx
import httpx2
import pytest
from django.utils import timezone
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from connectors.models import Connector, Grant
from gateway.demo_upstream import build_app
from gateway.models import Endpoint
from gateway.proxy import DENIED, UPSTREAM_UNAVAILABLE, create_app
from tests.factories import ConnectorFactory

from .servers import run_async, serve
from .test_authorization_server import full_flow

# The gateway serves from threads of its own (uvicorn, its event writer) while the test reads the same
# database: on SQLite's shared-cache test database that locks whole tables and the runs flake, so the
# end-to-end tests run on PostgreSQL, as a production gateway does (the CI services pass).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

UPSTREAM_KEY = "upstream-secret-held-by-it"


@pytest.fixture
def upstream():
    with serve(build_app(UPSTREAM_KEY)) as url:
        yield url + "/mcp"


@pytest.fixture
def gateway(settings):
    settings.LANYARD_GATEWAY_UPSTREAM_TIMEOUT = 3.0
    with serve(create_app()) as url:
        yield url


@pytest.fixture
def wired(endpoint, upstream):
    endpoint.upstream_url = upstream
    endpoint.set_credentials({"headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"}})
    endpoint.save()
    return endpoint


@pytest.fixture
def token(client, employee, wired, pdp):
    return full_flow(client, employee)[1]["access_token"]


def subject_id(employee) -> str:
    grant = Grant.objects.get(external_id__startswith="gateway:")
    return grant.identity.email if grant.identity_id else str(employee.pk)


def mcp(url: str, token: str | None, work):
    """Run ``work(session)`` with the SDK's client against ``url``; return its result."""

    async def go():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=10) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    try:
        return run_async(go())
    except BaseExceptionGroup as group:  # the client's task group wraps what the server answered
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None


def post(url: str, token: str, body: bytes | str) -> httpx.Response:
    return httpx.post(
        url,
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        timeout=10,
    )


def test_allowed_call_reaches_the_upstream_with_its_credential(gateway, token):
    result = mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("search", {"query": "expenses"}))
    assert not result.is_error
    assert result.structured_content == {"result": ["expenses"]}


def test_denied_call_carries_the_pdp_reason_and_never_reaches_upstream(gateway, token, pdp, employee):
    pdp.deny[(subject_id(employee), "tools/call", "delete_page")] = "Deleting pages needs an approved grant."
    with pytest.raises(MCPError) as denied:
        mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("delete_page", {"name": "security"}))
    assert denied.value.code == DENIED
    assert denied.value.message == "Deleting pages needs an approved grant."
    asked = [r for r in pdp.requests if r["action"]["name"] == "tools/call"]
    assert asked[-1]["resource"]["properties"]["tool"] == "delete_page"
    assert asked[-1]["subject"]["id"] == subject_id(employee)


def test_tool_list_is_filtered_by_the_pdp(gateway, token, pdp, employee):
    names = lambda s: s.list_tools()  # noqa: E731
    assert [t.name for t in mcp(f"{gateway}/mcp/team-wiki", token, names).tools] == [
        "search",
        "read_page",
        "delete_page",
    ]
    pdp.deny[(subject_id(employee), "tools/call", "delete_page")] = "No."
    assert [t.name for t in mcp(f"{gateway}/mcp/team-wiki", token, names).tools] == ["search", "read_page"]


def test_resources_and_prompts_are_decided_and_forwarded(gateway, token, pdp, employee):
    async def work(s):
        listed = await s.list_resources()
        read = await s.read_resource("wiki://pages")
        prompt = await s.get_prompt("summarise", {"name": "onboarding"})
        return listed, read, prompt

    listed, read, prompt = mcp(f"{gateway}/mcp/team-wiki", token, work)
    assert [str(r.uri) for r in listed.resources] == ["wiki://pages"]
    assert "onboarding" in read.contents[0].text
    assert "onboarding" in prompt.messages[0].content.text
    actions = {r["action"]["name"] for r in pdp.requests}
    assert {"resources/read", "prompts/get"} <= actions
    pdp.deny[(subject_id(employee), "prompts/get")] = "Prompts are off for you."
    with pytest.raises(MCPError, match="Prompts are off for you."):
        mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.get_prompt("summarise", {"name": "x"}))


def test_no_token_and_token_for_another_connector_are_401(gateway, token):
    assert httpx.post(f"{gateway}/mcp/team-wiki", json={}).status_code == 401
    other = ConnectorFactory(name="CRM MCP", kind="mcp_server")
    Endpoint.objects.create(connector=other, slug="crm", upstream_url="http://127.0.0.1:9/mcp")
    refused = post(f"{gateway}/mcp/crm", token, "{}")
    assert refused.status_code == 401
    assert "another connector" in refused.json()["error_description"]
    assert "resource_metadata=" in refused.headers["www-authenticate"]


def test_revoked_grant_is_refused_on_the_next_call(gateway, token):
    url = f"{gateway}/mcp/team-wiki"
    assert not mcp(url, token, lambda s: s.call_tool("search", {"query": "it"})).is_error
    grant = Grant.objects.get(external_id__startswith="gateway:")
    grant.status = Grant.Status.REVOKED
    grant.revoked_at = timezone.now()
    grant.save()
    refused = post(url, token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_suspended_connector_is_refused(gateway, token, wired):
    Connector.objects.filter(pk=wired.connector_id).update(status=Connector.Status.SUSPENDED)
    refused = post(f"{gateway}/mcp/team-wiki", token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert refused.status_code == 401
    assert "Team Wiki MCP is" in refused.json()["error_description"]


def test_upstream_down_is_a_clear_mcp_error(gateway, token, wired):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    Endpoint.objects.filter(pk=wired.pk).update(upstream_url=f"http://127.0.0.1:{port}/mcp")
    with pytest.raises(MCPError) as down:
        mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("search", {"query": "x"}))
    assert down.value.code == UPSTREAM_UNAVAILABLE
    assert "unreachable" in down.value.message


def test_upstream_slow_is_an_error_after_the_timeout(gateway, token, wired, settings):
    """A listener that accepts and never answers: the gateway gives up after the setting, no hang."""
    settings.LANYARD_GATEWAY_UPSTREAM_TIMEOUT = 0.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        Endpoint.objects.filter(pk=wired.pk).update(
            upstream_url=f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        )
        with pytest.raises(MCPError) as slow:
            mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("search", {"query": "x"}))
    assert slow.value.code == UPSTREAM_UNAVAILABLE
    assert "0.5 s" in slow.value.message


def test_malformed_json_rpc_is_4xx(gateway, token):
    url = f"{gateway}/mcp/team-wiki"
    assert 400 <= post(url, token, "{not json").status_code < 500
    assert 400 <= post(url, token, '{"jsonrpc":"1.0","method":7}').status_code < 500


def test_unknown_slug_is_404(gateway, token):
    assert post(f"{gateway}/mcp/nobody-registered-this", token, "{}").status_code == 404


def test_run_gateway_command_serves_on_the_given_port(tmp_path):
    """``manage.py run_gateway --port N`` starts uvicorn with the gateway app (a real subprocess)."""
    import os
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"DEBUG": "true", "LANYARD_VAR_DIR": str(tmp_path), "DATABASE_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "run_gateway did not start"
                time.sleep(0.2)
        assert answer.json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(10)


def recorded(action: str, count: int, timeout: float = 10.0):
    """The gateway flushes in batches: wait (bounded) for ``count`` chain events of ``action``."""
    import time

    from django.db import OperationalError

    from audit.models import AuditEvent

    deadline = time.monotonic() + timeout
    while True:
        try:
            events = list(AuditEvent.objects.filter(action=action).order_by("sequence"))
            # Wait for the flush's transaction to end too: SQLite's shared-cache test database locks
            # whole tables while the gateway's writer thread holds them.
            Grant.objects.exists()
        except OperationalError:
            events = []
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_calls_are_recorded_on_the_audit_chain_without_arguments(gateway, token, pdp, employee, wired):
    from audit.verify import verify

    pdp.deny[(subject_id(employee), "tools/call", "delete_page")] = "No deleting."

    async def work(s):
        await s.call_tool("search", {"query": "secret-argument-value"})
        try:
            await s.call_tool("delete_page", {"name": "security"})
        except MCPError:
            pass

    try:
        mcp(f"{gateway}/mcp/team-wiki", token, work)
    except MCPError:
        pass
    allowed, denied = recorded("ai.gateway.tool_call", 2)
    grant = Grant.objects.get(external_id__startswith="gateway:")
    for event in (allowed, denied):
        assert event.connector_id == wired.connector_id  # the registered connector, not a shadow one
        assert event.actor_identity_id == grant.identity_id
        assert event.data["latency_ms"] >= 0
        assert event.data["via"] == "gateway"
    assert (allowed.outcome, allowed.data["resource"]) == ("success", "search")
    assert (denied.outcome, denied.data["resource"]) == ("denied", "delete_page")
    assert allowed.data["bytes_in"] > 0 and allowed.data["bytes_out"] > 0  # sizes, never the contents
    assert denied.data["bytes_out"] == 0
    assert "secret-argument-value" not in str(allowed.data)
    assert "shadow_connector" not in allowed.data.get("flags", [])
    assert verify().ok


def test_readiness_names_an_unreachable_decision_point(gateway, pdp, settings):
    ready = httpx.get(f"{gateway}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "pdp": "ok", "signals": "off"}}

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        settings.LANYARD_PDP_URL = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = httpx.get(f"{gateway}/readyz", timeout=10)
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == "ok"
    assert down.json()["checks"]["pdp"].startswith(f"unreachable at {settings.LANYARD_PDP_URL}/")
    assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200  # alive all the same


def test_gateway_calls_are_counted_in_its_metrics_behind_the_token(gateway, token, pdp, employee, settings):
    from prometheus_client.parser import text_string_to_metric_families

    settings.LANYARD_METRICS_TOKEN = "gateway-metrics-token-for-tests"
    settings.LANYARD_METRICS_ALLOWED_NETWORKS = []
    assert httpx.get(f"{gateway}/metrics", timeout=10).status_code == 401
    pdp.deny[(subject_id(employee), "tools/call", "delete_page")] = "No."
    mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("search", {"query": "a"}))
    with pytest.raises(MCPError):
        mcp(f"{gateway}/mcp/team-wiki", token, lambda s: s.call_tool("delete_page", {"page": "x"}))
    answer = httpx.get(
        f"{gateway}/metrics",
        headers={"Authorization": f"Bearer {settings.LANYARD_METRICS_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200
    calls = {
        (s.labels["method"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
        if s.name == "lanyard_gateway_calls_total"
    }
    assert calls[("tools/call", "success")] >= 1
    assert calls[("tools/call", "denied")] >= 1


def test_lanyard_checks_its_gateway_is_ready(gateway, pdp, endpoint, client, iam, settings):
    from concurrent.futures import ThreadPoolExecutor

    settings.LANYARD_GATEWAY_URL = gateway
    client.force_login(iam)

    def checks() -> dict:
        # The health view is async: ask from a thread of its own, as a session-wide Playwright browser
        # may hold an event loop in this one (after the browser tests).
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.get, "/ops/health/?format=json").result()
        return {c["check"]: c for c in answer.json()["checks"]}

    assert checks()["GatewayReady"]["ok"], checks()["GatewayReady"]
    pdp.close()  # the decision point goes away: the gateway is alive but not ready
    message = checks()["GatewayReady"]["message"]
    assert message.startswith(f"The MCP gateway at {gateway}/readyz is not ready (HTTP 503; pdp: unreachable")


def test_with_its_memory_on_a_revocation_still_reaches_an_open_session_within_a_second(
    gateway, token, settings
):
    """LANYARD_GATEWAY_CACHE_SECONDS=1 (the default): calls are answered from memory, yet a revoked
    grant is refused mid-session within the bound."""
    from asgiref.sync import sync_to_async

    from gateway import proxy, resource

    settings.LANYARD_GATEWAY_CACHE_SECONDS = 1.0
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()

    def revoke() -> None:
        Grant.objects.filter(external_id__startswith="gateway:").update(
            status=Grant.Status.REVOKED, revoked_at=timezone.now()
        )

    state = {"revoked_at": 0.0, "served_after": 0}

    async def work(session):
        for _ in range(3):
            assert not (await session.call_tool("search", {"query": "warm"})).is_error
        await sync_to_async(revoke)()
        state["revoked_at"] = time.monotonic()
        while time.monotonic() - state["revoked_at"] < 3:
            await session.call_tool("search", {"query": "after"})  # raises once refused
            state["served_after"] += 1
            await anyio.sleep(0.05)

    with pytest.raises(Exception):  # noqa: B017 - the SDK client surfaces the 401 as its own error
        mcp(f"{gateway}/mcp/team-wiki", token, work)
    refused_after = time.monotonic() - state["revoked_at"]
    assert state["revoked_at"] and refused_after <= 1.3, f"refused {refused_after:.2f} s after the revocation"
    refused = post(f"{gateway}/mcp/team-wiki", token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert refused.status_code == 401
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()


def test_an_unknown_slug_asked_by_a_signed_in_person_is_shadow_ai_for_iam(
    gateway, token, live_server, settings
):
    """The real decision point records the unknown MCP server as discovered and says how to request it."""
    from audit.models import AuditEvent, IngestKey
    from audit.services import ingest_key_create
    from gateway.services import endpoint_url

    _key, raw = ingest_key_create(
        name="gateway test PEP", actor=None, scopes=[IngestKey.Scope.ACCESS_EVALUATE], reports_devices=False
    )
    settings.LANYARD_PDP_URL, settings.LANYARD_PDP_KEY = live_server.url, raw
    answer = post(f"{gateway}/mcp/notes-ai", token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert answer.status_code == 404
    description = answer.json()["error_description"]
    assert description.startswith("No connector at /mcp/notes-ai.")
    assert "shadow AI" in description and "/requests/new/?connector=" in description
    shadow = Connector.objects.get(mcp_server_url=endpoint_url("notes-ai"))
    assert shadow.status == Connector.Status.DISCOVERED
    assert AuditEvent.objects.filter(action="connector.discovered", connector=shadow).count() == 1

    again = post(f"{gateway}/mcp/notes-ai", token, '{"jsonrpc":"2.0","id":2,"method":"tools/list"}')
    assert again.status_code == 404
    assert Connector.objects.filter(mcp_server_url=endpoint_url("notes-ai")).count() == 1  # not twice
    anonymous = httpx.post(f"{gateway}/mcp/other-ai", json={}, timeout=10)
    assert anonymous.status_code == 404  # nobody signed in: nothing recorded
    assert not Connector.objects.filter(mcp_server_url=endpoint_url("other-ai")).exists()


def test_an_oversized_message_is_413_before_anything_is_read(gateway, token, settings):
    settings.LANYARD_GATEWAY_MAX_BYTES = 2048
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"%s"}}}'
    )
    answer = post(f"{gateway}/mcp/team-wiki", token, body % ("x" * 4096))
    assert answer.status_code == 413
    assert "at most 2048 bytes" in answer.json()["error_description"]
    assert post(f"{gateway}/mcp/team-wiki", token, body % "small").status_code == 200


def test_an_expired_token_is_refused_with_the_challenge(gateway, token):
    from oauth2_provider.models import get_access_token_model

    get_access_token_model().objects.update(expires=timezone.now() - timezone.timedelta(seconds=1))
    refused = post(f"{gateway}/mcp/team-wiki", token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "expired" in refused.json()["error_description"]


def test_an_offboarded_person_is_refused_on_the_next_call(gateway, token, django_capture_on_commit_callbacks):
    from connectors.services import identity_set_status

    url = f"{gateway}/mcp/team-wiki"
    assert not mcp(url, token, lambda s: s.call_tool("search", {"query": "it"})).is_error
    grant = Grant.objects.select_related("identity").get(external_id__startswith="gateway:")
    with django_capture_on_commit_callbacks(execute=True):
        identity_set_status(identity=grant.identity, status="suspended", actor="system", reason="left")
    refused = post(url, token, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_a_headless_agent_calls_through_the_gateway_as_its_owner(gateway, wired, pdp, employee, client):
    from .test_agents import agent, token_request

    answer = token_request(
        client, agent(employee), resource=f"{gateway.rsplit(':', 1)[0]}:8901/mcp/team-wiki"
    )
    assert answer.status_code == 200, answer.content
    result = mcp(
        f"{gateway}/mcp/team-wiki",
        answer.json()["access_token"],
        lambda s: s.call_tool("search", {"query": "ci"}),
    )
    assert not result.is_error
    asked = [r for r in pdp.requests if r["action"]["name"] == "tools/call"]
    assert asked and asked[-1]["subject"]["properties"]["username"] == employee.get_username()
