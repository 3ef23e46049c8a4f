"""The gateway as a receiver of Lanyard's SETs (SSF poll, real HTTP): a long memory, forgotten at once."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from asgiref.sync import sync_to_async

from connectors.models import Grant
from connectors.services import grant_revoke
from gateway import cache, proxy, resource, ssf
from gateway.proxy import create_app
from signals.models import OutboxSet, TransmitterStream
from signals.streams import receiver_create

from .servers import serve
from .test_authorization_server import full_flow
from .test_proxy import mcp, upstream, wired  # noqa: F401  (upstream, wired: fixtures)


def test_a_sets_subject_maps_to_the_memory_tags():
    complex_subject = {
        "format": "complex",
        "user": {"format": "email", "email": "Ann@Example.com"},
        "application": {"format": "opaque", "id": "connector:42"},
    }
    assert ssf.tags_of({"sub_id": complex_subject, "events": {}}) == [
        ("email", "ann@example.com"),
        ("connector", 42),
    ]
    assert ssf.tags_of({"events": {"x": {"subject": {"format": "email", "email": "b@x"}}}}) == [
        ("email", "b@x")
    ]
    # A subject the gateway cannot map makes it forget everything: never keep what might be revoked.
    assert ssf.tags_of({"sub_id": {"format": "opaque", "id": "identity:7"}, "events": {}}) is None
    assert ssf.tags_of({"events": {}}) is None


def test_a_quiet_stream_shortens_the_memory_at_once(settings, monkeypatch):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 1
    settings.LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS = 60
    now = [100.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    cache.signals_live_for(5)
    memory = cache.TTLCache()
    memory.put("k", "v")
    now[0] += 3
    assert memory.get("k") == "v"  # kept past the short bound while SETs arrive
    cache.signals_lost()
    assert memory.get("k") is cache.MISSING  # the stream went quiet: older than 1 s is not used


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("wired")
def test_a_revocation_reaches_an_open_session_through_the_set_within_a_second(
    live_server, settings, client, employee, pdp, monkeypatch
):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 1.0
    settings.LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS = 60.0
    settings.LANYARD_GATEWAY_SSF_POLL_SECONDS = 0.1
    settings.LANYARD_GATEWAY_INSTANCE = "test-gw:1"
    _receiver, receiver_token = receiver_create(
        name="gateways", audience="https://gateway.test", actor="test"
    )
    settings.LANYARD_GATEWAY_SSF_TOKEN = receiver_token
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()
    token = full_flow(client, employee)[1]["access_token"]
    # Lanyard's transmitter (the stream API, the poll, the JWKS) is the live server from here on.
    settings.LANYARD_BASE_URL = settings.LANYARD_SSF_ISSUER = live_server.url
    asked = []
    real_status = resource.token_status
    monkeypatch.setattr(resource, "token_status", lambda t: asked.append(1) or real_status(t))

    with serve(create_app()) as gateway:
        deadline = time.monotonic() + 20
        while (ready := httpx.get(f"{gateway}/readyz", timeout=5).json())["checks"]["signals"] != "ok":
            assert time.monotonic() < deadline, ready
            time.sleep(0.1)
        stream = TransmitterStream.objects.get(description="lanyard-gateway test-gw:1")
        assert stream.method == ssf.POLL_METHOD

        state = {"revoked_at": 0.0}

        async def work(session):
            assert not (await session.call_tool("search", {"query": "warm"})).is_error
            await anyio.sleep(1.5)  # past the short bound: still remembered while SETs arrive
            assert not (await session.call_tool("search", {"query": "still"})).is_error
            assert len(asked) == 1, "the token was checked again: the memory did not last"
            grant = await sync_to_async(Grant.objects.get)(external_id__startswith="gateway:")
            await sync_to_async(grant_revoke)(grant=grant, actor="system", reason="left the project")
            state["revoked_at"] = time.monotonic()
            while time.monotonic() - state["revoked_at"] < 5:
                await session.call_tool("search", {"query": "after"})  # raises once refused
                await anyio.sleep(0.02)

        with pytest.raises(Exception):  # noqa: B017 - the SDK client surfaces the 401 as its own error
            mcp(f"{gateway}/mcp/team-wiki", token, work)
        refused_after = time.monotonic() - state["revoked_at"]
        assert state["revoked_at"] and refused_after < 1.0, (
            f"refused {refused_after:.2f} s after the revocation"
        )
        deadline = time.monotonic() + 5
        while OutboxSet.objects.filter(stream=stream, state="acknowledged").count() < 1:
            assert time.monotonic() < deadline, "the gateway did not acknowledge the SET"
            time.sleep(0.1)
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()
    cache.signals_lost()
