"""People: one person per human, over the identities each source has of them.

Identities are linked, strongest first, by an immutable link key the sources share (``link_key``:
``ad-guid:…`` from Entra's ``onPremisesImmutableId``, ``saml:…`` from a GitHub org's SAML identity,
a federation id…), then by the same verified email, compared case-insensitively. Identities only a
gateway has seen (``unverified``) are never linked by email. When the keys disagree (two different
immutable ids claim one email) the email links nothing: the identities are flagged
(``link_conflict``) and listed for IAM, never guessed. IAM can link or unlink an identity by hand;
that pins it (``link_pinned``) and automatic linking leaves it where IAM put it.

A person takes its manager and department from the identities in the source IAM marks
authoritative for HR data (``IdentitySource.hr_authoritative``), else from the first source that
has manager data; its primary identity (the one that receives email) is the one linked to the
Django user who signs in, else the HR source's, preferring active ones.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from django.db import connection, transaction

from audit import services as audit

from . import bulk
from .models import Identity, IdentitySource, IllegalTransition, Person

PEOPLE_LOCK = 0x1A4E_0001  # PostgreSQL advisory lock: one linking pass at a time (syncs run in parallel)
COLUMNS = (
    "pk",
    "email",
    "name",
    "department",
    "status",
    "source_id",
    "manager_id",
    "user_id",
    "person_id",
    "link_key",
    "link_pinned",
    "link_conflict",
    "unverified",
)
PERSON_FIELDS = ("name", "email", "department", "manager_id", "primary_identity_id", "conflict")


class _Row:
    __slots__ = COLUMNS

    def __init__(self, values: tuple) -> None:
        for k, v in zip(COLUMNS, values, strict=True):
            setattr(self, k, v)


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PEOPLE_LOCK])


def hr_order() -> dict[int | None, int]:
    """Rank sources for HR data: IAM's authoritative ones, then those with manager data, then the rest."""
    with_managers = set(
        Identity.objects.filter(manager__isnull=False, source__isnull=False)
        .order_by()
        .values_list("source_id", flat=True)
        .distinct()
    )
    sources = list(IdentitySource.objects.order_by("pk").values_list("pk", "hr_authoritative"))
    ranked = sorted(sources, key=lambda s: (not s[1], s[0] not in with_managers, s[0]))
    order: dict[int | None, int] = {pk: i for i, (pk, _) in enumerate(ranked)}
    order[None] = len(order)
    return order


def _groups(rows: list[_Row]) -> tuple[list[list[_Row]], dict[int, str]]:
    """Union unpinned identities by link key, then by verified email; return groups and conflicts."""
    parent = {r.pk: r.pk for r in rows}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_key: dict[str, list[_Row]] = defaultdict(list)
    by_email: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.link_key:
            by_key[r.link_key].append(r)
        if r.email and not r.unverified:
            by_email[r.email.lower()].append(r)
    for members in by_key.values():
        for r in members[1:]:
            union(members[0].pk, r.pk)
    conflicts: dict[int, str] = {}
    for email, members in by_email.items():
        namespaces: dict[str, set[str]] = defaultdict(set)
        for r in members:
            if r.link_key:
                namespaces[r.link_key.split(":", 1)[0]].add(r.link_key)
        clash = sorted(k for keys in namespaces.values() if len(keys) > 1 for k in keys)
        if clash:
            note = f"{email} is claimed by different immutable ids: {', '.join(clash)}"[:500]
            for r in members:
                conflicts[r.pk] = note
            continue
        for r in members[1:]:
            union(members[0].pk, r.pk)
    grouped: dict[int, list[_Row]] = defaultdict(list)
    for r in rows:
        grouped[find(r.pk)].append(r)
    return list(grouped.values()), conflicts


def _primary(members: list[_Row], order: dict[int | None, int]) -> _Row:
    return min(
        members,
        key=lambda r: (
            r.user_id is None,
            r.status != Identity.Status.ACTIVE,
            r.unverified,
            not r.email,
            order.get(r.source_id, len(order)),
            r.pk,
        ),
    )


