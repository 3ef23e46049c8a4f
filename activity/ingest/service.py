"""Resolving a validated batch to the register and recording it in the chain.

A batch is all-or-nothing: every event is validated (and its identity source looked up) before
anything is written. Each event is then resolved in bulk, a fixed number of queries per batch:

- actor → Identity, by email or by (source, external id); an unknown person is created as an
  unsourced ``unverified`` Identity and flagged, never dropped;
- device → Device by id; unknown devices likewise;
- connector → via ConnectorApp (source + client id) or Connector.mcp_server_url; an unknown client
  becomes a ``discovered`` (shadow) Connector, with a ConnectorApp when a source is named, and a
  ``connector.discovered`` audit event;
- grant → the identity's active grant on that connector, if any.

Idempotency: an event's chain ``external_id`` is ``<ingest key prefix>:<event id>``, so ids only
need to be unique per gateway key and a retried batch never duplicates; a gateway that moves to a
new key starts a new id space.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlsplit

import msgspec
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from audit.chain import lock_head
from audit.models import IngestKey
from audit.services import event_template, event_values, external_ids_recorded, record_prepared, values_in
from connectors.models import Connector, ConnectorApp, Device, Grant, Identity, IdentitySource

from ..usage import schedule_rollup
from .validation import ErrorList, Event, IngestRejected

logger = logging.getLogger(__name__)


_Count = Annotated[int, msgspec.Meta(ge=0)]


class IngestResult(msgspec.Struct):
    """What became of an accepted batch; also the body of the 200 answer."""

    received: Annotated[_Count, msgspec.Meta(description="Events in the batch.")] = 0
    accepted: Annotated[_Count, msgspec.Meta(description="Events newly recorded in the chain.")] = 0
    duplicates: Annotated[
        _Count,
        msgspec.Meta(description="Events whose id this key had sent before: not recorded twice."),
    ] = 0
    unverified_identities: Annotated[
        _Count, msgspec.Meta(description="Events whose person no identity source knows (kept, flagged).")
    ] = 0
    unverified_devices: Annotated[
        _Count, msgspec.Meta(description="Events whose device no identity source knows (kept, flagged).")
    ] = 0
    discovered_connectors: Annotated[
        _Count, msgspec.Meta(description="Unknown clients recorded as new discovered (shadow) connectors.")
    ] = 0


# ------------------------------------------------------------------------------------ resolution


def _sources(events: list[Event]) -> dict[str, IdentitySource]:
    """Map each named source (a source's name, or a kind that only one source has) to the source."""
    names = {e.actor_source for e in events if e.actor_source} | {
        e.connector_source for e in events if e.connector_source
    }
    if not names:
        return {}
    found: dict[str, IdentitySource] = {}
    by_kind: dict[str, list[IdentitySource]] = {}
    for source in IdentitySource.objects.filter(Q(name__in=names) | Q(kind__in=names)):
        if source.name in names:
            found[source.name] = source
        by_kind.setdefault(source.kind, []).append(source)
    for kind, sources in by_kind.items():
        if kind in names and kind not in found and len(sources) == 1:
            found[kind] = sources[0]
    return found


def _check_sources(events: list[Event], sources: dict[str, IdentitySource]) -> None:
    errors = ErrorList()
    for e in events:
        for path, name in (("actor.source", e.actor_source), ("connector.source", e.connector_source)):
            if name and name not in sources:
                errors.add(e.index, path, f"No identity source named '{name}' (give its name or kind).")
    if errors.items:
        raise IngestRejected(errors.items)


def _unsourced_identity_key(e: Event) -> str:
    return f"email:{e.email.lower()}" if e.email else f"{e.actor_source}:{e.actor_external_id}"


class Who(NamedTuple):  # a tuple: a thousand are made per batch, and tuples are cheapest
    pk: int
    email: str
    unverified: bool


class Seen(NamedTuple):
    pk: int
    unverified: bool


def _identities(
    events: list[Event],
    sources: dict[str, IdentitySource],
    now: dt.datetime,
    result: IngestResult,
    *,
    create: bool,
) -> dict[int, Who]:
    """Return each event's identity; ``create`` makes the unknown ones, else they are left out."""
    lowered = {e.email.lower() for e in events if e.email}
    emails = lowered | {e.email for e in events if e.email}
    pairs = {(sources[e.actor_source].pk, e.actor_external_id) for e in events if not e.email}
    unsourced = {_unsourced_identity_key(e) for e in events}
    # One statement, but a UNION rather than an OR, so each part uses its own index (an OR across
    # email and external id reads the whole table).
    columns = ("pk", "source_id", "external_id", "email", "unverified", "status")
    identities = Identity.objects.order_by()
    parts = [identities.filter(Q(source__isnull=True) & values_in("external_id", unsourced))]
    if emails:
        parts.append(identities.filter(values_in("email", emails)))
    if pairs:
        parts.append(
            identities.filter(
                Q(source_id__in={p[0] for p in pairs}) & values_in("external_id", {p[1] for p in pairs})
            )
        )
    first, *rest = (part.values_list(*columns) for part in parts)
    # Verified before unverified, active first, oldest first: the best match wins for an email.
    rows = sorted(first.union(*rest, all=True) if rest else first, key=lambda r: (r[4], r[5], r[0]))
    by_email: dict[str, Who] = {}
    by_pair: dict[tuple[int, str], Who] = {}
    by_key: dict[str, Who] = {}
    for pk, source_id, external_id, email, unverified, _ in rows:
        who = Who(pk, email, unverified)
        if source_id is None:
            by_key.setdefault(external_id, who)
        by_email.setdefault(email.lower(), who)
        by_pair.setdefault((source_id, external_id), who)
    # An IdP may keep the case people typed (Emma.Jones@Acme.com) where a gateway sends another:
    # what the exact match missed is looked up once more, case-insensitively, through the
    # lower(email) index. A batch of known people skips this query.
    unmatched = {email for email in lowered if email not in by_email}
    if unmatched:
        rest = (
            identities.alias(email_lower=Lower("email"))
            .filter(email_lower__in=unmatched)
            .values_list(*columns)
        )
        for pk, _, _, email, unverified, _ in sorted(rest, key=lambda r: (r[4], r[5], r[0])):
            by_email.setdefault(email.lower(), Who(pk, email, unverified))

    def find(e: Event) -> Who | None:
        if e.email:
            return by_email.get(e.email.lower()) or by_key.get(_unsourced_identity_key(e))
        return by_pair.get((sources[e.actor_source].pk, e.actor_external_id)) or by_key.get(
            _unsourced_identity_key(e)
        )

    if not create:
        return {e.index: who for e in events if (who := find(e)) is not None}
    new: dict[str, Identity] = {}
    for e in events:
        if find(e) is None and _unsourced_identity_key(e) not in new:
            new[_unsourced_identity_key(e)] = Identity(
                source=None,
                external_id=_unsourced_identity_key(e),
                email=e.email.lower(),
                name=e.actor_name,
                unverified=True,
                first_seen=now,
                last_seen=now,
            )
    if new:
        Identity.objects.bulk_create(new.values())
        by_key.update({key: Who(i.pk, i.email, True) for key, i in new.items()})
        result.unverified_identities = len(new)
    return {e.index: find(e) for e in events}


def _devices(
    events: list[Event], identities: dict[int, Who], now: dt.datetime, result: IngestResult, *, create: bool
) -> dict[int, Seen]:
    """Return each event's device; ``create`` makes the unknown ones (``identities`` own them)."""
    ids = {e.device_id for e in events if e.device_id}
    if not ids:
        return {}
    found: dict[str, Seen] = {}
    rows = (
        Device.objects.filter(values_in("external_id", ids))
        .order_by("unverified", "pk")
        .values_list("pk", "external_id", "unverified")
    )
    for pk, external_id, unverified in rows:
        found.setdefault(external_id, Seen(pk, unverified))
    if not create:
        return {e.index: found[e.device_id] for e in events if e.device_id in found}
    new: dict[str, Device] = {}
    for e in events:
        if e.device_id and e.device_id not in found and e.device_id not in new:
            new[e.device_id] = Device(
                source=None,
                external_id=e.device_id,
                name=e.device["name"],
                platform=e.device["platform"],
                managed=e.device["managed"],
                unverified=True,
                owner_id=identities[e.index].pk,
                first_seen=now,
                last_seen=now,
            )
    if new:
        Device.objects.bulk_create(new.values())
        found.update({key: Seen(d.pk, True) for key, d in new.items()})
        result.unverified_devices = len(new)
    return {e.index: found[e.device_id] for e in events if e.device_id}


def _connector_name(e: Event) -> str:
    if e.connector_name:
        return e.connector_name
    if e.mcp_server_url:
        return f"MCP server {urlsplit(e.mcp_server_url).netloc}"[:200]
    return e.client_id[:200]


def _connectors(
    events: list[Event],
    sources: dict[str, IdentitySource],
    now: dt.datetime,
    key: IngestKey,
    discovered: list[dict[str, Any]],
    *,
    create: bool,
) -> tuple[dict[int, Connector], dict[int, IdentitySource]]:
    """Return each event's connector and source; ``create`` discovers the unknown ones."""
    pairs = {(sources[e.connector_source].pk, e.client_id) for e in events if e.client_id}
    urls = {e.mcp_server_url for e in events if e.mcp_server_url}
    by_pair: dict[tuple[int, str], Connector] = {}
    by_url: dict[str, Connector] = {}
    if pairs:
        apps = ConnectorApp.objects.filter(
            source_id__in={p[0] for p in pairs}, client_id__in={p[1] for p in pairs}
        ).select_related("connector")
        for app in apps:
            by_pair[(app.source_id, app.client_id)] = app.connector
    if urls:
        # A connector IAM merged into another one forwards its MCP server's events to the survivor.
        for connector in (
            Connector.objects.filter(mcp_server_url__in=urls).select_related("merged_into").order_by("pk")
        ):
            by_url.setdefault(connector.mcp_server_url, connector.merged_into or connector)

    def pair(e: Event) -> tuple[int, str]:
        return (sources[e.connector_source].pk, e.client_id)

    event_sources = {e.index: sources[e.connector_source] for e in events if e.client_id}
    if not create:
        found = {
            e.index: by_pair.get(pair(e)) if e.client_id else by_url.get(e.mcp_server_url) for e in events
        }
        return {index: c for index, c in found.items() if c is not None}, event_sources
    new_connectors: dict[Any, tuple[Connector, IdentitySource | None]] = {}
    new_apps: list[ConnectorApp] = []
    for e in events:
        lookup = pair(e) if e.client_id else e.mcp_server_url
        if (by_pair.get(lookup) if e.client_id else by_url.get(lookup)) or lookup in new_connectors:
            continue
        source = sources[e.connector_source] if e.client_id else None
        connector = Connector(
            name=_connector_name(e),
            kind=Connector.Kind.OAUTH_APP if e.client_id else Connector.Kind.MCP_SERVER,
            status=Connector.Status.DISCOVERED,
            mcp_server_url=e.mcp_server_url,
            discovered_at=now,
            status_changed_at=now,
            created_at=now,
        )
        new_connectors[lookup] = (connector, source)
        if source is not None:
            new_apps.append(
                ConnectorApp(
                    connector=connector,
                    source=source,
                    client_id=e.client_id,
                    name=e.connector_name,
                    first_seen=now,
                    last_seen=now,
                )
            )
    if new_connectors:
        _check_discovery_cap(key, len(new_connectors), now)
        for connector, _ in new_connectors.values():
            connector.discovered_by_key = key
        Connector.objects.bulk_create([c for c, _ in new_connectors.values()])
        for app in new_apps:
            app.connector_id = app.connector.pk
        ConnectorApp.objects.bulk_create(new_apps)
        for lookup, (connector, source) in new_connectors.items():
            if source is not None:
                by_pair[lookup] = connector
            else:
                by_url[lookup] = connector
            discovered.append(
                {
                    "action": "connector.discovered",
                    "actor": f"gateway:{key.name}",
                    "connector": connector,
                    "source": source,
                    "target": connector,
                    "occurred_at": now,
                    "ingest_key": key,
                    "data": {
                        "via": "ai_activity",
                        "client_id": lookup[1] if source is not None else "",
                        "mcp_server_url": "" if source is not None else lookup,
                    },
                }
            )
    connectors = {e.index: by_pair[pair(e)] if e.client_id else by_url[e.mcp_server_url] for e in events}
    return connectors, event_sources


class DiscoveryLimitReached(Exception):
    """The batch would create more discovered connectors than the key may in an hour; nothing recorded."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def _check_discovery_cap(key: IngestKey, new: int, now: dt.datetime) -> None:
    """Refuse a batch that takes the key past LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR.

    Called under the chain head lock, so concurrent batches of one key count one after another.
    Without the cap a key (leaked, or a buggy gateway) could fill the register with garbage.
    """
    cap = settings.LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR
    window = now - dt.timedelta(hours=1)
    recent = Connector.objects.filter(discovered_by_key=key, discovered_at__gt=window)
    count = recent.count()
    if count + new <= cap:
        return
    oldest = recent.order_by("discovered_at").values_list("discovered_at", flat=True).first()
    wait = max(1, math.ceil(((oldest or now) + dt.timedelta(hours=1) - now).total_seconds()))
    raise DiscoveryLimitReached(
        f"This ingest key may discover at most {cap} new connectors per hour ({count} so far, this batch "
        f"adds {new}); nothing was recorded.",
        retry_after=wait,
    )


def _grants(
    events: list[Event], identities: dict[int, Who], connectors: dict[int, Connector]
) -> dict[tuple[int, int], int]:
    """Return the active grant of each (identity, connector) pair in the batch that has one."""
    identity_ids = {identities[e.index].pk for e in events}
    connector_ids = {connectors[e.index].pk for e in events}
    found: dict[tuple[int, int], int] = {}
    grants = (
        Grant.objects.filter(
            values_in("identity_id", identity_ids),
            connector_id__in=connector_ids,
            status=Grant.Status.ACTIVE,
        )
        .order_by("-last_seen", "-pk")
        .values_list("pk", "identity_id", "connector_id")
    )
    for pk, identity_id, connector_id in grants:
        found.setdefault((identity_id, connector_id), pk)
    return found


# ------------------------------------------------------------------------------------ the service


@dataclass(slots=True)
class Resolved:
    """What a batch's events name in the register, by event index (grants by identity and connector)."""

    identities: dict[int, Who]
    devices: dict[int, Seen]
    connectors: dict[int, Connector]
    sources: dict[int, IdentitySource]
    grants: dict[tuple[int, int], int]

    def update(self, other: Resolved) -> None:
        self.identities.update(other.identities)
        self.devices.update(other.devices)
        self.connectors.update(other.connectors)
        self.sources.update(other.sources)
        self.grants.update(other.grants)

    def incomplete(self, events: list[Event]) -> list[Event]:
        """Return the events naming something not found."""
        return [
            e
            for e in events
            if e.index not in self.identities
            or e.index not in self.connectors
            or (e.device_id and e.index not in self.devices)
        ]


def _resolve(
    events: list[Event],
    sources: dict[str, IdentitySource],
    now: dt.datetime,
    key: IngestKey,
    result: IngestResult,
    discovered: list[dict[str, Any]],
    *,
    create: bool,
) -> Resolved:
    identities = _identities(events, sources, now, result, create=create)
    devices = _devices(events, identities, now, result, create=create)
    connectors, event_sources = _connectors(events, sources, now, key, discovered, create=create)
    known = [e for e in events if e.index in identities and e.index in connectors]
    grants = _grants(known, identities, connectors) if known else {}
    return Resolved(identities, devices, connectors, event_sources, grants)


def events_ingest(*, key: IngestKey, events: list[Event]) -> IngestResult:
    """Resolve a validated batch and record it in the chain in one transaction; return the counts."""
    result = IngestResult(received=len(events))
    now = timezone.now()
    sources = _sources(events)
    _check_sources(events, sources)
    discovered: list[dict[str, Any]] = []
    # Look up what the batch names before taking the chain head: these reads are most of a
    # batch's database work, and meanwhile other web workers can record their batches.
    resolved = _resolve(events, sources, now, key, result, discovered, create=False)
    with transaction.atomic():
        head = lock_head()
        external = {f"{key.prefix}:{e.id}": e for e in events}
        existing = external_ids_recorded(external)
        fresh = [e for ext, e in external.items() if ext not in existing]
        result.duplicates = len(events) - len(fresh)
        if not fresh:
            return result
        # What was not found is looked up again under the head lock (a concurrent batch may have
        # just created it) and created if still unknown, so two batches never create the same
        # person, device or connector twice.
        missing = resolved.incomplete(fresh)
        if missing:
            resolved.update(_resolve(missing, sources, now, key, result, discovered, create=True))
        result.discovered_connectors = len(discovered)
        identities, devices, connectors = resolved.identities, resolved.devices, resolved.connectors
        grants, event_sources = resolved.grants, resolved.sources

        # Connector discoveries first. The activity rows are built on a template of every column
        # rather than through event_values' keyword normalisation: that is a third of the batch.
        records = [event_values(now=now, **values) for values in discovered]
        template = event_template(now=now)
        template["ingest_key_id"] = key.pk
        shadow = Connector.Status.DISCOVERED
        for e in fresh:
            identity, connector = identities[e.index], connectors[e.index]
            device = devices.get(e.index)
            grant = grants.get((identity.pk, connector.pk))
            data: dict[str, Any] = {"event_id": e.id}
            if e.resource:
                data["resource"] = e.resource
            if e.extra:
                data.update(e.extra)
            flags = []
            if identity.unverified:
                flags.append("unverified_identity")
            if device is not None and device.unverified:
                flags.append("unverified_device")
            if connector.status == shadow:
                flags.append("shadow_connector")
            if grant is None:
                flags.append("no_grant")
            if flags:
                data["flags"] = flags
            if identity.unverified:
                data["actor_as_given"] = (
                    {"email": e.email}
                    if e.email
                    else {"source": e.actor_source, "external_id": e.actor_external_id}
                )
            source = event_sources.get(e.index)
            values = template.copy()
            values["action"] = e.action if e.action.startswith("ai.") else f"ai.{e.action}"
            values["outcome"] = e.outcome
            values["occurred_at"] = e.time
            values["actor_identity_id"] = identity.pk
            values["actor_label"] = (identity.email or _unsourced_identity_key(e))[:254]
            values["connector_id"] = connector.pk
            values["grant_id"] = grant
            values["device_id"] = device.pk if device is not None else None
            values["source_id"] = source.pk if source is not None else None
            values["ip"] = e.ip  # normalised by validation
            values["user_agent"] = e.user_agent
            values["external_id"] = f"{key.prefix}:{e.id}"
            values["data"] = data
            records.append(values)
        result.accepted = record_prepared(records, head=head) - len(discovered)
        # Grants' and devices' usage times follow from these events in a roll-up shortly after
        # the commit (activity.usage): nothing in the register is written on this path.
        transaction.on_commit(schedule_rollup, robust=True)
    return result
