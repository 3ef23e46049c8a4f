"""Per decision, the receiver's database work is constant: it does not grow with the register."""

from __future__ import annotations

import pytest

from connectors.models import Grant
from signals import services

from .conftest import AUDIENCE, holder, make_stream

pytestmark = pytest.mark.django_db(transaction=True)


def signed(sim, **options) -> str:
    """A SET built by the simulated Okta transmitter, not pushed (the test hands it to the receiver)."""
    sim_obj = sim.sim
    options.setdefault("aud", AUDIENCE)
    return sim_obj.ssf.build(sim.url, sim_obj.tenant, provider="okta", **options)[1]


@pytest.fixture
def stream(sim, synced):
    source = synced("okta")
    stream = make_stream(sim, source, "okta")
    services.verify(
        stream, signed(sim, event="session-revoked", subject={"format": "opaque", "id": "x"})
    )  # warm JWKS
    return stream


def test_a_refused_set_costs_one_audit_write(sim, stream, django_assert_max_num_queries):
    token = signed(sim, event="session-revoked", subject={"format": "opaque", "id": "x"}, aud="nope")
    with django_assert_max_num_queries(5):  # the audit record only: savepoint, chain head, insert
        result = services.receive(stream, token)
    assert result.status == 400


def test_a_recorded_set_costs_the_same_whatever_the_register_holds(sim, stream):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from connectors.models import Identity
    from tests.factories import GrantFactory

    first = holder(stream.source)
    second = Identity.objects.filter(source=stream.source).exclude(pk=first.pk).order_by("pk").first()
    for _ in range(40):  # many more grants for the second person must not change the count
        GrantFactory(identity=second, source=None, status=Grant.Status.ACTIVE)
    counts = []
    for person in (first, second):
        token = signed(sim, event="session-revoked", email=person.email)
        with CaptureQueriesContext(connection) as captured:
            result = services.receive(stream, token)
        assert result.status == 202, result.body
        counts.append(len(captured))
    assert counts[0] == counts[1] <= 12
