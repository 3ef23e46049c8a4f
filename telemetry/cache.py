"""Cache backends that count what they do: Django's own backends, subclassed, nothing else changed.

``lanyard.settings`` swaps each configured backend for its counted twin here (the URL in
``CACHE_URL`` still picks the kind), so every cache read is a hit or a miss in
``lanyard_cache_gets_total`` and every write or delete a ``lanyard_cache_operations_total``, labelled
by backend kind (``redis``, ``filebased``, ``locmem``, ``db``, ``dummy``): bounded labels, never a key.
A backend this module does not know stays as configured, uncounted.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import db, dummy, filebased, locmem, redis
from django.core.cache.backends.base import BaseCache

from . import metrics

_MISSING = object()


class _Counted:
    """Mixin: count gets (hit/miss) and writes around the backend's own methods."""

    kind = "cache"

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        value = super().get(key, _MISSING, version=version)  # type: ignore[misc]
        if value is _MISSING:
            metrics.CACHE_GETS.labels(self.kind, "miss").inc()
            return default
        metrics.CACHE_GETS.labels(self.kind, "hit").inc()
        return value

    def _inherits(self, name: str) -> bool:
        """True when the backend keeps BaseCache's ``name``, which loops over the counted single-key call."""
        return getattr(type(self).__mro__[2], name) is getattr(BaseCache, name)

    def get_many(self, keys: Any, version: Any = None) -> dict[Any, Any]:
        keys = list(keys)
        found = super().get_many(keys, version=version)  # type: ignore[misc]
        if self._inherits("get_many"):
            return found
        if found:
            metrics.CACHE_GETS.labels(self.kind, "hit").inc(len(found))
        if len(keys) > len(found):
            metrics.CACHE_GETS.labels(self.kind, "miss").inc(len(keys) - len(found))
        return found

    def _count(self, operation: str, amount: int = 1) -> None:
        metrics.CACHE_OPERATIONS.labels(self.kind, operation).inc(amount)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self._count("set")
        return super().set(*args, **kwargs)  # type: ignore[misc]

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._count("add")
        return super().add(*args, **kwargs)  # type: ignore[misc]

    def set_many(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._inherits("set_many"):
            self._count("set", len(data))
        return super().set_many(data, *args, **kwargs)  # type: ignore[misc]

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._count("delete")
        return super().delete(*args, **kwargs)  # type: ignore[misc]

    def delete_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        keys = list(keys)
        if not self._inherits("delete_many"):
            self._count("delete", len(keys))
        return super().delete_many(keys, *args, **kwargs)  # type: ignore[misc]

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        self._count("incr")
        return super().incr(*args, **kwargs)  # type: ignore[misc]

    def touch(self, *args: Any, **kwargs: Any) -> Any:
        self._count("touch")
        return super().touch(*args, **kwargs)  # type: ignore[misc]


class RedisCache(_Counted, redis.RedisCache):
    kind = "redis"


class FileBasedCache(_Counted, filebased.FileBasedCache):
    kind = "filebased"


class LocMemCache(_Counted, locmem.LocMemCache):
    kind = "locmem"


class DatabaseCache(_Counted, db.DatabaseCache):
    kind = "db"


class DummyCache(_Counted, dummy.DummyCache):
    kind = "dummy"
