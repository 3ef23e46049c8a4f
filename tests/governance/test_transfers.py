"""Ownership transfers: the owner offers, the new owner accepts or declines; permissions move on accept."""

from __future__ import annotations

import pytest
from django.core import mail
from guardian.shortcuts import get_perms

from audit.models import AuditEvent
from connectors.models import Connector, IllegalTransition
from governance import transfers
from governance.models import OwnershipTransfer
from governance.services import OWNER_PERMISSIONS, connector_set_owner
from tests.factories import ConnectorFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def heir(db):
    return UserFactory(username="hugo", email="hugo.heir@example.com", first_name="Hugo")


@pytest.fixture
def offer(owned_connector, owner, heir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return transfers.transfer_offer(
            connector=owned_connector, to_user=heir, actor=owner, note="Moving teams"
        )


def test_an_offer_is_pending_and_emailed_after_commit(
    owned_connector, owner, heir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        transfer = transfers.transfer_offer(connector=owned_connector, to_user=heir, actor=owner)
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    assert (transfer.status, transfer.reason, transfer.from_user) == ("pending", "handover", owner)
    assert [m.to for m in mail.outbox] == [[heir.email]]
    assert f"/attest/transfers/{transfer.pk}/" in mail.outbox[0].body
    assert AuditEvent.objects.get(action="transfer.offered").actor_user == owner


def test_nothing_moves_until_the_new_owner_accepts(offer, owned_connector, owner, heir):
    owned_connector.refresh_from_db()
    assert owned_connector.business_owner == owner
    assert get_perms(heir, owned_connector) == []


def test_accepting_moves_ownership_and_permissions(
    offer, owned_connector, owner, heir, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        transfers.transfer_accept(transfer=offer, actor=heir)
    owned_connector.refresh_from_db()
    assert owned_connector.business_owner == heir
    assert sorted(get_perms(heir, owned_connector)) == sorted(OWNER_PERMISSIONS)
    assert get_perms(owner, owned_connector) == []
    offer.refresh_from_db()
    assert offer.status == "accepted" and offer.decided_at is not None
    assert AuditEvent.objects.filter(action="transfer.accepted").count() == 1
    assert AuditEvent.objects.filter(action="connector.owner_set", connector=owned_connector).exists()
    assert [m.to for m in mail.outbox] == [[owner.email]]


def test_declining_keeps_the_owner_and_tells_them_why(
    offer, owned_connector, owner, heir, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        transfers.transfer_decline(transfer=offer, actor=heir, reason="Not my area")
    owned_connector.refresh_from_db()
    assert owned_connector.business_owner == owner
    assert get_perms(heir, owned_connector) == []
    offer.refresh_from_db()
    assert offer.status == "declined" and "Not my area" in offer.note
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "Not my area" in mail.outbox[0].body


def test_declining_needs_a_reason(offer, heir):
    with pytest.raises(transfers.TransferError):
        transfers.transfer_decline(transfer=offer, actor=heir, reason="  ")
    offer.refresh_from_db()
    assert offer.status == "pending"


def test_only_the_proposed_owner_answers(offer, owner, iam):
    for actor in (owner, iam):
        with pytest.raises(transfers.TransferNotAllowed):
            transfers.transfer_accept(transfer=offer, actor=actor)
        with pytest.raises(transfers.TransferNotAllowed):
            transfers.transfer_decline(transfer=offer, actor=actor, reason="no")


def test_a_transfer_is_answered_once(offer, heir):
    transfers.transfer_accept(transfer=offer, actor=heir)
    with pytest.raises(IllegalTransition):
        transfers.transfer_decline(transfer=offer, actor=heir, reason="changed my mind")


def test_only_the_owner_or_iam_can_offer(owned_connector, heir, outsider, iam):
    with pytest.raises(transfers.TransferNotAllowed):
        transfers.transfer_offer(connector=owned_connector, to_user=heir, actor=outsider)
    transfer = transfers.transfer_offer(connector=owned_connector, to_user=heir, actor=iam)
    assert transfer.from_user == owned_connector.business_owner


def test_a_second_offer_waits_for_the_first(offer, owned_connector, owner):
    with pytest.raises(transfers.TransferError):
        transfers.transfer_offer(connector=owned_connector, to_user=UserFactory(), actor=owner)


def test_an_offer_to_the_current_owner_is_refused(owned_connector, owner):
    with pytest.raises(transfers.TransferError):
        transfers.transfer_offer(connector=owned_connector, to_user=owner, actor=owner)


def test_an_offer_goes_stale_when_iam_assigns_another_owner(offer, owned_connector, heir, iam):
    connector_set_owner(connector=owned_connector, owner=UserFactory(), actor=iam)
    with pytest.raises(transfers.TransferError):
        transfers.transfer_accept(transfer=offer, actor=heir)
    offer.refresh_from_db()
    assert offer.status == "pending"


def test_the_owner_can_withdraw_an_offer(offer, owner):
    transfers.transfer_cancel(transfer=offer, actor=owner)
    offer.refresh_from_db()
    assert offer.status == "cancelled"


def test_the_new_owner_accepts_on_the_transfer_page(client, offer, owned_connector, heir):
    client.force_login(heir)
    page = client.get(f"/attest/transfers/{offer.pk}/")
    assert page.status_code == 200 and b"Accept ownership" in page.content
    response = client.post(f"/attest/transfers/{offer.pk}/", {"action": "accept"})
    assert response.status_code == 302
    owned_connector.refresh_from_db()
    assert owned_connector.business_owner == heir


def test_the_new_owner_declines_on_the_transfer_page(client, offer, heir):
    client.force_login(heir)
    client.post(f"/attest/transfers/{offer.pk}/", {"action": "decline", "reason": "Too busy"})
    offer.refresh_from_db()
    assert offer.status == "declined"


def test_a_decline_without_reason_on_the_page_changes_nothing(client, offer, heir):
    client.force_login(heir)
    client.post(f"/attest/transfers/{offer.pk}/", {"action": "decline", "reason": ""})
    offer.refresh_from_db()
    assert offer.status == "pending"


def test_the_offerer_cannot_accept_on_the_page(client, offer, owner):
    client.force_login(owner)
    assert client.get(f"/attest/transfers/{offer.pk}/").status_code == 200
    assert client.post(f"/attest/transfers/{offer.pk}/", {"action": "accept"}).status_code == 403


def test_the_owner_offers_from_the_hand_over_page(client, owned_connector, owner, heir):
    client.force_login(owner)
    assert client.get(f"/attest/connectors/{owned_connector.pk}/hand-over/").status_code == 200
    response = client.post(
        f"/attest/connectors/{owned_connector.pk}/hand-over/", {"email": heir.email, "note": "Yours now"}
    )
    transfer = OwnershipTransfer.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/attest/transfers/{transfer.pk}/"
    assert transfer.to_user == heir


def test_the_hand_over_page_refuses_an_unknown_address(client, owned_connector, owner):
    client.force_login(owner)
    response = client.post(
        f"/attest/connectors/{owned_connector.pk}/hand-over/", {"email": "nobody@example.com"}
    )
    assert response.status_code == 200
    assert not OwnershipTransfer.objects.exists()


def test_the_transfer_list_shows_what_waits_for_the_user(client, offer, heir):
    client.force_login(heir)
    response = client.get("/attest/transfers/")
    assert response.status_code == 200
    assert [t.pk for t in response.context["incoming"]] == [offer.pk]


def test_the_transfer_list_queries_do_not_grow(client, heir, iam, django_assert_num_queries):
    def offer_one():
        transfers.transfer_offer(connector=ConnectorFactory(business_owner=iam), to_user=heir, actor=iam)

    offer_one()
    client.force_login(heir)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get("/attest/transfers/")
    for _ in range(49):
        offer_one()
    with django_assert_num_queries(len(ctx.captured_queries)):
        response = client.get("/attest/transfers/")
    assert len(response.context["incoming"]) == 50


def test_the_outsider_is_refused_every_transfer_page(client, offer, owned_connector, outsider):
    client.force_login(outsider)
    assert client.get("/attest/transfers/").status_code == 403
    assert client.get(f"/attest/transfers/{offer.pk}/").status_code == 404
    assert client.post(f"/attest/transfers/{offer.pk}/", {"action": "accept"}).status_code == 404
    assert client.get(f"/attest/connectors/{owned_connector.pk}/hand-over/").status_code == 404
    assert (
        client.post(
            f"/attest/connectors/{owned_connector.pk}/hand-over/", {"email": outsider.email}
        ).status_code
        == 404
    )
    assert Connector.objects.get(pk=owned_connector.pk).business_owner != outsider
