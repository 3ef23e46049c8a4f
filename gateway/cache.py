"""The gateway's short-lived, in-process memory of token checks, decisions and endpoint settings.

Every gateway call used to cost two SQL reads for the token, one for the endpoint and an HTTP round
trip to the decision point. Within ``LANYARD_GATEWAY_CACHE_SECONDS`` (default 1 s) of a first answer,
the same token, the same question and the same endpoint are answered from memory, so:

- a revoked grant, a suspended connector, an offboarded person or a changed policy still takes effect
  within that bound at every gateway process (the issue's "≤ 1 s"), with nothing to configure;
- ``0`` turns the memory off (every call asks, as before).

Entries carry tags (the person's e-mail, the connector id) so that :meth:`TTLCache.forget` can drop
everything about a person or a connector at once when the gateway learns of a change sooner: its SSF
listener (``gateway/ssf.py``) does so on each of Lanyard's SETs, and while those arrive an entry may be
kept for ``LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS`` instead.
Bounded: the least recently used entries beyond ``size`` go first. Nothing here is a secret: token
entries are keyed by the token's SHA-256, never by the token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

from django.conf import settings

MISSING = object()


_signals_live_until = 0.0


def signals_live_for(seconds: float) -> None:
    """The SSF listener heard from its stream: signalled entries may be trusted for ``seconds`` more."""
    global _signals_live_until
    _signals_live_until = time.monotonic() + seconds


def signals_lost() -> None:
    global _signals_live_until
    _signals_live_until = 0.0


def signals_live() -> bool:
    return time.monotonic() < _signals_live_until


def base_ttl() -> float:
    return float(settings.LANYARD_GATEWAY_CACHE_SECONDS)


def ttl() -> float:
    """How long a new entry may be kept: longer while SETs are arriving (they make it forget)."""
    base = base_ttl()
    if base > 0 and signals_live():
        return max(base, float(settings.LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS))
    return base


class TTLCache:
    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[float, float, Any, frozenset]] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return MISSING
        stored, expires, value, _tags = entry
        now = time.monotonic()
        # Past its time, or kept long on the strength of a stream that has since gone quiet.
        if now >= expires or (not signals_live() and now - stored >= base_ttl()):
            self.entries.pop(key, None)
            return MISSING
        return value

    def put(self, key: Hashable, value: Any, tags: Iterable[Hashable] = ()) -> None:
        seconds = ttl()
        if seconds <= 0:
            return
        now = time.monotonic()
        self.entries[key] = (now, now + seconds, value, frozenset(tags))
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def forget(self, *tags: Hashable) -> int:
        """Drop every entry carrying any of ``tags``; return how many."""
        wanted = set(tags)
        gone = [key for key, entry in self.entries.items() if entry[3] & wanted]
        for key in gone:
            del self.entries[key]
        return len(gone)

    def clear(self) -> None:
        self.entries.clear()
