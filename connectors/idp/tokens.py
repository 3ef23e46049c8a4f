"""Bearer tokens from a provider's token endpoint, cached per adapter and shared by its threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenCache:
    """A bearer token fetched on demand, shared by threads, refreshed shortly before it expires."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], margin: float = 60.0):
        self._fetch = fetch  # returns (token, seconds until expiry)
        self._margin = margin
        self._lock = threading.Lock()
        self._token = ""
        self._expires = 0.0

    def get(self) -> str:
        with self._lock:
            if not self._token or time.monotonic() >= self._expires:
                token, ttl = self._fetch()
                self._token = token
                self._expires = time.monotonic() + max(0.0, ttl - self._margin)
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = ""

    @property
    def current(self) -> str:
        return self._token
