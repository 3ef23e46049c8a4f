"""Small helpers of the sync: a bitmap of primary keys and value normalisers."""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from .. import risk


class PkSet:
    """A set of positive integer primary keys as a bitmap: one bit a key, however many are added."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, pk: int) -> None:
        byte, bit = divmod(pk, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1 + len(self._bits) // 2))
        if not self._bits[byte] & (1 << bit):
            self._bits[byte] |= 1 << bit
            self.count += 1

    def __contains__(self, pk: int) -> bool:
        byte, bit = divmod(pk, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))

    def __len__(self) -> int:
        return self.count


def _aware(value: datetime | None) -> datetime | None:
    if value is None or timezone.is_aware(value):
        return value
    return value.replace(tzinfo=UTC)


def _get(mapping: dict[str, int], key: str | None) -> int | None:
    return mapping.get(key) if key else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip())) if value else None
    except ValueError:
        return None


def _json(value: Any) -> Any:
    """Return ``value`` as it reads back from a JSON column, so comparisons are exact."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=4096)
def _assess(scopes: tuple[str, ...], tenant_wide: bool) -> risk.Assessment:
    return risk.assess(scopes, tenant_wide=tenant_wide)


def _valid(choice: str, choices: Collection[str], default: str) -> str:
    return choice if choice in choices else default
