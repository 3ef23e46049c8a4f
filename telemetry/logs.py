"""Structured logs with structlog: JSON lines in production, readable lines in the demo.

Every line, from structlog or from the standard library (Django, Celery, httpx), goes through the
same processors, so the context bound by django-structlog (``request_id``, ``user_id``, ``ip``; in a
worker ``task_id`` and the ``request_id`` of the web request that queued the task) and by Lanyard's
own code (``sync_run_id``, ``source``) lands on every line, and :func:`redact` runs last before
rendering so no query string (attestation links carry signed tokens) or secret-named field is written.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(passw|secret|token|authori[sz]ation|cookie|api_?key|credential|signature)", re.I)
REDACTED = "[redacted]"


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop query strings from request lines and mask fields whose names say they hold a secret."""
    for key, value in list(event.items()):
        if hasattr(value, "get_full_path") and hasattr(value, "method"):
            # Django's loggers pass the request object itself; its repr holds the query string.
            event[key] = f"{value.method} {value.path}"
        elif key in ("request", "path", "url") and isinstance(value, str) and "?" in value:
            event[key] = value.split("?", 1)[0] + "?" + REDACTED
        elif key not in ("event", "request_id", "task_id", "correlation_id") and _SECRET_KEY.search(key):
            event[key] = REDACTED
    return event


_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """Return Django's LOGGING dict: one console handler, rendered as JSON or as readable lines."""
    renderer = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": _SHARED,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    redact,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # Beat's and the worker's own loggers keep propagating to the root handler.
            "celery": {"level": level},
            # A failing check is on the health page and in its JSON; probes come every few seconds,
            # so only a check that crashed (logged at ERROR with its traceback) belongs in the log.
            "health_check": {"level": "ERROR"},
        },
    }


def configure_structlog() -> None:
    """Send structlog's events through the standard library, to the formatter above."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
