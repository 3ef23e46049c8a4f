"""The policy set the decision point evaluates: Lanyard's defaults plus IAM's enabled policies.

Policies are Cedar, evaluated by Cedar's own engine (``cedarpy``). The set is parsed once per
*generation* and kept in the process; the generation is the newest ``PolicyVersion`` id (and the
settings that shape the defaults), read in every request (with the gateway key, by the API), so an
edit in the admin is in force for the very next decision in every process.

Every policy carries ``@id`` (the name decisions report) and ``@reason`` (what the person is told when
it forbids). Cedar itself names policies ``policy0``, ``policy1``...; ``PolicyBook`` maps those back.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import cedarpy
from django.conf import settings

from .models import Policy, PolicyVersion
from .schema import cedar_schema

HERE = Path(__file__).parent / "policies"


class PolicyInvalid(ValueError):
    """A policy does not parse, or does not type-check against the schema; Cedar's own messages."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    id: str
    effect: str
    reason: str
    source: str  # "default" or the name of IAM's policy


@dataclass(frozen=True)
class PolicyBook:
    """A parsed policy set and what each of Cedar's policy ids means."""

    generation: tuple
    policies: cedarpy.PolicySet
    info: dict[str, PolicyInfo]
    text: str
    # Every attribute name the set reads (``e.attr`` or ``e has attr``): the engine is given only
    # these. Cedar parses each entity attribute value (about 7 µs each), and the policies cannot
    # observe one they never name, so leaving the others out changes no decision.
    reads: frozenset[str] = frozenset()
    # The request context is pruned the same way (Cedar parses each context value too, 15-40 µs a
    # key here), unless a policy uses ``context`` as a whole value (``context == {...}``), which an
    # absent key would change.
    prune_context: bool = False

    def ids(self, cedar_ids: list[str]) -> list[str]:
        return [self.info[i].id if i in self.info else i for i in cedar_ids]


def default_text() -> str:
    text = (HERE / "default.cedar").read_text()
    if settings.LANYARD_PDP_FORBID_OWNERLESS:
        text += "\n" + (HERE / "ownerless.cedar").read_text()
    return text


@functools.cache
def _schema_json() -> str:
    return json.dumps(cedar_schema())


def _parts(custom: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("default", default_text()), *custom]


def _info(parts: list[tuple[str, str]]) -> tuple[str, dict[str, PolicyInfo]]:
    """Join the parts; map each Cedar id (``policyN`` in the joined text) to its @id, effect and reason."""
    info: dict[str, PolicyInfo] = {}
    texts = []
    n = 0
    for source, text in parts:
        parsed = json.loads(cedarpy.policies_to_json_str(text)) if text.strip() else {"staticPolicies": {}}
        # Cedar numbers policies in the order they appear; the joined text keeps that order per part.
        for index, (_cid, policy) in enumerate(
            sorted(parsed["staticPolicies"].items(), key=lambda kv: int(kv[0].removeprefix("policy")))
        ):
            notes = policy.get("annotations") or {}
            pid = notes.get("id") or (f"{source}#{index + 1}" if source != "default" else f"lanyard/{index}")
            info[f"policy{n}"] = PolicyInfo(pid, policy["effect"], notes.get("reason") or "", source)
            n += 1
        texts.append(text)
    return "\n".join(texts), info


