"""Request/response types and cursor helpers shared by the provider handlers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode


@dataclass(slots=True)
class Req:
    method: str
    path: str  # below the provider prefix, e.g. /v1.0/users
    query: dict[str, str]
    headers: Any
    body: bytes
    base: str  # absolute URL of the provider prefix, for next links
    query_all: dict[str, list[str]] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


@dataclass(slots=True)
class Resp:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, resp: Resp):
        self.resp = resp


def encode_cursor(page: int, pos: int) -> str:
    return base64.urlsafe_b64encode(f"{page}.{pos}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> tuple[int, int] | None:
    if not token:
        return 1, 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        page, pos = raw.split(".")
        return int(page), int(pos)
    except (ValueError, UnicodeDecodeError):
        return None


def page_of(query: dict[str, str]) -> int:
    for key in ("pageToken", "$skiptoken", "after"):
        if key in query:
            cur = decode_cursor(query[key])
            return cur[0] if cur else 1
    if "page" in query and query["page"].isdigit():
        return int(query["page"])
    return 1


def next_url(base: str, path: str, query: dict[str, str], **changes: Any) -> str:
    q = {**query, **{k: str(v) for k, v in changes.items()}}
    return f"{base}{path}?{urlencode(q, safe='$')}"


def scan(start: int, limit: int, total: int, ok: Any) -> tuple[list[int], int | None]:
    """Take up to ``limit`` positions from ``start`` passing ``ok``; and where the next page starts."""
    out: list[int] = []
    pos = start
    while pos < total and len(out) < limit:
        if ok(pos):
            out.append(pos)
        pos += 1
    while pos < total and not ok(pos):
        pos += 1
    return out, (pos if pos < total else None)


def bounded(value: str | None, default: int, maximum: int) -> int:
    try:
        n = int(value) if value else default
    except ValueError:
        n = default
    return max(1, min(n, maximum))


def bearer(headers: Any) -> str:
    auth = headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") else ""
