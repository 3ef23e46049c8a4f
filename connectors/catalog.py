"""The catalog of known AI apps: which ids in which kind of source are one product.

The shipped catalog is ``connectors/data/catalog.json``; ``catalog_import`` loads it (or a newer file
IAM uploads in the admin, or ``manage.py catalog_import FILE``) into ``CatalogEntry`` rows, which is
what a sync reads. Matching is by id only (OAuth client id, Entra app id, Okta client id, GitHub App
``github-app:<slug>``), never by display name: anybody can call their OAuth app "ChatGPT".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from httpapi.body import BodyError, decode_json

from .models import CatalogEntry, Connector, IdentitySource, Risk

SHIPPED = Path(__file__).resolve().parent / "data" / "catalog.json"
FORMAT = "lanyard-catalog/1"
KINDS = tuple(IdentitySource.Kind.values)


class CatalogError(ValueError):
    """A catalog file that cannot be imported; nothing was changed."""


@dataclass(frozen=True)
class CatalogApp:
    slug: str
    name: str
    publisher: str = ""
    kind: str = Connector.Kind.OAUTH_APP
    risk: str = Risk.MEDIUM
    homepage: str = ""
    ids: dict[str, list[str]] = field(default_factory=dict)
    mcp_server_urls: list[str] = field(default_factory=list)


def _id_lists(value: Any, where: str) -> dict[str, list[str]]:
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: ids must be an object keyed by source kind.")
    out: dict[str, list[str]] = {}
    for kind, ids in value.items():
        if kind not in KINDS:
            raise CatalogError(f"{where}: unknown source kind '{kind}' (one of {', '.join(KINDS)}).")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i.strip() for i in ids):
            raise CatalogError(f"{where}: ids of '{kind}' must be a list of non-empty strings.")
        out[kind] = [i.strip() for i in ids]
    return out


def parse(data: Any) -> list[CatalogApp]:
    """Validate a decoded catalog document and return its apps; raise CatalogError on the first problem."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("apps"), list):
        raise CatalogError(f'Not a catalog: expected an object with "format": "{FORMAT}" and a list "apps".')
    apps: list[CatalogApp] = []
    owner: dict[tuple[str, str], str] = {}
    for n, raw in enumerate(data["apps"]):
        where = f"apps[{n}]"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: must be an object.")
        slug, name = raw.get("slug"), raw.get("name")
        if (
            not isinstance(slug, str)
            or not slug
            or not slug.replace("-", "").isalnum()
            or slug != slug.lower()
        ):
            raise CatalogError(f"{where}: slug must be lower-case letters, digits and dashes.")
        if not isinstance(name, str) or not name.strip():
            raise CatalogError(f"{where} ({slug}): name is required.")
        kind = raw.get("kind", Connector.Kind.OAUTH_APP)
        if kind not in Connector.Kind.values:
            raise CatalogError(f"{where} ({slug}): unknown kind '{kind}'.")
        risk = raw.get("risk", Risk.MEDIUM)
        if risk not in Risk.values:
            raise CatalogError(f"{where} ({slug}): unknown risk '{risk}'.")
        ids = _id_lists(raw.get("ids"), f"{where} ({slug})")
        # The bundled simulator's ids for the product (make run), kept apart in the file for clarity.
        for kind_, extra in _id_lists(raw.get("simulated_tenant_ids"), f"{where} ({slug})").items():
            ids[kind_] = [*ids.get(kind_, []), *(i for i in extra if i not in ids.get(kind_, []))]
        for kind_, values in ids.items():
            for value in values:
                other = owner.setdefault((kind_, value), slug)
                if other != slug:
                    raise CatalogError(
                        f"{where} ({slug}): id '{value}' of {kind_} is also claimed by '{other}'."
                    )
        urls = raw.get("mcp_server_urls") or []
        if not isinstance(urls, list) or not all(
            isinstance(u, str) and u.startswith("https://") for u in urls
        ):
            raise CatalogError(f"{where} ({slug}): mcp_server_urls must be a list of https URLs.")
        apps.append(
            CatalogApp(
                slug=slug,
                name=name.strip()[:200],
                publisher=str(raw.get("publisher") or "")[:200],
                kind=kind,
                risk=risk,
                homepage=str(raw.get("homepage") or "")[:300],
                ids={k: v for k, v in ids.items() if v},
                mcp_server_urls=urls,
            )
        )
    if len({a.slug for a in apps}) != len(apps):
        raise CatalogError("Two apps share a slug.")
    return apps


def load(raw: bytes | str) -> list[CatalogApp]:
    """Decode and validate a catalog file's bytes."""
    try:
        # The hardened reader's decoder: invalid UTF-8, deep nesting and malformed JSON are refused.
        value = decode_json(raw.encode() if isinstance(raw, str) else raw)
    except BodyError as exc:
        raise CatalogError(f"Not valid JSON: {exc.message}") from None
    return parse(value)


def shipped() -> list[CatalogApp]:
    """Return the catalog shipped with this release."""
    return load(SHIPPED.read_bytes())


def catalog_import(*, apps: list[CatalogApp], actor: Any, origin: str = "") -> dict[str, int]:
    """Create or update catalog entries by slug (entries not in the file are kept); one audit event."""
    now = timezone.now()
    with transaction.atomic():
        existing = {
            e.slug: e
            for e in CatalogEntry.objects.select_for_update().filter(slug__in=[a.slug for a in apps])
        }
        new, changed = [], []
        fields = ("name", "publisher", "kind", "risk", "homepage", "ids", "mcp_server_urls")
        for app in apps:
            values = {f: getattr(app, f) for f in fields}
            row = existing.get(app.slug)
            if row is None:
                new.append(CatalogEntry(slug=app.slug, updated_at=now, **values))
            elif any(getattr(row, f) != v for f, v in values.items()):
                for f, v in values.items():
                    setattr(row, f, v)
                row.updated_at = now
                changed.append(row)
        CatalogEntry.objects.bulk_create(new)
        CatalogEntry.objects.bulk_update(changed, [*fields, "updated_at"])
        counts = {"apps": len(apps), "new": len(new), "changed": len(changed)}
        audit.record("catalog.imported", actor=actor, data={**counts, "origin": origin[:200]})
    return counts


class Matcher:
    """Answer "which catalog entry is this id?" for one kind of source, from one query."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_id: dict[str, CatalogEntry] = {}
        self._by_url: dict[str, CatalogEntry] = {}
        for entry in CatalogEntry.objects.all():
            for value in (entry.ids or {}).get(kind, []):
                self._by_id.setdefault(value, entry)
            for url in entry.mcp_server_urls or []:
                self._by_url.setdefault(url.rstrip("/").lower(), entry)

    def entry_for(self, client_id: str) -> CatalogEntry | None:
        return self._by_id.get(client_id) or self._by_url.get(client_id.rstrip("/").lower())
