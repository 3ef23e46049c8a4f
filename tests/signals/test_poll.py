"""RFC 8936 poll delivery: Lanyard polls the simulated transmitter, acts, acknowledges, reports errors."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from connectors.models import Grant, Identity
from signals.models import ReceivedSet, ReceiverStream
from signals.polling import PollError, poll_stream
from signals.tasks import poll_streams

from .conftest import AUDIENCE, holder, make_stream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def polled(sim, synced, settings):
    source = synced("okta")
    poll_url = sim.ssf_poll_stream("okta", aud=AUDIENCE, authorization="Bearer poll-secret")
    stream = make_stream(sim, source, "okta", delivery=ReceiverStream.Delivery.POLL, poll_url=poll_url)
    stream.set_poll_authorization("Bearer poll-secret")
    stream.save()
    return stream


def test_a_polled_account_disabled_offboards_and_is_acknowledged(sim, polled):
    person = holder(polled.source)
    queued = sim.mutate("set_status", email=person.email, status="suspended")["ssf"]
    assert [q["poll"] for q in queued] == [True]

    summary = poll_stream(ReceiverStream.objects.get(pk=polled.pk))

    assert (summary.received, summary.acknowledged, summary.refused) == (1, 1, 0)
    person.refresh_from_db()
    assert person.status == Identity.Status.SUSPENDED
    assert not Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE).exists()
    state = sim.ssf_poll_state("okta")
    assert state["outstanding"] == [] and state["acked"] == [queued[0]["jti"]]
    assert poll_stream(polled).received == 0  # nothing redelivered


def test_refused_sets_are_reported_as_set_errs_and_many_sets_take_several_rounds(sim, polled, settings):
    settings.LANYARD_SSF_POLL_MAX_EVENTS = 2
    email = holder(polled.source).email
    for _ in range(3):
        sim.ssf_push("okta", "session-revoked", email=email, poll=True)
    bad = sim.ssf_push("okta", "session-revoked", email=email, poll=True, aud="https://elsewhere")[0]["jti"]

    summary = poll_streams()

    assert summary == {"streams": 1, "received": 4, "failed": 0}
    state = sim.ssf_poll_state("okta")
    assert state["outstanding"] == [] and len(state["acked"]) == 3
    assert state["errors"] == {
        bad: {"err": "invalid_audience", "description": "The SET's aud is not this stream's audience."}
    }
    assert ReceivedSet.objects.count() == 3
    assert AuditEvent.objects.filter(action="ssf.set_refused").count() == 1


def test_a_wrong_poll_authorization_is_a_poll_error_and_the_task_carries_on(sim, polled):
    polled.set_poll_authorization("Bearer wrong")
    polled.save()
    with pytest.raises(PollError):
        poll_stream(polled)
    assert poll_streams() == {"streams": 0, "received": 0, "failed": 1}


def test_push_streams_are_not_polled(sim, synced):
    make_stream(sim, synced("okta"), "okta")
    assert poll_streams() == {"streams": 0, "received": 0, "failed": 0}
