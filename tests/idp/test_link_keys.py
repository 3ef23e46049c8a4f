"""Adapters give the immutable ids people are linked by (connectors.people)."""

from __future__ import annotations

import httpx

from connectors.idp.base import IdpConfig
from connectors.idp.entra import EntraAdapter


def test_entra_gives_the_on_premises_immutable_id_as_the_link_key():
    def handler(request):
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "graph-token", "expires_in": 3599})
        assert "onPremisesImmutableId" in request.url.params["$select"]
        return httpx.Response(
            200,
            json={
                "value": [
                    {"id": "u1", "mail": "a@b.c", "onPremisesImmutableId": "Zm9v+g=="},
                    {"id": "u2", "mail": "d@b.c", "onPremisesImmutableId": None},
                ]
            },
        )

    config = IdpConfig(
        kind="microsoft_entra",
        name="E",
        base_url="https://graph.test",
        credentials={"tenant_id": "t1", "client_id": "c1", "client_secret": "s"},
    )
    adapter = EntraAdapter(config, transport=httpx.MockTransport(handler))
    users = [u for page in adapter.iter_users() for u in page]
    assert [u.link_key for u in users] == ["ad-guid:Zm9v+g==", ""]
