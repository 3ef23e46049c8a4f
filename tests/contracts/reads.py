"""Record which fields a parser reads, and check each one against the official schema.

An adapter that reads a field the real API does not send works against a simulator that invents the
field, and silently gets nothing from the real provider. Feeding the parsers a ``Tracked`` example
records every key they look up (``get``, ``[]``, ``in``), so a test can demand that each one is a
property the description documents.
"""

from __future__ import annotations

import re
from typing import Any

from tests.contracts import contract

Path = tuple[str, ...]


class Tracked(dict):
    """A dict that records the path of every key looked up in it or in anything read from it."""

    def __init__(self, data: dict, path: Path, log: set[Path]):
        super().__init__(data)
        self._path = path
        self._log = log

    def _read(self, key: Any) -> None:
        self._log.add((*self._path, str(key)))

    def __getitem__(self, key: Any) -> Any:
        self._read(key)
        return track(dict.__getitem__(self, key), (*self._path, str(key)), self._log)

    def get(self, key: Any, default: Any = None) -> Any:
        self._read(key)
        if dict.__contains__(self, key):
            return track(dict.__getitem__(self, key), (*self._path, str(key)), self._log)
        return default

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return dict.__contains__(self, key)


def track(value: Any, path: Path = (), log: set[Path] | None = None) -> Any:
    log = set() if log is None else log
    if isinstance(value, dict):
        return Tracked(value, path, log)
    if isinstance(value, list):
        return [track(v, (*path, "*"), log) for v in value]
    return value


def tracked(value: Any) -> tuple[Any, set[Path]]:
    """Return ``value`` wrapped for tracking and the set its reads are recorded in."""
    log: set[Path] = set()
    return track(value, (), log), log


def _deref(schema: Any, defs: dict) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def documented(schema: Any, path: Path, defs: dict) -> bool:
    """Whether the description documents ``path`` (keys, ``*`` for array items) below ``schema``."""
    schema = _deref(schema, defs)
    if not path:
        return True
    if not isinstance(schema, dict):
        return False
    if "anyOf" in schema:
        return any(documented(alt, path, defs) for alt in schema["anyOf"])
    key, rest = path[0], path[1:]
    if not schema.keys() - {"examples", "format"}:
        return True  # an open schema ("any" in discovery documents): anything below it is allowed
    if key == "*":
        return "items" in schema and documented(schema["items"], rest, defs)
    props = schema.get("properties") or {}
    if key in props:
        return documented(props[key], rest, defs)
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        if re.search(pattern, key):
            return documented(sub, rest, defs)
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return False
    return True if extra is True else documented(extra, rest, defs)


def undocumented_reads(provider: str, operation_id: str, reads: set[Path], *, at: Path = ()) -> list[str]:
    """Return the fields read (below ``at`` in the operation's response) that the description lacks."""
    op = contract.find(provider, operation_id)
    defs = contract.contract(provider)["$defs"]
    return sorted(".".join(p) for p in reads if not documented(op.schema, (*at, *p), defs))
