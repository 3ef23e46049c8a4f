"""The SSF receiver over real HTTP: the simulator's transmitters push SETs to a live Lanyard server."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from connectors.models import Device, Grant, Identity
from signals import jwks
from signals.models import ReceivedSet

from .conftest import AUDIENCE, holder, make_stream, push_url

pytestmark = pytest.mark.django_db(transaction=True)


def one(results: list[dict]) -> dict:
    assert len(results) == 1
    return results[0]


def refusals() -> list[dict]:
    return list(
        AuditEvent.objects.filter(action="ssf.set_refused")
        .order_by("sequence")
        .values_list("data", flat=True)
    )


@pytest.fixture
def okta(synced, sim, live_server):
    source = synced("okta")
    stream = make_stream(sim, source, "okta")
    return {"source": source, "stream": stream, "url": push_url(live_server, stream)}


def push(sim, okta, event="account-disabled", **options):
    return one(sim.ssf_push("okta", event, url=okta["url"], aud=options.pop("aud", AUDIENCE), **options))


def test_account_disabled_offboards_at_once_and_revokes_the_grants_at_the_idp(sim, okta):
    person = holder(okta["source"])
    grants = list(Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE))
    assert all(sim.grant_exists("okta", g.external_id) for g in grants)

    answer = push(sim, okta, email=person.email)

    assert answer["status"] == 202 and answer["body"] is None
    person.refresh_from_db()
    assert person.status == Identity.Status.SUSPENDED
    assert set(Grant.objects.filter(pk__in=[g.pk for g in grants]).values_list("status", flat=True)) == {
        Grant.Status.REVOKED
    }
    assert not any(sim.grant_exists("okta", g.external_id) for g in grants)
    received = ReceivedSet.objects.get(jti=answer["jti"])
    assert (received.outcome, received.identity_id) == ("acted", person.pk)
    event = AuditEvent.objects.get(action="ssf.set_received")
    assert event.data["events"] == ["risc:account-disabled"] and event.data["outcome"] == "acted"
    assert event.actor_label == "ssf:okta SSF"
    assert AuditEvent.objects.filter(action="identity.offboarded", target_id=str(person.pk)).count() == 1


def test_suspending_a_person_at_the_simulated_idp_pushes_the_set_itself(sim, okta):
    person = holder(okta["source"])
    sim.ssf_stream("okta", url=okta["url"], aud=AUDIENCE)
    pushed = sim.mutate("set_status", email=person.email, status="suspended")["ssf"]
    assert [p["status"] for p in pushed] == [202]
    assert not Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE).exists()


def test_google_risc_shape_iss_sub_subject_account_purged(sim, synced, live_server):
    source = synced("google")
    stream = make_stream(sim, source, "google")
    person = holder(source)
    answer = one(
        sim.ssf_push(
            "google", "account-purged", email=person.email, url=push_url(live_server, stream), aud=AUDIENCE
        )
    )
    assert answer["status"] == 202
    person.refresh_from_db()
    assert person.status == Identity.Status.DEPROVISIONED
    assert not Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE).exists()
    assert ReceivedSet.objects.get(jti=answer["jti"]).subject["subject_type"] == "iss-sub"


def test_a_replayed_jti_is_acknowledged_and_not_acted_on_twice(sim, okta):
    person = holder(okta["source"])
    first = push(sim, okta, email=person.email, jti="replay-me")
    second = push(sim, okta, email=person.email, jti="replay-me")
    assert (first["status"], second["status"]) == (202, 202)
    assert ReceivedSet.objects.filter(jti="replay-me").count() == 1
    assert AuditEvent.objects.filter(action="ssf.set_received").count() == 1
    assert AuditEvent.objects.filter(action="ssf.set_replayed").count() == 1
    assert AuditEvent.objects.filter(action="identity.offboarded").count() == 1


def test_a_set_signed_with_another_key_is_refused(sim, okta):
    person = holder(okta["source"])
    answer = push(sim, okta, email=person.email, sign_with="stray")
    assert answer["status"] == 400 and answer["body"]["err"] == "invalid_key"
    assert Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE).exists()
    assert not ReceivedSet.objects.exists()
    assert [r["err"] for r in refusals()] == ["invalid_key"]


def test_an_unknown_kid_refreshes_the_jwks_once_and_the_bound_holds(sim, okta):
    person = holder(okta["source"])
    stream = okta["stream"]
    assert push(sim, okta, "session-revoked", email=person.email)["status"] == 202
    assert jwks.fetch_count(stream.pk, stream.jwks_url) == 1
    sim.ssf_rotate("okta")  # a new current key, unknown to the cached JWKS
    assert push(sim, okta, "session-revoked", email=person.email)["status"] == 202
    assert jwks.fetch_count(stream.pk, stream.jwks_url) == 2
    # Invented kids right after a fetch: refused without hammering the transmitter's JWKS.
    for _ in range(3):
        answer = push(sim, okta, "session-revoked", email=person.email, kid="no-such-kid")
        assert answer["status"] == 400 and answer["body"]["err"] == "invalid_key"
    assert jwks.fetch_count(stream.pk, stream.jwks_url) == 2


@pytest.mark.parametrize(("offset", "why"), [(-3600, "more than 300 s ago"), (3600, "in the future")])
def test_an_old_or_future_iat_is_refused(sim, okta, offset, why):
    answer = push(sim, okta, email=holder(okta["source"]).email, iat_offset=offset)
    assert answer["status"] == 400 and answer["body"]["err"] == "invalid_request"
    assert why in answer["body"]["description"]


def test_an_expired_set_is_refused(sim, okta):
    import time

    answer = push(sim, okta, email=holder(okta["source"]).email, claims={"exp": int(time.time()) - 120})
    assert answer["status"] == 400 and "expired" in answer["body"]["description"]


def test_wrong_audience_and_wrong_issuer_are_refused(sim, okta):
    email = holder(okta["source"]).email
    assert (
        push(sim, okta, email=email, aud="https://someone-else.example")["body"]["err"] == "invalid_audience"
    )
    assert push(sim, okta, email=email, iss="https://evil.example")["body"]["err"] == "invalid_issuer"
    assert [r["err"] for r in refusals()] == ["invalid_audience", "invalid_issuer"]
    assert not ReceivedSet.objects.exists()


@pytest.mark.parametrize("raw", ["not a jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0."])
def test_a_malformed_set_is_refused(sim, okta, raw):
    answer = push(sim, okta, email=holder(okta["source"]).email, raw=raw)
    assert answer["status"] == 400 and answer["body"]["err"] == "invalid_request"


def test_an_unsupported_event_type_is_refused(sim, okta):
    answer = push(sim, okta, "account-enabled", email=holder(okta["source"]).email)
    assert (
        answer["status"] == 400
        and "Unsupported event type risc:account-enabled" in answer["body"]["description"]
    )


def test_an_unknown_subject_is_recorded_and_ignored(sim, okta):
    answer = push(sim, okta, subject={"format": "email", "email": "nobody@elsewhere.example"})
    assert answer["status"] == 202
    received = ReceivedSet.objects.get(jti=answer["jti"])
    assert (received.outcome, received.identity) == ("unknown_subject", None)
    assert AuditEvent.objects.get(action="ssf.set_received").data["outcome"] == "unknown_subject"
    assert not AuditEvent.objects.filter(action="identity.offboarded").exists()


def test_wrong_content_type_and_oversized_bodies(sim, okta):
    email = holder(okta["source"]).email
    wrong = push(sim, okta, email=email, content_type="application/json")
    assert wrong["status"] == 415 and wrong["body"]["err"] == "invalid_request"
    big = push(sim, okta, email=email, raw="a" * 70_000)
    assert big["status"] == 413
    assert len(refusals()) == 2


def test_unknown_and_disabled_streams(sim, okta, live_server):
    okta["stream"].enabled = False
    okta["stream"].save()
    answer = push(sim, okta, email=holder(okta["source"]).email)
    assert answer["status"] == 400 and answer["body"]["err"] == "access_denied"
    gone = one(
        sim.ssf_push(
            "okta",
            "session-revoked",
            url=f"{live_server.url}/ssf/receive/{'0' * 8}-0000-0000-0000-{'0' * 12}",
            aud=AUDIENCE,
            email=holder(okta["source"]).email,
        )
    )
    assert gone["status"] == 404
    assert refusals()[-1]["description"].startswith("No stream 00000000-")


@pytest.mark.parametrize(
    "subject",
    [
        lambda p: {"format": "email", "email": p.email.upper()},
        lambda p: {"format": "opaque", "id": p.external_id},
        lambda p: {"format": "complex", "user": {"format": "opaque", "id": p.external_id}},
        "iss_sub",
    ],
    ids=["email", "opaque", "complex", "iss_sub"],
)
def test_subject_formats_are_matched_and_session_events_recorded(sim, okta, subject):
    person = holder(okta["source"])
    if subject == "iss_sub":
        subject_value = {"format": "iss_sub", "iss": sim.ssf_issuer("okta"), "sub": person.external_id}
    else:
        subject_value = subject(person)
    answer = push(sim, okta, "session-revoked", subject=subject_value)
    assert answer["status"] == 202
    received = ReceivedSet.objects.get(jti=answer["jti"])
    assert (received.outcome, received.identity_id) == ("recorded", person.pk)
    # A session at the IdP is not an AI grant: nothing is revoked.
    assert Grant.objects.filter(identity=person, status=Grant.Status.ACTIVE).exists()


def test_credential_compromise_is_recorded(sim, okta):
    person = holder(okta["source"])
    answer = push(
        sim, okta, "credential-compromise", email=person.email, payload={"credential_type": "password"}
    )
    assert answer["status"] == 202
    event = AuditEvent.objects.get(action="ssf.set_received")
    assert event.target_id == str(person.pk) and event.data["events"] == ["risc:credential-compromise"]


def test_device_compliance_change_updates_the_device_posture(sim, okta):
    person = holder(okta["source"])
    device = Device.objects.create(source=okta["source"], external_id="dev-77", owner=person, compliant=True)
    answer = push(
        sim,
        okta,
        "device-compliance-change",
        subject={"format": "complex", "device": {"format": "opaque", "id": "dev-77"}},
        payload={"previous_status": "compliant", "current_status": "not-compliant"},
    )
    assert answer["status"] == 202
    device.refresh_from_db()
    assert device.compliant is False
    assert AuditEvent.objects.filter(action="device.compliance_changed", device=device).count() == 1


def test_identifier_changed_updates_the_email(sim, okta):
    person = holder(okta["source"])
    answer = push(
        sim, okta, "identifier-changed", email=person.email, payload={"new-value": "renamed@example.com"}
    )
    assert answer["status"] == 202
    person.refresh_from_db()
    assert person.email == "renamed@example.com"
    assert AuditEvent.objects.filter(action="identity.email_changed").count() == 1


def test_the_transmitter_configuration_names_the_jwks(sim):
    import httpx

    config = httpx.get(f"{sim.ssf_issuer('google')}/.well-known/ssf-configuration").json()
    assert config["issuer"] == sim.ssf_issuer("google") and config["jwks_uri"].endswith("/jwks")
    assert httpx.get(config["jwks_uri"]).json()["keys"][0]["kty"] == "RSA"


def test_a_stream_requiring_an_authorization_header_refuses_pushes_without_it(sim, okta):
    stream = okta["stream"]
    stream.set_authorization("Bearer push-secret-1")
    stream.save()
    assert "push-secret-1" not in stream.authorization_hash
    email = holder(okta["source"]).email
    missing = push(sim, okta, "session-revoked", email=email)
    wrong = push(sim, okta, "session-revoked", email=email, authorization="Bearer guess")
    right = push(sim, okta, "session-revoked", email=email, authorization="Bearer push-secret-1")
    assert (missing["status"], wrong["status"], right["status"]) == (401, 401, 202)
    assert missing["body"]["err"] == "authentication_failed"
    assert [r["err"] for r in refusals()] == ["authentication_failed"] * 2


def test_iam_configures_a_stream_in_the_admin(client, iam, okta):
    from signals.models import ReceiverStream

    client.force_login(iam)
    stream = okta["stream"]
    page = client.get(f"/admin/signals/receiverstream/{stream.pk}/change/")
    assert page.status_code == 200 and f"/ssf/receive/{stream.pk}" in page.content.decode()
    form = {
        "name": stream.name,
        "source": stream.source_id,
        "issuer": stream.issuer,
        "jwks_url": stream.jwks_url,
        "configuration_url": stream.configuration_url,
        "audience": stream.audience,
        "enabled": "on",
        "delivery": "push",
        "poll_url": "",
        "push_authorization": "Bearer from-the-admin",
    }
    answer = client.post(f"/admin/signals/receiverstream/{stream.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert ReceiverStream.objects.get(pk=stream.pk).authorization_ok("Bearer from-the-admin")
    refused = client.post(f"/admin/signals/receiverstream/{stream.pk}/change/", {**form, "delivery": "poll"})
    assert refused.status_code == 200
    assert "needs the transmitter&#x27;s poll endpoint" in refused.content.decode()
    assert client.get("/admin/signals/receivedset/").status_code == 200


def test_the_received_sets_list_costs_the_same_for_one_or_fifty(client, iam, okta):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    client.force_login(iam)
    person = holder(okta["source"])

    def add(n: int, start: int) -> None:
        ReceivedSet.objects.bulk_create(
            ReceivedSet(
                stream=okta["stream"],
                issuer="i",
                jti=f"j{start + i}",
                identity=person,
                issued_at=timezone.now(),
            )
            for i in range(n)
        )

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/admin/signals/receivedset/").status_code == 200
        return len(captured)

    add(1, 0)
    one_row = count()
    add(49, 1)
    assert count() == one_row


def test_identifier_changed_to_something_not_an_email_changes_nothing(sim, okta):
    person = holder(okta["source"])
    answer = push(sim, okta, "identifier-changed", email=person.email, payload={"new-value": "+1 555 0100"})
    assert answer["status"] == 202
    person.refresh_from_db()
    assert "@" in person.email and not AuditEvent.objects.filter(action="identity.email_changed").exists()
    assert (
        ReceivedSet.objects.get(jti=answer["jti"]).summary["risc:identifier-changed"]["email_changed"]
        is False
    )
