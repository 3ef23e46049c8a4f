"""The Cedar schema of Lanyard's register, generated from its models' choices.

Entity types (namespace ``Lanyard``):

- ``Person``: a human (``connectors.Person``); every identity of one person is ``in`` it.
- ``Identity``: an account at one IdP, with the person's standing (``status``, ``active``,
  ``offboarding``) and, for the connector asked about, what it holds: ``live_grants`` (a live,
  unheld, unexpired grant), ``provisioned`` (an approved, provisioned request) and
  ``attestation_revoked`` (a grant answered "revoke", or past its deadline under the revoke policy).
- ``Device``: as the gateway named it; ``known`` when it is in the register, ``owner`` its person.
- ``Connector``: status, ``sanctioned``, ``has_owner``, risk, kind.
- ``Tool``: an MCP tool, resource or prompt of a connector (``in`` it; ``connector`` names it).
- ``Grant`` and ``ConnectorApp``: the grant the decision rests on and the OAuth client it was asked
  by, when there is one (``context.grant``, ``context.app``).

Every decision's ``context`` carries ``connector`` (the connector the resource is, or belongs to),
``pep`` (the asking key's ``name`` and whether it ``reports_devices``) and, when known, ``device``,
``grant`` and ``app``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

NAMESPACE = "Lanyard"
ACTIONS = ("use", "connect", "tools/list", "tools/call", "resources/read", "prompts/get")


def _entity(name: str) -> dict[str, str]:
    return {"type": "Entity", "name": name}


def _set(element: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Set", "element": element}


STRING = {"type": "String"}
BOOL = {"type": "Boolean"}
LONG = {"type": "Long"}


def _record(attributes: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "Record",
        "attributes": {k: v | ({"required": False} if k in optional else {}) for k, v in attributes.items()},
    }


@functools.cache
def schema() -> dict[str, Any]:
    """The schema as Cedar JSON (``cedarpy`` takes it as is)."""
    from connectors.models import Connector, Grant, Identity

    entity_types = {
        "Person": {"shape": _record({"name": STRING})},
        "Identity": {
            "memberOfTypes": ["Person"],
            "shape": _record(
                {
                    "email": STRING,
                    "source": STRING,
                    "department": STRING,
                    "status": STRING,
                    "active": BOOL,
                    "offboarding": BOOL,
                    "is_service": BOOL,
                    "live_grants": _set(_entity("Connector")),
                    "provisioned": _set(_entity("Connector")),
                    "attestation_revoked": _set(_entity("Connector")),
                }
            ),
        },
        "Device": {
            "shape": _record(
                {
                    "known": BOOL,
                    "managed": BOOL,
                    "compliant": BOOL,
                    "platform": STRING,
                    "owner": _entity("Person"),
                }
            )
        },
        "Connector": {
            "shape": _record(
                {
                    "name": STRING,
                    "status": STRING,
                    "sanctioned": BOOL,
                    "has_owner": BOOL,
                    "risk": STRING,
                    "risk_score": LONG,
                    "kind": STRING,
                }
            )
        },
        "Tool": {
            "memberOfTypes": ["Connector"],
            "shape": _record({"name": STRING, "kind": STRING, "connector": _entity("Connector")}),
        },
        "Grant": {
            "shape": _record(
                {
                    "kind": STRING,
                    "status": STRING,
                    "scopes": _set(STRING),
                    "tenant_wide": BOOL,
                    "connector": _entity("Connector"),
                    "identity": _entity("Identity"),
                }
            )
        },
        "ConnectorApp": {
            "shape": _record(
                {"client_id": STRING, "source": STRING, "verified": BOOL, "connector": _entity("Connector")}
            )
        },
    }
    context = _record(
        {
            "connector": _entity("Connector"),
            "pep": _record({"name": STRING, "reports_devices": BOOL}),
            "device": _entity("Device"),
            "grant": _entity("Grant"),
            "app": _entity("ConnectorApp"),
        },
        optional=("device", "grant", "app"),
    )
    applies = {"principalTypes": ["Identity"], "resourceTypes": ["Connector", "Tool"], "context": context}
    document = {
        NAMESPACE: {
            "entityTypes": entity_types,
            "actions": {name: {"appliesTo": applies} for name in ACTIONS},
            # The values the string attributes take, for people writing policies (Cedar has no enums).
            "annotations": {
                "connector_status": ",".join(Connector.Status.values),
                "identity_status": ",".join(Identity.Status.values),
                "grant_kind": ",".join(Grant.Kind.values),
            },
        }
    }
    return document


def cedar_schema() -> dict[str, Any]:
    """The schema as cedarpy accepts it (annotations are for people; the engine takes none here)."""
    document = json.loads(json.dumps(schema()))
    document[NAMESPACE].pop("annotations", None)
    return document


def schema_json() -> str:
    return json.dumps(schema(), indent=2)
