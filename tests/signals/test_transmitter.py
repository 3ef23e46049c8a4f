"""Lanyard as an SSF transmitter, over real HTTP: metadata, JWKS, stream management, push, poll, outbox."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from connectors.models import Connector, Grant, Identity
from connectors.services import connector_revoke, grant_revoke, identity_set_status
from signals import events as ev
from signals import jwks as receiver_jwks
from signals.models import OutboxSet, ReceivedSet, ReceiverStream, SigningKey, TransmitterStream
from signals.polling import poll_stream
from signals.streams import receiver_create, receiver_revoke
from signals.tasks import deliver_set, sweep_outbox
from tests.factories import ConnectorFactory, GrantFactory, IdentityFactory, IdentitySourceFactory

from .txtools import PushReceiver

pytestmark = pytest.mark.django_db(transaction=True)

SESSION_REVOKED = ev.SESSION_REVOKED


@pytest.fixture
def tx(live_server, settings):
    """Lanyard's transmitter at the live server, one authorised receiver and its HTTP client."""
    settings.LANYARD_SSF_ISSUER = live_server.url
    settings.LANYARD_SSF_PUSH_BACKOFF_BASE = 10
    settings.LANYARD_SSF_PUSH_MAX_ATTEMPTS = 3
    receiver, token = receiver_create(name="edge gateway", audience="https://gateway.test", actor="test")
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    push = PushReceiver(
        jwks_url=f"{live_server.url}/ssf/jwks.json", audience="https://gateway.test", issuer=live_server.url
    )
    yield {"receiver": receiver, "token": token, "api": api, "push": push, "url": live_server.url}
    api.close()
    push.stop()


