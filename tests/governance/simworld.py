"""A small Entra world on the simulator for workflow tests: a source, a real user and a real app.

Shared by tests/governance and tests/browser: the register rows are made with factories, the ids
come from the simulated tenant over HTTP, so provisioning and revocation hit real endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.models import Connector, ConnectorApp, Identity, IdentitySource
from connectors.services import source_adapter
from governance.models import User

TENANT = {"seed": 5, "identities": 30, "grants": 60, "events": 0}
KIND, PROVIDER = "microsoft_entra", "entra"


@dataclass
class EntraWorld:
    source: IdentitySource
    connector: Connector
    app: ConnectorApp
    identity: Identity


def entra_source(sim) -> IdentitySource:
    spec = sim.credentials()[KIND]
    source = IdentitySource(
        kind=KIND, name=spec["name"], base_url=spec["base_url"], token_url=spec["token_url"]
    )
    source.set_credentials(spec["credentials"])
    source.save()
    return source


def entra_world(sim, *, employee: User, owner: User, app_name: str = "Otter.ai") -> EntraWorld:
    """Link ``employee`` to a simulated Entra user and register ``app_name`` as an active connector."""
    from governance.services import connector_set_owner

    source = entra_source(sim)
    adapter = source_adapter(source)
    try:
        idp_app = next(a for page in adapter.iter_apps() for a in page if a.name == app_name)
        holders = {
            g.user_external_id
            for page in adapter.iter_grants()
            for g in page
            if g.client_id == idp_app.client_id
        }
        # Someone who has not consented to the app yet, so provisioning creates a new grant.
        person = next(
            u
            for page in adapter.iter_users()
            for u in page
            if u.status == "active" and not u.is_service and u.external_id not in holders
        )
    finally:
        adapter.close()
    identity = Identity.objects.create(
        source=source, external_id=person.external_id, email=person.email, name=person.name, user=employee
    )
    connector = Connector.objects.create(
        name=idp_app.name, vendor=idp_app.publisher, status=Connector.Status.ACTIVE, risk="medium"
    )
    app = ConnectorApp.objects.create(
        connector=connector, source=source, client_id=idp_app.client_id, external_id=idp_app.external_id
    )
    connector_set_owner(connector=connector, owner=owner, actor="test setup")
    return EntraWorld(source=source, connector=connector, app=app, identity=identity)
