"""The web side: request and SQL metrics, the protected ``/metrics`` view and the health views."""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse, JsonResponse
from health_check.views import HealthCheckView

from . import health, metrics


class MetricsMiddleware:
    """Count and time every request by route (the URL pattern, never the raw path: bounded labels)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match else "unmatched"
        metrics.HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


def _sql_metrics(alias: str) -> Callable[..., Any]:
    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        except Exception:
            metrics.DB_ERRORS.labels(alias).inc()
            raise
        finally:
            metrics.DB_QUERIES.labels(alias).inc()
            metrics.DB_LATENCY.labels(alias).observe(time.perf_counter() - start)

    return wrapper


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if not any(getattr(w, "lanyard_metrics", False) for w in connection.execute_wrappers):
        wrapper = _sql_metrics(connection.alias)
        wrapper.lanyard_metrics = True  # type: ignore[attr-defined]
        connection.execute_wrappers.append(wrapper)


connection_created.connect(_on_connection_created, dispatch_uid="telemetry.sql_metrics")


# ------------------------------------------------------------------------------------------- /metrics


def metrics_client_allowed(authorization: str, remote_addr: str) -> bool:
    """True for the scraper's bearer token (LANYARD_METRICS_TOKEN) or an allowed client network."""
    token = settings.LANYARD_METRICS_TOKEN
    if token and authorization.startswith("Bearer "):
        return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(n, strict=False) for n in settings.LANYARD_METRICS_ALLOWED_NETWORKS
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition for a scraper with the bearer token or from an allowed network."""
    authorization = request.headers.get("Authorization", "")
    if not metrics_client_allowed(authorization, request.META.get("REMOTE_ADDR", "")):
        response = HttpResponse(
            METRICS_REFUSED, status=metrics_refused_status(), content_type="text/plain; charset=utf-8"
        )
        if settings.LANYARD_METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from prometheus_client import CONTENT_TYPE_LATEST

    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


METRICS_REFUSED = (
    "Metrics need `Authorization: Bearer <LANYARD_METRICS_TOKEN>` or a client address in "
    "LANYARD_METRICS_ALLOWED_NETWORKS.\n"
)


def metrics_refused_status() -> int:
    return 401 if settings.LANYARD_METRICS_TOKEN else 403


# --------------------------------------------------------------------------------------- health views


class GroupHealthView(HealthCheckView):
    """django-health-check's view over one registry group, read at request time (apps register late)."""

    group = health.READY

    def get_checks(self):
        return health.instantiate(self.group)

    def render_to_response_json(self, status):
        return JsonResponse(
            {
                "status": "failing" if any(r.error for r in self.results) else "ok",
                "checks": [
                    {
                        "check": type(r.check).__name__,
                        "title": health.title(r.check),
                        "ok": r.error is None,
                        "severity": None if r.error is None else r.error.message_type.lower(),
                        "message": "OK" if r.error is None else r.error.message,
                        "took_ms": round(r.time_taken * 1000, 1),
                    }
                    for r in self.results
                ],
            },
            status=status,
        )


class LivenessView(GroupHealthView):
    """The process answers: no dependency is consulted (a restart would not fix them)."""

    group = "live"
