"""The shared HTTP core on its own, with canned responses: retry signals, backoff caps, token refresh."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from connectors.idp.base import IdpConfig, MalformedResponse, NotFound, PermanentIdpError, TransientIdpError
from connectors.idp.entra import EntraAdapter
from connectors.idp.github import classify as github_classify
from connectors.idp.google import classify as google_classify
from connectors.idp.http import HttpCore, TokenCache, parse_time, retry_after_seconds
from connectors.idp.okta import classify as okta_classify

CONFIG = IdpConfig(
    kind="okta",
    name="Test",
    base_url="https://idp.test",
    credentials={"api_token": "s3cr3t-token-value"},
    max_retries=3,
    backoff_base=0.5,
    backoff_max=4.0,
)


def core(responses, classify=None, token=None, config=CONFIG):
    """An HttpCore answering from ``responses`` in turn; records requests and sleeps instead of sleeping."""
    seen, sleeps = [], []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    http = HttpCore(
        config,
        base_url=config.base_url,
        classify=classify,
        token=token,
        static_token="" if token else config.credentials["api_token"],
        transport=httpx.MockTransport(handler),
    )
    http.sleep = sleeps.append
    return http, seen, sleeps


def test_retry_after_is_honoured_but_capped():
    http, seen, sleeps = core(
        [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(429, headers={"Retry-After": "120"}),
            httpx.Response(200, json=[]),
        ]
    )
    assert http.get_json("/x") == []
    assert 2.0 <= sleeps[0] <= 2.5
    assert sleeps[1] == CONFIG.backoff_max


def test_backoff_without_a_hint_is_exponential_with_jitter():
    http, seen, sleeps = core([httpx.Response(503)] * 3 + [httpx.Response(200, json={})])
    http.get_json("/x")
    assert len(sleeps) == 3
    for attempt, wait in enumerate(sleeps):
        assert 0.5 * 0.5 * 2**attempt <= wait <= 0.5 * 2**attempt


def test_retries_run_out_with_a_transient_error_carrying_the_hint():
    http, seen, sleeps = core([httpx.Response(429, headers={"Retry-After": "7"})] * 4)
    with pytest.raises(TransientIdpError) as exc:
        http.get_json("/api/v1/users")
    assert len(seen) == 4
    assert exc.value.retry_after == 7
    assert exc.value.endpoint == "/api/v1/users" and exc.value.status == 429
    assert "gave up after 4 attempts" in str(exc.value)


def test_timeouts_and_connection_errors_are_transient():
    http, seen, sleeps = core(
        [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.Response(200, json=1)]
    )
    assert http.get_json("/x") == 1
    http, seen, sleeps = core([httpx.ReadTimeout("slow")] * 4)
    with pytest.raises(TransientIdpError, match="timed out"):
        http.get_json("/x")


@pytest.mark.parametrize("status", [400, 403, 405, 409, 422])
def test_refusals_are_permanent_and_not_retried(status):
    http, seen, sleeps = core([httpx.Response(status, json={"errorSummary": "Api validation failed"})])
    with pytest.raises(PermanentIdpError, match="Api validation failed") as exc:
        http.get_json("/x")
    assert len(seen) == 1 and not sleeps
    assert exc.value.status == status


def test_not_found_is_raised_or_returned_when_allowed():
    http, seen, sleeps = core([httpx.Response(404), httpx.Response(404)])
    with pytest.raises(NotFound):
        http.get_json("/x")
    assert http.request("DELETE", "/x", allow_not_found=True).status_code == 404


def test_malformed_json_names_source_endpoint_and_status():
    http, seen, sleeps = core([httpx.Response(200, content=b"{not json")])
    with pytest.raises(MalformedResponse) as exc:
        http.get_json("/api/v1/apps")
    assert str(exc.value) == "response body is not valid JSON [Test /api/v1/apps HTTP 200]"


def test_a_secret_echoed_by_the_provider_is_scrubbed():
    body = {"errorSummary": "bad token s3cr3t-token-value"}
    http, seen, sleeps = core([httpx.Response(401, json=body)])
    with pytest.raises(PermanentIdpError) as exc:
        http.get_json("/x")
    assert "s3cr3t-token-value" not in str(exc.value)
    assert "[redacted]" in str(exc.value)
    assert seen[0].headers["Authorization"] == "Bearer s3cr3t-token-value"


def test_a_401_refreshes_the_token_once():
    fetched = []

    def fetch():
        fetched.append(1)
        return f"token-{len(fetched)}", 3600

    http, seen, sleeps = core(
        [httpx.Response(401), httpx.Response(200, json={}), httpx.Response(401), httpx.Response(401)],
        token=TokenCache(fetch),
    )
    assert http.get_json("/x") == {}
    assert [r.headers["Authorization"] for r in seen] == ["Bearer token-1", "Bearer token-2"]
    with pytest.raises(PermanentIdpError, match="authentication failed"):
        http.get_json("/x")
    assert len(fetched) == 3


def test_a_token_is_reused_until_shortly_before_it_expires():
    fetched = []

    def fetch():
        fetched.append(1)
        return "t", 30  # shorter than the 60 s margin: always stale

    cache = TokenCache(fetch)
    cache.get()
    cache.get()
    assert len(fetched) == 2
    cache = TokenCache(lambda: (fetched.append(1) or "t", 3600))
    cache.get()
    cache.get()
    assert len(fetched) == 3


def test_a_paging_link_to_another_host_is_refused():
    page1 = httpx.Response(200, json=[1], headers={"Link": '<https://evil.test/next>; rel="next"'})
    http, seen, sleeps = core([page1])
    with pytest.raises(MalformedResponse, match="another host"):
        list(http.link_pages("/x"))
    assert len(seen) == 1


def test_a_repeating_cursor_is_refused():
    same = {"Link": '<https://idp.test/x?after=1>; rel="next"'}
    http, seen, sleeps = core([httpx.Response(200, json=[1], headers=same)] * 3)
    with pytest.raises(MalformedResponse, match="repeats"):
        list(http.link_pages("/x"))


def test_ordered_map_keeps_order_and_bounds_concurrency():
    http, _, _ = core([])
    running, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002 * (n % 3))
        with lock:
            running[0] -= 1
        return n * n

    assert list(http.ordered_map(work, range(40))) == [n * n for n in range(40)]
    assert peak[0] <= CONFIG.concurrency


def test_ordered_map_stops_at_the_first_failure():
    http, _, _ = core([])

    def work(n):
        if n == 5:
            raise TransientIdpError("boom")
        return n

    with pytest.raises(TransientIdpError):
        list(http.ordered_map(work, range(100)))


def resp(status, headers=None, json=None):
    return httpx.Response(status, headers=headers or {}, json=json)


def test_google_rate_limit_reasons_are_retried_but_other_403s_are_not():
    def google(reason):
        return resp(403, json={"error": {"code": 403, "errors": [{"reason": reason}]}})

    assert google_classify(google("rateLimitExceeded")).action == "retry"
    assert google_classify(google("userRateLimitExceeded")).action == "retry"
    assert google_classify(google("forbidden")) is None
    assert google_classify(resp(429)).action == "retry" and google_classify(resp(429)).wait is None
    assert google_classify(resp(503)).action == "retry"


def test_okta_waits_until_the_rate_limit_window_resets():
    verdict = okta_classify(resp(429, {"X-Rate-Limit-Reset": str(int(time.time()) + 20)}))
    assert verdict.action == "retry" and 18 <= verdict.wait <= 20


def test_github_primary_and_secondary_rate_limits():
    reset = str(int(time.time()) + 30)
    primary = github_classify(resp(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}))
    assert primary.action == "retry" and 28 <= primary.wait <= 30
    secondary = github_classify(resp(403, {"retry-after": "60"}))
    assert secondary.action == "retry" and secondary.wait == 60
    message = github_classify(resp(403, json={"message": "You have exceeded a secondary rate limit."}))
    assert message.action == "retry"
    assert (
        github_classify(resp(403, {"x-ratelimit-remaining": "4999"}, {"message": "Must have admin"})) is None
    )


def test_entra_sends_client_credentials_to_the_token_endpoint():
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "graph-token", "expires_in": 3599})
        return httpx.Response(200, json={"value": [{"id": "u1", "mail": "a@b.c", "accountEnabled": True}]})

    config = IdpConfig(
        kind="microsoft_entra",
        name="E",
        base_url="https://graph.test",
        credentials={"tenant_id": "t1", "client_id": "c1", "client_secret": "very-secret"},
    )
    adapter = EntraAdapter(config, transport=httpx.MockTransport(handler))
    users = [u for page in adapter.iter_users() for u in page]
    assert users[0].email == "a@b.c"
    assert str(seen[0].url) == "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
    assert b"client_secret=very-secret" in seen[0].content
    assert seen[1].headers["Authorization"] == "Bearer graph-token"


def test_time_parsing():
    assert parse_time("2024-05-01T10:00:00Z").isoformat() == "2024-05-01T10:00:00+00:00"
    assert parse_time("2024-05-01T10:00:00.123+02:00").hour == 8
    assert parse_time(1714557600000).year == 2024
    assert parse_time("") is None and parse_time("garbage") is None
    assert retry_after_seconds("3") == 3 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
