"""/access/v1/ leaves the middleware stack early (ApiFastPathMiddleware); the portal does not."""

from __future__ import annotations

import structlog

from telemetry import metrics


def _count(route: str, status: str) -> float:
    return metrics.HTTP_REQUESTS.labels("POST", route, status)._value.get()


def test_a_decision_skips_sessions_and_auth_but_keeps_security_headers_and_metrics(ask, world):
    route = "access/v1/evaluation"
    before = _count(route, "200")
    response = ask("evaluation", world.question(), HTTP_X_REQUEST_ID="pep-req-1")
    assert response.status_code == 200 and response.json()["decision"] is True
    request = response.wsgi_request
    assert not hasattr(request, "session")  # SessionMiddleware never ran
    assert not request.user.is_authenticated  # the bearer key is the caller, not a signed-in user
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "Cookie" not in response.headers.get("Vary", "")
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still ran
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Request-ID"] == "pep-req-1"
    assert _count(route, "200") == before + 1  # MetricsMiddleware, with the route label


def test_a_decision_logs_one_line_with_its_request_id(ask, world, log_lines):
    ask("evaluation", world.question(), HTTP_X_REQUEST_ID="pep-req-2")
    ask("evaluation", b"{not json", HTTP_X_REQUEST_ID="pep-req-3")
    lines = [line for line in log_lines() if line.get("event", "").startswith("request_")]
    assert [(line["event"], line["code"]) for line in lines] == [
        ("request_finished", 200),
        ("request_finished", 400),
    ]
    # A request id of its own, as django-structlog gives (DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID).
    assert lines[0]["request_id"] and lines[0]["request_id"] != lines[1]["request_id"]
    assert lines[0]["request"] == "POST /access/v1/evaluation"
    assert lines[0]["level"] == "info" and lines[1]["level"] == "warning"
    assert "ip" in lines[0]
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks into the next request


def test_unknown_api_paths_and_methods_answer_4xx(client, world):
    assert client.post("/access/v1/nowhere", "{}", content_type="application/json").status_code == 404
    assert client.get("/access/v1/evaluation").status_code == 405
    # Without CommonMiddleware no slash is appended (a POST cannot be redirected anyway): 404, not 500.
    assert client.post("/access/v1/evaluation/", "{}", content_type="application/json").status_code == 404


def test_portal_pages_still_have_sessions_and_the_signed_in_user(client, iam, log_lines):
    client.force_login(iam)
    response = client.get("/")
    assert response.status_code == 200
    request = response.wsgi_request
    assert request.session.session_key
    assert request.user == iam and request.user.is_authenticated
    finished = next(line for line in log_lines() if line.get("event") == "request_finished")
    assert finished["user_id"] == iam.pk  # django-structlog's own middleware, as before
    assert any(line.get("event") == "request_started" for line in log_lines())
