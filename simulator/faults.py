"""Fault switches: make the next N matching requests fail the way the real provider fails."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

KINDS = (
    "rate_limit",  # the provider's own throttling answer (variant picks among Google/GitHub flavours)
    "server_error",  # 5xx (status, default 500)
    "timeout",  # hold the response for ``delay`` seconds (default 5), longer than a client timeout
    "slow",  # hold the response for ``delay`` seconds, then answer normally
    "malformed",  # 200 with a body that is not JSON
    "unauthorized",  # 401 in the provider's error shape
    "forbidden",  # 403 that is not a rate limit (missing scope / permission)
    "drop",  # close the connection without answering
    "delete_204",  # a DELETE of something already gone answers 204 instead of 404
)


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    provider: str = "*"  # google | entra | okta | github | *
    count: int | None = 1  # None: until cleared
    path: str = ""  # substring the request path must contain
    method: str = ""  # GET/POST/DELETE..., empty for any
    page: int | None = None  # only the Nth page (1-based) of a paged listing
    status: int | None = None
    delay: float | None = None
    retry_after: float | None = None
    variant: str = ""  # google: rateLimitExceeded|userRateLimitExceeded|429|503; github: primary|secondary
    fired: int = 0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Fault] = []
        self._next = 1

    def add(self, **spec) -> Fault:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        allowed = set(Fault.__dataclass_fields__) - {"id", "fired"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        with self._lock:
            fault = Fault(id=self._next, **spec)
            self._next += 1
            self._items.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._items]

    def take(
        self, provider: str, method: str, path: str, page: int, *, kinds: tuple[str, ...] = ()
    ) -> Fault | None:
        """Return (and use up one count of) the first fault matching this request."""
        with self._lock:
            for f in self._items:
                if kinds and f.kind not in kinds:
                    continue
                if not kinds and f.kind == "delete_204":
                    continue
                if f.provider not in ("*", provider):
                    continue
                if f.method and f.method.upper() != method:
                    continue
                if f.path and f.path not in path:
                    continue
                if f.page is not None and f.page != page:
                    continue
                if f.count is not None:
                    if f.count <= 0:
                        continue
                    f.count -= 1
                f.fired += 1
                if f.count == 0:
                    self._items.remove(f)
                return f
        return None
