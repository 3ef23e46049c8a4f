"""The gateway's ≤ 1 s memory: a revocation still reaches every call within the bound, and a PDP that
did not answer is never remembered."""

from __future__ import annotations

import time

import pytest

from gateway import cache, proxy, resource
from gateway.cache import MISSING, TTLCache
from gateway.pdp import Decision

from .servers import run_async


@pytest.fixture(autouse=True)
def fresh_memory():
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()
    yield
    for memory in (resource.TOKENS, proxy.ENDPOINTS, proxy.DECISIONS):
        memory.clear()


def test_entries_expire_after_the_bound_and_zero_keeps_nothing(settings, monkeypatch):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 1.0
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    memory = TTLCache()
    memory.put("k", "v")
    assert memory.get("k") == "v"
    now[0] += 0.99
    assert memory.get("k") == "v"
    now[0] += 0.02
    assert memory.get("k") is MISSING
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 0
    memory.put("k", "v")
    assert memory.get("k") is MISSING


def test_forget_drops_everything_about_a_person_or_a_connector(settings):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 60
    memory = TTLCache()
    memory.put("a", 1, [("email", "ann@x"), ("connector", 7)])
    memory.put("b", 2, [("email", "bob@x"), ("connector", 7)])
    memory.put("c", 3, [("email", "bob@x"), ("connector", 8)])
    assert memory.forget(("email", "ann@x")) == 1
    assert memory.forget(("connector", 7)) == 1
    assert memory.get("c") == 3 and memory.get("a") is MISSING and memory.get("b") is MISSING


def test_the_least_recently_used_entries_go_beyond_the_size(settings):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 60
    memory = TTLCache(size=2)
    memory.put("a", 1)
    memory.put("b", 2)
    memory.put("c", 3)
    assert memory.get("a") is MISSING and memory.get("b") == 2 and memory.get("c") == 3


def test_a_token_check_is_remembered_within_the_bound_only(settings, monkeypatch):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 0.3
    asked = []

    def token_status(token):
        asked.append(token)
        return resource.TokenStatus(False, "unknown")

    monkeypatch.setattr(resource, "token_status", token_status)
    assert not run_async(resource.checked("tok-1")).active
    assert not run_async(resource.checked("tok-1")).active
    assert len(asked) == 1
    assert "tok-1" not in repr(resource.TOKENS.entries)  # keyed by its SHA-256, never the token
    time.sleep(0.35)
    run_async(resource.checked("tok-1"))
    assert len(asked) == 2


def test_a_decision_point_that_did_not_answer_is_asked_again(settings, monkeypatch):
    settings.LANYARD_GATEWAY_CACHE_SECONDS = 60
    answers = [Decision(False, "PDP down", answered=False), Decision(True), Decision(False, "never asked")]

    async def aevaluate(**question):
        return answers.pop(0)

    monkeypatch.setattr(proxy.pdp, "aevaluate", aevaluate)
    gateway = proxy.Gateway()
    gateway.pdp_client = object()
    call = proxy.Call(
        endpoint_id=1,
        slug="wiki",
        connector_id=7,
        connector_name="Wiki",
        upstream_url="http://127.0.0.1:9/mcp",
        upstream_headers={},
        claims={"lanyard_identity": 3, "lanyard_email": "Ann@x", "username": "ann", "sub": "3"},
    )

    async def ask():
        return await gateway.decide(call, "tools/call", {"tool": "search"})

    assert run_async(ask()).reason == "PDP down"
    assert run_async(ask()).allowed  # asked again, and this answer is remembered
    assert run_async(ask()).allowed
    assert len(answers) == 1
    assert proxy.DECISIONS.forget(("email", "ann@x")) == 1  # tagged for a signal about the person
