"""Queue background work without turning a broker outage into an error for the person.

Services queue IdP calls (revocation, provisioning) and email with ``transaction.on_commit``: by then
the state change is committed, and the sweeps (``connectors.sweep_revoking``,
``governance.sweep_provisioning``) finish whatever is left. So a broker that cannot be reached is
logged and noted, never raised: the view tells the person their step was accepted and will reach the
IdP when the worker is back (``deferred()``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kombu.exceptions import OperationalError as KombuOperationalError

logger = logging.getLogger(__name__)

# What .delay()/apply_async raise when the broker is unreachable (kombu wraps most transports' errors).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
    OSError,
)
try:  # redis-py's own connection errors, should one escape kombu's wrapping
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    BROKER_ERRORS += (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover - redis is a dependency, but the transport is configurable
    pass

_CREDENTIALS = re.compile(r"(\w+://)[^@/\s]*@")
_deferred: ContextVar[list[str] | None] = ContextVar("lanyard_deferred_jobs", default=None)


def _safe(exc: BaseException) -> str:
    """The error without credentials a broker URL may carry (redis://:password@host)."""
    return _CREDENTIALS.sub(r"\1[redacted]@", f"{type(exc).__name__}: {exc}")[:300]


def enqueue_once(task: Any, key: str, *, hold: float, countdown: float | None = None) -> None:
    """Queue ``task`` unless a run is already asked for: a burst of triggers queues one run.

    ``key`` marks the run asked for, in the shared cache, for at most ``hold`` seconds. The task deletes
    it before it reads its work, so whatever commits meanwhile asks for the next run. A send that fails
    gives the mark back and raises, so the next trigger (or the beat safety net) asks again.
    """
    from django.core.cache import cache

    if cache.add(key, 1, timeout=hold):
        try:
            task.apply_async(countdown=countdown)
        except Exception:
            cache.delete(key)
            raise


def enqueue(task: Any, *args: Any, what: str, **kwargs: Any) -> bool:
    """Send ``task`` to the broker; on a broker error log a warning, note it and return False."""
    if task.app.conf.task_always_eager:
        # Inline: no broker involved, and the task's own errors must reach the caller.
        task.apply_async(args=args, kwargs=kwargs)
        return True
    try:
        task.apply_async(args=args, kwargs=kwargs)
    except BROKER_ERRORS as exc:
        logger.warning("could not queue %s (%s): %s; left for the sweep", what, task.name, _safe(exc))
        noted = _deferred.get()
        if noted is not None:
            noted.append(what)
        return False
    return True


@contextmanager
def deferred() -> Iterator[list[str]]:
    """Collect what could not be queued while the block runs (a view wraps its service call)."""
    token = _deferred.set([])
    try:
        yield _deferred.get()  # type: ignore[misc]
    finally:
        _deferred.reset(token)


DEFERRED_MESSAGE = "It is accepted; it will reach the identity provider when the background worker is back."