def validate(text: str, *, name: str, others: list[tuple[str, str]] | None = None) -> None:
    """Raise PolicyInvalid unless ``text`` parses and type-checks against the schema, alone and in the set."""
    try:
        cedarpy.policies_to_json_str(text)
    except ValueError as exc:
        raise PolicyInvalid([str(exc)]) from None
    others = others if others is not None else _custom_parts(exclude=name)
    joined, info = _info(_parts([*others, (name, text)]))
    ids = [i.id for i in info.values()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PolicyInvalid([f"Two policies share the @id {', '.join(duplicates)}; each @id must be unique."])
    result = cedarpy.validate_policies(joined, _schema_json())
    if not result.validation_passed:
        messages = []
        for error in result.errors:
            pid = getattr(error, "policy_id", "") or ""
            where = f"{info[pid].id}: " if pid in info else ""
            messages.append(where + str(getattr(error, "error", error)))
        raise PolicyInvalid(messages)


def _custom_parts(*, exclude: str | None = None) -> list[tuple[str, str]]:
    rows = Policy.objects.filter(enabled=True).order_by("name").values_list("name", "text")
    return [(name, text) for name, text in rows if name != exclude]


def _walk(text: str):
    """Every node of Cedar's JSON form of the policies in ``text``, with its parent's operator."""
    stack: list = [(json.loads(cedarpy.policies_to_json_str(text)), "")] if text.strip() else []
    while stack:
        node, parent = stack.pop()
        yield node, parent
        if isinstance(node, dict):
            for op, value in node.items():
                stack.append((value, op))
        elif isinstance(node, list):
            stack.extend((value, parent) for value in node)


def attributes_read(text: str) -> frozenset[str]:
    """The attribute names the policies in ``text`` read, from Cedar's own JSON form of them."""
    names: set[str] = set()
    for node, _parent in _walk(text):
        if isinstance(node, dict):
            for op, value in node.items():
                if op in (".", "has") and isinstance(value, dict) and isinstance(value.get("attr"), str):
                    names.add(value["attr"])
    return frozenset(names)


def context_only_by_attribute(text: str) -> bool:
    """True when every use of ``context`` in ``text`` reads one attribute of it (``context.x``,
    ``context has x``): then a context key no policy names cannot change a decision."""
    direct = whole = 0
    for node, _parent in _walk(text):
        if node == {"Var": "context"}:
            whole += 1
        elif isinstance(node, dict):
            for op, value in node.items():
                if op in (".", "has") and isinstance(value, dict) and value.get("left") == {"Var": "context"}:
                    direct += 1
    return direct == whole


def build(custom: list[tuple[str, str]], generation: tuple = ()) -> PolicyBook:
    joined, info = _info(_parts(custom))
    return PolicyBook(
        generation,
        cedarpy.PolicySet.from_str(joined),
        info,
        joined,
        attributes_read(joined),
        context_only_by_attribute(joined),
    )


def for_engine(book: PolicyBook, entity_list: list[dict]) -> list[dict]:
    """``entity_list`` with only the attributes the book's policies read (see ``PolicyBook.reads``)."""
    reads = book.reads
    return [
        {
            "uid": e["uid"],
            "attrs": {k: v for k, v in e["attrs"].items() if k in reads},
            "parents": e["parents"],
        }
        for e in entity_list
    ]


NEWEST_VERSION_SQL = f"SELECT MAX(id) FROM {PolicyVersion._meta.db_table}"  # noqa: S608


def request_for_engine(book: PolicyBook, request: dict) -> dict:
    """``request`` with only the context keys the book's policies read (see ``PolicyBook.prune_context``)."""
    if not book.prune_context:
        return request
    reads = book.reads
    return request | {"context": {k: v for k, v in request["context"].items() if k in reads}}


def generation() -> tuple:
    """The generation of the set in force, read (one indexed statement)."""
    from django.db import connection

    with connection.cursor() as cursor:  # the plainest statement there is
        cursor.execute(NEWEST_VERSION_SQL)
        return generation_of(cursor.fetchone()[0])


def generation_of(newest: int | None) -> tuple:
    """The generation for ``newest``, the newest ``PolicyVersion`` id (None: there is none) already
    read; the API reads it in the statement that finds the gateway key (``NEWEST_VERSION_SQL``)."""
    return (newest or 0, settings.LANYARD_PDP_FORBID_OWNERLESS)


_lock = threading.Lock()
_current: PolicyBook | None = None


def current(gen: tuple | None = None) -> PolicyBook:
    """The policy set in force (one query to learn the generation unless given; parsed again only
    when it moved)."""
    global _current
    gen = gen if gen is not None else generation()
    book = _current
    if book is not None and book.generation == gen:
        return book
    with _lock:
        if _current is None or _current.generation != gen:
            _current = build(_custom_parts(), gen)
        return _current


# --- editing (the admin) -------------------------------------------------------------------------


def _diff(old: str, new: str, name: str) -> str:
    import difflib

    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=f"{name} (before)", tofile=f"{name} (after)", lineterm=""
    )
    return "\n".join(lines)[:20_000]


def policy_save(*, policy: Policy, actor, previous: tuple[str, bool] | None = None) -> Policy:
    """Validate and save IAM's policy as a new version, in force at the next decision; audited with the diff.

    ``previous`` is the (text, enabled) before this edit (None: a new policy). Raises PolicyInvalid
    (nothing saved) when Cedar refuses the text or the set it would make.
    """
    from django.db import transaction
    from django.utils import timezone

    from audit import services as audit

    if policy.enabled:
        validate(policy.text, name=policy.name)
    else:
        try:
            cedarpy.policies_to_json_str(policy.text)
        except ValueError as exc:
            raise PolicyInvalid([str(exc)]) from None
    old_text, old_enabled = previous if previous is not None else ("", False)
    with transaction.atomic():
        policy.version += 1
        policy.updated_by = actor
        policy.updated_at = timezone.now()
        policy.save()
        PolicyVersion.objects.create(
            policy=policy, version=policy.version, text=policy.text, enabled=policy.enabled, created_by=actor
        )
        audit.record(
            "policy.created" if previous is None else "policy.changed",
            actor=actor,
            target=policy,
            data={
                "name": policy.name,
                "version": policy.version,
                "enabled": policy.enabled,
                "was_enabled": old_enabled,
                "diff": _diff(old_text, policy.text, policy.name),
            },
        )
    return policy


@dataclass(frozen=True, slots=True)
class Replay:
    sample_id: int
    decided_at: object
    summary: str
    recorded: bool
    draft: bool
    recorded_policies: list
    draft_policies: list


def what_if(*, draft_text: str, name: str, limit: int = 500) -> tuple[int, list[Replay]]:
    """Replay the newest ``limit`` recorded decisions under the set with ``draft_text`` as policy ``name``.

    Each is decided again on the very entities it was decided on, so a change is the draft's doing,
    not the register's. Returns how many were replayed and the ones whose decision would change.
    """
    from .models import DecisionSample

    validate(draft_text, name=name)
    book = build([*_custom_parts(exclude=name), (name, draft_text)])
    samples = list(DecisionSample.objects.order_by("-pk")[:limit])
    changed = []
    for sample in samples:
        answer = cedarpy.is_authorized(sample.request, book.policies, sample.entities)
        if answer.allowed != sample.decision:
            changed.append(
                Replay(
                    sample.pk,
                    sample.decided_at,
                    sample.summary,
                    sample.decision,
                    answer.allowed,
                    sample.policies,
                    book.ids(list(answer.diagnostics.reasons)),
                )
            )
    return len(samples), changed