def link_people() -> dict[str, int]:
    """Put every identity into a person and refresh each person's name, manager and department.

    Idempotent and bulk: a fixed number of queries whatever the number of identities (plus one
    per thousand rows written); a second run writes nothing.
    """
    stats: Counter[str] = Counter()
    with transaction.atomic():
        _lock()
        order = hr_order()
        rows = [
            _Row(v) for v in Identity.objects.order_by("pk").values_list(*COLUMNS).iterator(chunk_size=5000)
        ]
        pinned = [r for r in rows if r.link_pinned and r.person_id is not None]
        groups, conflicts = _groups([r for r in rows if not (r.link_pinned and r.person_id is not None)])
        # Each group keeps the person most of its members already have (biggest groups choose first);
        # a person IAM pinned someone into stays that person.
        target: dict[int, int] = {r.pk: r.person_id for r in pinned}
        taken: set[int] = set()
        homeless: list[list[_Row]] = []
        for members in sorted(groups, key=lambda g: (-len(g), g[0].pk)):
            counts = Counter(r.person_id for r in members if r.person_id is not None)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            choice = next((pk for pk, _ in ranked if pk not in taken), None)
            if choice is None:
                homeless.append(members)
                continue
            taken.add(choice)
            for r in members:
                target[r.pk] = choice
        created = Person.objects.bulk_create([Person() for _ in homeless], batch_size=1000)
        stats["people_new"] = len(created)
        for members, person in zip(homeless, created, strict=True):
            for r in members:
                target[r.pk] = person.pk
        # Identities that move, or whose conflict note changes.
        moved = []
        for r in rows:
            note = conflicts.get(r.pk, "") if not r.link_pinned else r.link_conflict
            if target[r.pk] != r.person_id or note != r.link_conflict:
                r.person_id, r.link_conflict = target[r.pk], note
                moved.append(Identity(pk=r.pk, person_id=r.person_id, link_conflict=note))
        for i in range(0, len(moved), 1000):
            bulk.update(Identity, moved[i : i + 1000], ["person", "link_conflict"])
        stats["identities_relinked"] = len(moved)
        stats["people_changed"] = _refresh_people(rows, order)
        stats["people_removed"] = Person.objects.filter(identities__isnull=True).delete()[0]
        stats["link_conflicts"] = sum(1 for r in rows if r.link_conflict)
    return {k: v for k, v in stats.items() if v}


def _refresh_people(rows: list[_Row], order: dict[int | None, int]) -> int:
    """Recompute each person's derived fields from its identities; write the ones that changed."""
    members: dict[int, list[_Row]] = defaultdict(list)
    person_of = {r.pk: r.person_id for r in rows}
    for r in rows:
        members[r.person_id].append(r)
    current = {p["pk"]: p for p in Person.objects.filter(pk__in=list(members)).values("pk", *PERSON_FIELDS)}
    changed = []
    for pk, ms in members.items():
        hr = sorted(
            ms, key=lambda r: (order.get(r.source_id, len(order)), r.status != Identity.Status.ACTIVE, r.pk)
        )
        primary = _primary(ms, order)
        manager = next(
            (person_of.get(r.manager_id) for r in hr if r.manager_id and person_of.get(r.manager_id)), None
        )
        values = {
            "name": primary.name or next((r.name for r in hr if r.name), ""),
            "email": primary.email,
            "department": next((r.department for r in hr if r.department), ""),
            "manager_id": manager if manager != pk else None,
            "primary_identity_id": primary.pk,
            "conflict": "; ".join(sorted({r.link_conflict for r in ms if r.link_conflict}))[:500],
        }
        old = current.get(pk)
        if old is None or any(old[k] != v for k, v in values.items()):
            changed.append(Person(pk=pk, **values))
    for i in range(0, len(changed), 1000):
        bulk.update(Person, changed[i : i + 1000], [f.removesuffix("_id") for f in PERSON_FIELDS])
    return len(changed)


def _refresh_all() -> None:
    _refresh_people(
        [_Row(v) for v in Identity.objects.order_by("pk").values_list(*COLUMNS).iterator(chunk_size=5000)],
        hr_order(),
    )
    Person.objects.filter(identities__isnull=True).delete()


def person_link(*, identity: Identity, person: Person, actor: Any) -> Identity:
    """Link an identity to a person by hand (IAM); pinned, so automatic linking leaves it there."""
    with transaction.atomic():
        _lock()
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        person = Person.objects.get(pk=person.pk)
        previous = identity.person_id
        if previous == person.pk and identity.link_pinned:
            raise IllegalTransition(f"{identity} is already linked to {person}.")
        identity.person, identity.link_pinned, identity.link_conflict = person, True, ""
        identity.save(update_fields=["person", "link_pinned", "link_conflict"])
        audit.record(
            "person.identity_linked",
            actor=actor,
            source=identity.source,
            target=identity,
            data={"person": person.pk, "from_person": previous, "email": identity.email},
        )
        _refresh_all()
    return identity


def person_unlink(*, identity: Identity, actor: Any) -> Identity:
    """Take an identity out of its person into a person of its own (IAM); pinned there."""
    with transaction.atomic():
        _lock()
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        previous = identity.person_id
        alone = not Identity.objects.filter(person_id=previous).exclude(pk=identity.pk).exists()
        if previous is not None and alone and identity.link_pinned:
            raise IllegalTransition(f"{identity} is already a person of its own.")
        identity.person = Person.objects.create(name=identity.name, email=identity.email)
        identity.link_pinned, identity.link_conflict = True, ""
        identity.save(update_fields=["person", "link_pinned", "link_conflict"])
        audit.record(
            "person.identity_unlinked",
            actor=actor,
            source=identity.source,
            target=identity,
            data={"from_person": previous, "person": identity.person_id, "email": identity.email},
        )
        _refresh_all()
    return identity


def person_unpin(*, identity: Identity, actor: Any) -> Identity:
    """Let automatic linking decide this identity's person again (undoes a hand-made link or unlink)."""
    with transaction.atomic():
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        if not identity.link_pinned:
            raise IllegalTransition(f"{identity} is linked automatically already.")
        identity.link_pinned = False
        identity.save(update_fields=["link_pinned"])
        audit.record(
            "person.identity_unpinned",
            actor=actor,
            source=identity.source,
            target=identity,
            data={"person": identity.person_id, "email": identity.email},
        )
        link_people()
    return identity