def create_stream(tx, **config) -> dict:
    body = {
        "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": tx["push"].url},
        "events_requested": [ev.SESSION_REVOKED, ev.TOKEN_CLAIMS_CHANGE, ev.CREDENTIAL_CHANGE],
        "description": "edge",
    } | config
    answer = tx["api"].post("/ssf/streams", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def portal_grant(**kw) -> Grant:
    return GrantFactory(source=None, kind=Grant.Kind.PORTAL_CREDENTIAL, **kw)


def outbox_row(**kw) -> OutboxSet:
    return OutboxSet.objects.filter(**kw).get()


# ------------------------------------------------------------------------------------ metadata, keys


def test_the_configuration_and_the_jwks_are_served(tx):
    config = httpx.get(f"{tx['url']}/.well-known/ssf-configuration").json()
    assert config["spec_version"] == "1_0" and config["issuer"] == tx["url"]
    assert config["delivery_methods_supported"] == ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"]
    for name in ("configuration", "status", "add_subject", "remove_subject", "verification"):
        assert config[f"{name}_endpoint"].startswith(tx["url"] + "/ssf/streams")
    jwks = httpx.get(config["jwks_uri"]).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and "d" not in key  # public only
    stored = SigningKey.objects.get()
    assert stored.kid == key["kid"] and "PRIVATE" not in stored.private_key_encrypted  # encrypted at rest


def test_a_revoked_grant_is_pushed_as_session_revoked_signed_with_our_key(tx):
    create_stream(tx)
    grant = portal_grant()
    grant_revoke(grant=grant, actor="system", reason="left the team")

    (got,) = tx["push"].received
    assert got["header"]["typ"] == "secevent+jwt" and got["header"]["kid"] == SigningKey.objects.get().kid
    claims = got["claims"]
    assert claims["aud"] == "https://gateway.test" and claims["iss"] == tx["url"]
    assert claims["sub_id"] == {
        "format": "complex",
        "application": {"format": "opaque", "id": f"connector:{grant.connector_id}"},
        "user": {"format": "email", "email": grant.identity.email},
    }
    payload = claims["events"][SESSION_REVOKED]
    assert payload["reason_admin"] == {"en": "left the team"} and payload["initiating_entity"] == "policy"
    row = outbox_row(jti=claims["jti"])
    assert (row.state, row.attempts) == ("delivered", 1)
    actions = list(
        AuditEvent.objects.filter(action__startswith="ssf.set_")
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions == ["ssf.set_emitted", "ssf.set_delivered"]


def test_key_rotation_keeps_the_old_kid_published_and_signs_with_the_new_one(tx, settings):
    create_stream(tx)
    grant_revoke(grant=portal_grant(), actor="system", reason="one")
    old = tx["push"].received[0]["header"]["kid"]
    call_command("ssf_rotate_key")
    new = SigningKey.objects.get(retired_at__isnull=True).kid
    assert new != old
    kids = {k["kid"] for k in httpx.get(f"{tx['url']}/ssf/jwks.json").json()["keys"]}
    assert kids == {old, new}
    grant_revoke(grant=portal_grant(), actor="system", reason="two")
    assert [r["header"]["kid"] for r in tx["push"].received] == [old, new]
    # Past the retention period the old key leaves the JWKS.
    SigningKey.objects.filter(kid=old).update(retired_at=timezone.now() - timedelta(hours=25))
    kids = {k["kid"] for k in httpx.get(f"{tx['url']}/ssf/jwks.json").json()["keys"]}
    assert kids == {new}
    assert AuditEvent.objects.filter(action="ssf.key_rotated").count() == 1


# ------------------------------------------------------------------------------------ stream management


def test_stream_create_read_update_replace_delete(tx):
    api = tx["api"]
    created = create_stream(tx, events_requested=[SESSION_REVOKED, "https://example.com/unknown"])
    sid = created["stream_id"]
    assert created["events_delivered"] == [SESSION_REVOKED]
    assert created["delivery"] == {"method": "urn:ietf:rfc:8935", "endpoint_url": tx["push"].url}
    assert created["aud"] == "https://gateway.test"
    assert api.get("/ssf/streams", params={"stream_id": sid}).json() == created
    assert [s["stream_id"] for s in api.get("/ssf/streams").json()] == [sid]

    patched = api.patch("/ssf/streams", json={"stream_id": sid, "description": "renamed"}).json()
    assert patched["description"] == "renamed" and patched["events_requested"] == created["events_requested"]

    replaced = api.put(
        "/ssf/streams",
        json={
            "stream_id": sid,
            "delivery": {"method": "urn:ietf:rfc:8936"},
            "events_requested": [ev.CREDENTIAL_CHANGE],
        },
    ).json()
    assert (
        replaced["description"] == ""
        and replaced["delivery"]["endpoint_url"] == f"{tx['url']}/ssf/poll/{sid}"
    )
    assert replaced["events_delivered"] == [ev.CREDENTIAL_CHANGE]

    assert api.delete("/ssf/streams", params={"stream_id": sid}).status_code == 204
    assert api.get("/ssf/streams", params={"stream_id": sid}).status_code == 404
    actions = list(
        AuditEvent.objects.filter(action__startswith="ssf.stream_")
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions == [
        "ssf.stream_created",
        "ssf.stream_updated",
        "ssf.stream_replaced",
        "ssf.stream_deleted",
    ]


def test_a_bad_or_revoked_token_is_401_and_another_receivers_stream_is_404(tx):
    sid = create_stream(tx)["stream_id"]
    for header in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {tx['token']}"}):
        answer = httpx.get(f"{tx['url']}/ssf/streams", headers=header)
        assert answer.status_code == 401 and answer.json()["err"] == "authentication_failed"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    _, other_token = receiver_create(name="someone else", actor="test")
    other = {"Authorization": f"Bearer {other_token}"}
    for method, path, kwargs in (
        ("GET", "/ssf/streams", {"params": {"stream_id": sid}}),
        ("DELETE", "/ssf/streams", {"params": {"stream_id": sid}}),
        ("PATCH", "/ssf/streams", {"json": {"stream_id": sid, "description": "mine now"}}),
        ("POST", "/ssf/streams/status", {"json": {"stream_id": sid, "status": "disabled"}}),
        ("POST", "/ssf/streams/verify", {"json": {"stream_id": sid}}),
        ("POST", f"/ssf/poll/{sid}", {"json": {}}),
    ):
        answer = httpx.request(method, f"{tx['url']}{path}", headers=other, **kwargs)
        assert answer.status_code == 404, (method, path, answer.text)
    assert TransmitterStream.objects.get(pk=sid).status == "enabled"
    receiver_revoke(receiver=tx["receiver"], actor="test")
    assert tx["api"].get("/ssf/streams").status_code == 401


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "Malformed JSON"),
        (b"[]", "application/json", 400, "JSON object"),
        (b'{"delivery": {"method": "carrier-pigeon"}}', "application/json", 400, "delivery.method"),
        (b'{"delivery": {"method": "urn:ietf:rfc:8935"}}', "application/json", 400, "endpoint_url"),
        (
            b'{"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "ftp://x"}}',
            "application/json",
            400,
            "endpoint_url",
        ),
        (b'{"events_requested": "all"}', "application/json", 400, "events_requested"),
        (b'{"description": 5}', "application/json", 400, "description"),
        (b"{}", "text/plain", 415, "application/json"),
        (b"", "application/json", 400, "empty"),
    ],
)
def test_malformed_stream_configurations_are_400_never_500(tx, body, content_type, status, says):
    answer = tx["api"].post("/ssf/streams", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert says in answer.json()["description"]
    assert not TransmitterStream.objects.exists()


def test_bad_requests_to_status_subjects_and_poll(tx):
    api = tx["api"]
    sid = create_stream(tx)["stream_id"]
    cases = [
        ("/ssf/streams/status", {"stream_id": sid, "status": "sleeping"}, 400),
        ("/ssf/streams/status", {"status": "paused"}, 400),
        ("/ssf/streams/status", {"stream_id": "not-a-uuid", "status": "paused"}, 404),
        ("/ssf/streams/subjects:add", {"stream_id": sid, "subject": "bob"}, 400),
        ("/ssf/streams/subjects:add", {"stream_id": sid, "subject": {"format": "email"}}, 400),
        ("/ssf/streams/verify", {"stream_id": sid, "state": 7}, 400),
        (f"/ssf/poll/{sid}", {"maxEvents": 3}, 400),  # a push stream
    ]
    for path, body, status in cases:
        answer = api.post(path, json=body)
        assert answer.status_code == status, (path, body, answer.text)
        assert answer.json()["err"]
    assert api.get("/ssf/streams/status").status_code == 400
    assert api.request("PUT", "/ssf/streams/verify").status_code == 405


def test_status_pause_holds_events_and_enabling_delivers_them(tx):
    api = tx["api"]
    sid = create_stream(tx)["stream_id"]
    answer = api.post(
        "/ssf/streams/status", json={"stream_id": sid, "status": "paused", "reason": "maintenance"}
    )
    assert answer.json() == {"stream_id": sid, "status": "paused", "reason": "maintenance"}
    assert api.get("/ssf/streams/status", params={"stream_id": sid}).json()["status"] == "paused"
    grant_revoke(grant=portal_grant(), actor="system", reason="held")
    assert tx["push"].attempts == 0
    assert outbox_row().state == "pending"
    sweep_outbox()  # a paused stream's SETs are held, not swept out
    assert tx["push"].attempts == 0

    api.post("/ssf/streams/status", json={"stream_id": sid, "status": "enabled"})
    assert tx["push"].events() == [SESSION_REVOKED]
    assert outbox_row().state == "delivered"


def test_a_disabled_stream_drops_events(tx):
    sid = create_stream(tx)["stream_id"]
    tx["api"].post("/ssf/streams/status", json={"stream_id": sid, "status": "disabled"})
    grant_revoke(grant=portal_grant(), actor="system", reason="dropped")
    assert not OutboxSet.objects.exists() and tx["push"].attempts == 0


def test_subjects_added_and_removed_filter_the_events(tx):
    api = tx["api"]
    sid = create_stream(tx)["stream_id"]
    alice, bob = IdentityFactory(email="alice@example.com"), IdentityFactory(email="bob@example.com")
    removed = api.post(
        "/ssf/streams/subjects:remove",
        json={"stream_id": sid, "subject": {"format": "email", "email": "BOB@example.com"}},
    )
    assert removed.status_code == 204
    grant_revoke(grant=portal_grant(identity=alice), actor="system", reason="a")
    grant_revoke(grant=portal_grant(identity=bob), actor="system", reason="b")
    assert [r["claims"]["sub_id"]["user"]["email"] for r in tx["push"].received] == ["alice@example.com"]

    # A stream that wants only the subjects it added.
    TransmitterStream.objects.filter(pk=sid).update(default_subjects="NONE")
    added = api.post(
        "/ssf/streams/subjects:add",
        json={"stream_id": sid, "subject": {"format": "email", "email": "bob@example.com"}, "verified": True},
    )
    assert added.status_code == 200
    grant_revoke(grant=portal_grant(identity=alice), actor="system", reason="c")
    grant_revoke(grant=portal_grant(identity=bob), actor="system", reason="d")
    assert [r["claims"]["sub_id"]["user"]["email"] for r in tx["push"].received] == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert AuditEvent.objects.filter(action="ssf.stream_subject_added").count() == 1
    assert AuditEvent.objects.filter(action="ssf.stream_subject_removed").count() == 1


def test_verification_sends_a_verification_set_with_the_state(tx):
    sid = create_stream(tx, events_requested=[])["stream_id"]
    assert (
        tx["api"].post("/ssf/streams/verify", json={"stream_id": sid, "state": "abc123"}).status_code == 204
    )
    (got,) = tx["push"].received
    assert got["claims"]["events"] == {ev.VERIFICATION: {"state": "abc123"}}
    assert got["claims"]["sub_id"] == {"format": "opaque", "id": sid}


def test_push_authorization_header_is_sent_and_never_shown(tx):
    config = create_stream(
        tx,
        delivery={
            "method": "urn:ietf:rfc:8935",
            "endpoint_url": tx["push"].url,
            "authorization_header": "Bearer s3cret",
        },
    )
    assert "authorization_header" not in config["delivery"]
    assert "s3cret" not in TransmitterStream.objects.get().authorization_encrypted
    grant_revoke(grant=portal_grant(), actor="system", reason="x")
    assert tx["push"].received[0]["authorization"] == "Bearer s3cret"


# ------------------------------------------------------------------------------------ what is emitted


def test_connector_suspended_revoked_and_identity_offboarded_and_gateway_tokens(tx, iam):
    from governance.services import connector_suspend

    create_stream(tx)
    connector = ConnectorFactory()
    connector_suspend(connector=connector, actor=iam, reason="under review")
    (got,) = tx["push"].received
    payload = got["claims"]["events"][ev.TOKEN_CLAIMS_CHANGE]
    assert payload["claims"]["connector_status"] == "suspended"
    assert got["claims"]["sub_id"]["application"]["id"] == f"connector:{connector.pk}"

    connector_revoke(connector=Connector.objects.get(pk=connector.pk), actor=iam, reason="gone")
    assert tx["push"].received[-1]["claims"]["events"][ev.TOKEN_CLAIMS_CHANGE]["claims"][
        "connector_status"
    ] == ("revoked")

    person = IdentityFactory(email="carol@example.com")
    identity_set_status(identity=person, status=Identity.Status.SUSPENDED, actor="test", reason="HR")
    subjects = [
        r["claims"]["sub_id"] for r in tx["push"].received if SESSION_REVOKED in r["claims"]["events"]
    ]
    assert {"format": "email", "email": "carol@example.com"} in subjects

    token = portal_grant(external_id="gateway:client:1:wiki")
    grant_revoke(grant=token, actor=iam, reason="lost laptop")
    last = tx["push"].received[-1]["claims"]["events"]
    assert last[ev.CREDENTIAL_CHANGE]["change_type"] == "revoke"
    assert last[ev.CREDENTIAL_CHANGE]["initiating_entity"] == "admin"


def test_the_outbox_row_is_written_in_the_transaction_of_the_revocation(tx, monkeypatch):
    create_stream(tx)
    idp_grant = GrantFactory(source=IdentitySourceFactory())  # revoked at its IdP after commit
    monkeypatch.setattr("connectors.services._enqueue_revocations", lambda pks: None)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        grant_revoke(grant=idp_grant, actor="system", reason="rolled back")
        assert outbox_row().event_type == SESSION_REVOKED  # in the same transaction
        raise Rollback
    assert not OutboxSet.objects.exists() and not AuditEvent.objects.filter(action="ssf.set_emitted").exists()
    assert tx["push"].attempts == 0

    grant_revoke(grant=idp_grant, actor="system", reason="committed")
    assert outbox_row().state == "delivered"
    assert Grant.objects.get(pk=idp_grant.pk).status == Grant.Status.REVOKING


# ------------------------------------------------------------------------------------ retries, dead letters


def test_receiver_down_retries_with_backoff_then_dead_then_replayed_from_the_admin(tx, client, iam):
    create_stream(tx)
    tx["push"].status = 503
    grant_revoke(grant=portal_grant(), actor="system", reason="x")
    row = outbox_row()
    assert (row.state, row.attempts) == ("pending", 1)
    first_wait = (row.next_attempt_at - timezone.now()).total_seconds()
    assert 8 < first_wait <= 10  # base 10 s
    assert "HTTP 503" in row.last_error
    assert deliver_set(row.pk) == "skipped"  # not due yet: a duplicate task does nothing

    OutboxSet.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    deliver_set(row.pk)
    row.refresh_from_db()
    assert row.attempts == 2
    assert 18 < (row.next_attempt_at - timezone.now()).total_seconds() <= 20  # doubled

    OutboxSet.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    deliver_set(row.pk)
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("dead", 3)  # LANYARD_SSF_PUSH_MAX_ATTEMPTS
    assert tx["push"].attempts == 3
    assert AuditEvent.objects.filter(action="ssf.set_retrying").count() == 2
    assert AuditEvent.objects.get(action="ssf.set_dead").data["error"].startswith("HTTP 503")

    client.force_login(iam)
    changelist = client.get("/admin/signals/outboxset/?state__exact=dead")
    assert changelist.status_code == 200 and row.jti in changelist.content.decode()
    tx["push"].status = 202
    answer = client.post(
        "/admin/signals/outboxset/", {"action": "retry_delivery", ACTION_CHECKBOX_NAME: [row.pk]}, follow=True
    )
    assert answer.status_code == 200
    row.refresh_from_db()
    assert row.state == "delivered" and tx["push"].events() == [SESSION_REVOKED]
    assert AuditEvent.objects.filter(action="ssf.set_requeued").count() == 1


def test_a_key_the_receiver_does_not_know_yet_is_retried_but_a_refusal_is_dead_at_once(tx):
    create_stream(tx)
    tx["push"].audience = "someone else"  # our SETs now fail its checks: 400 invalid_key from it
    grant_revoke(grant=portal_grant(), actor="system", reason="x")
    row = outbox_row()
    # invalid_key may be a receiver that has not fetched a new key yet: retried, not dead.
    assert row.state == "pending" and "invalid_key" in row.last_error

    tx["push"].status = 400  # any other refusal: no retry can cure it
    grant_revoke(grant=portal_grant(), actor="system", reason="y")
    dead = OutboxSet.objects.exclude(pk=row.pk).get()
    assert (dead.state, dead.attempts) == ("dead", 1)
    assert AuditEvent.objects.get(action="ssf.set_dead").data["permanent"] is True


def test_the_sweep_delivers_rows_whose_task_was_lost(tx, monkeypatch, settings):
    settings.LANYARD_SSF_OUTBOX_SWEEP_SECONDS = 0
    create_stream(tx)
    monkeypatch.setattr(
        "signals.outbox.enqueue_deliveries", lambda pks, countdown=None: 0
    )  # the broker lost it
    grant_revoke(grant=portal_grant(), actor="system", reason="x")
    assert outbox_row().state == "pending" and tx["push"].attempts == 0
    monkeypatch.undo()
    assert sweep_outbox() == 1
    assert outbox_row().state == "delivered"
    assert sweep_outbox() == 0  # idempotent


# ------------------------------------------------------------------------------------ poll delivery


def test_poll_delivery_with_acknowledgements_and_errors(tx):
    api = tx["api"]
    sid = create_stream(tx, delivery={"method": "urn:ietf:rfc:8936"})["stream_id"]
    poll_url = f"/ssf/poll/{sid}"
    grant_revoke(grant=portal_grant(), actor="system", reason="one")
    grant_revoke(grant=portal_grant(), actor="system", reason="two")
    first = api.post(poll_url, json={"maxEvents": 1, "returnImmediately": True}).json()
    assert first["moreAvailable"] is True and len(first["sets"]) == 1
    jti, token = next(iter(first["sets"].items()))
    key = jwt.PyJWKClient(f"{tx['url']}/ssf/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="https://gateway.test")
    assert claims["jti"] == jti and SESSION_REVOKED in claims["events"]

    second = api.post(poll_url, json={"maxEvents": 10, "returnImmediately": True, "ack": [jti]}).json()
    assert list(second["sets"]) != [jti] and len(second["sets"]) == 1 and second["moreAvailable"] is False
    assert outbox_row(jti=jti).state == "acknowledged"
    other = next(iter(second["sets"]))
    answer = api.post(
        poll_url,
        json={
            "maxEvents": 10,
            "returnImmediately": True,
            "setErrs": {other: {"err": "invalid_request", "description": "nope"}},
        },
    ).json()
    assert answer == {"sets": {}, "moreAvailable": False}
    dead = outbox_row(jti=other)
    assert dead.state == "dead" and "receiver: invalid_request: nope" in dead.last_error
    assert AuditEvent.objects.filter(action="ssf.set_acknowledged").count() == 1


def test_lanyard_own_receiver_takes_our_push_and_our_poll(tx, live_server):
    """Lanyard's receiver (signals.services) verifies our SETs against our JWKS over HTTP."""
    receiver_jwks.clear()
    source = IdentitySourceFactory(name="lanyard-self")
    person = IdentityFactory(source=source, email="dana@example.com")
    inbound = ReceiverStream.objects.create(
        name="lanyard itself",
        source=source,
        issuer=tx["url"],
        jwks_url=f"{tx['url']}/ssf/jwks.json",
        audience="https://gateway.test",
    )
    create_stream(
        tx,
        delivery={
            "method": "urn:ietf:rfc:8935",
            "endpoint_url": f"{live_server.url}/ssf/receive/{inbound.pk}",
        },
    )
    grant_revoke(grant=portal_grant(identity=person), actor="system", reason="x")
    received = ReceivedSet.objects.get()
    assert received.identity_id == person.pk and received.event_types == ["caep:session-revoked"]
    assert OutboxSet.objects.get().state == "delivered"

    # Poll: the project's poll client against our poll endpoint, acknowledging what it accepted.
    sid = create_stream(tx, delivery={"method": "urn:ietf:rfc:8936"})["stream_id"]
    TransmitterStream.objects.exclude(pk=sid).update(status="disabled")
    inbound.delivery, inbound.poll_url = ReceiverStream.Delivery.POLL, f"{tx['url']}/ssf/poll/{sid}"
    inbound.set_poll_authorization(f"Bearer {tx['token']}")
    inbound.save()
    grant_revoke(grant=portal_grant(identity=person), actor="system", reason="y")
    summary = poll_stream(inbound)
    assert (summary.received, summary.acknowledged, summary.refused) == (1, 1, 0)
    assert OutboxSet.objects.get(stream_id=sid).state == "acknowledged"
    assert ReceivedSet.objects.count() == 2


def test_the_admin_shows_a_new_receiver_token_once(client, iam, tx):
    client.force_login(iam)
    answer = client.post(
        "/admin/signals/transmitterreceiver/add/", {"name": "okta", "audience": "https://okta"}
    )
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "shown once" in page and "lssf_" in page
    assert AuditEvent.objects.filter(action="ssf.receiver_created", target_label="okta").count() == 1


def test_listing_streams_costs_the_same_queries_for_one_and_for_many(tx, client, django_assert_num_queries):
    headers = {"Authorization": f"Bearer {tx['token']}"}
    create_stream(tx)
    with django_assert_num_queries(2):  # the receiver (last use noted moments ago), the streams
        assert len(client.get("/ssf/streams", headers=headers).json()) == 1
    for _ in range(5):
        create_stream(tx)
    with django_assert_num_queries(2):
        assert len(client.get("/ssf/streams", headers=headers).json()) == 6


def test_an_outsider_sees_none_of_the_transmitter_admin(client, outsider, tx):
    client.force_login(outsider)
    for page in ("transmitterreceiver", "transmitterstream", "outboxset", "signingkey"):
        assert client.get(f"/admin/signals/{page}/").status_code in (302, 403)
