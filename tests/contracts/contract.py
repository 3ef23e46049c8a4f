"""The providers' official response schemas (tests/contracts/*.json) and a validator over them."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

HERE = Path(__file__).parent
PROVIDERS = ("google", "entra", "okta", "github")

# Simulator prefixes serve a few endpoints no description in tests/contracts covers: the OAuth token
# endpoints are specified by RFC 6749 and the providers' identity docs, not their management APIs.
UNDESCRIBED = {
    # https://developers.google.com/identity/protocols/oauth2/service-account#httprest
    ("google", "POST", "/token"),
    # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
    ("entra", "POST", "/{tenant}/oauth2/v2.0/token"),
}


@dataclass(frozen=True, slots=True)
class Operation:
    provider: str
    operation_id: str
    method: str
    path: str
    status: int
    schema: dict | None
    examples: tuple[dict, ...]
    pattern: re.Pattern

    @property
    def label(self) -> str:
        return f"{self.provider} {self.method} {self.path} ({self.operation_id})"


@functools.cache
def contract(provider: str) -> dict:
    return json.loads((HERE / f"{provider}.json").read_text())


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


@functools.cache
def operations(provider: str) -> tuple[Operation, ...]:
    c = contract(provider)
    ops = [
        Operation(
            provider,
            o["operationId"],
            o["method"],
            o["path"],
            o["status"],
            o["schema"],
            tuple(o["examples"]),
            _pattern(o["path"]),
        )
        for o in c["operations"]
    ]
    # literal segments beat parameters: /users/{id} must not swallow /users/{id}/grants, and
    # fixed paths are tried before templates
    return tuple(sorted(ops, key=lambda o: -len(o.path.split("/"))))


def operation(provider: str, method: str, path: str) -> Operation | None:
    for op in operations(provider):
        if op.method == method and op.pattern.match(path):
            return op
    return None


def find(provider: str, operation_id: str) -> Operation:
    return next(o for o in operations(provider) if o.operation_id == operation_id)


@functools.cache
def validator(provider: str, operation_id: str) -> Draft202012Validator:
    op = find(provider, operation_id)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **op.schema}
    schema["$defs"] = contract(provider)["$defs"]
    return Draft202012Validator(schema)


def problems(op: Operation, body: Any, limit: int = 5) -> list[str]:
    """Return why ``body`` does not conform to the operation's success schema (empty: it does)."""
    if op.schema is None:
        return [] if body in (None, b"", "") else ["the description defines no response body"]
    errors = sorted(validator(op.provider, op.operation_id).iter_errors(body), key=lambda e: list(e.path))
    out = []
    for e in errors[:limit]:
        while e.context:  # anyOf: report the closest alternative, not "is not valid under any"
            e = best_match(e.context)
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        out.append(f"{where}: {e.message[:300]}")
    return out


def check(provider: str, method: str, path: str, status: int, body: Any) -> list[str]:
    """Validate one served response; return the problems found, prefixed with the operation."""
    if (provider, method, path) in UNDESCRIBED or any(
        p == provider and m == method and _pattern(t).match(path) for p, m, t in UNDESCRIBED
    ):
        return []
    op = operation(provider, method, path)
    if op is None:
        return [f"{provider} {method} {path}: no operation in tests/contracts/{provider}.json"]
    head = f"{op.label} -> {status}"
    out = []
    if status != op.status:
        out.append(f"{head}: the description answers success with {op.status}")
    out += [f"{head}: {p}" for p in problems(op, body)]
    return out
