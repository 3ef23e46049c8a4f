"""The workflows' health check: email leaves (the mail queue does not pile up)."""

from __future__ import annotations

import dataclasses
import datetime

from django.conf import settings

from telemetry.health import HealthCheck, ServiceUnavailable, ServiceWarning


def mail_queue_depth() -> int:
    """Return how many messages wait in the broker's mail queue."""
    from celery import current_app

    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.default_channel.queue_declare(queue="mail", passive=False, durable=True).message_count


@dataclasses.dataclass
class PendingEmail(HealthCheck):
    """Fewer than LANYARD_HEALTH_MAIL_BACKLOG emails wait in the mail queue."""

    title = "Pending email"
    timeout = datetime.timedelta(seconds=3)

    def run(self) -> None:
        try:
            depth = mail_queue_depth()
        except Exception as exc:
            raise ServiceUnavailable(
                f"Cannot read the mail queue ({type(exc).__name__}): check the Celery broker."
            ) from exc
        if depth > settings.LANYARD_HEALTH_MAIL_BACKLOG:
            raise ServiceWarning(
                f"{depth} emails wait in the `mail` queue "
                f"(threshold {settings.LANYARD_HEALTH_MAIL_BACKLOG}): "
                "start or scale a worker with `-Q mail`, and check EMAIL_URL (the SMTP server's answers "
                "are in the worker's log)."
            )
