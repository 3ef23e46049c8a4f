"""Portal pages: who sees what, the actions they post, and a constant number of queries per list."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connectors.models import Connector, Grant
from governance.models import ConnectorRequest
from governance.services import connector_set_owner, request_create, request_decide_owner
from tests.factories import (
    ConnectorFactory,
    DeviceFactory,
    GrantFactory,
    IdentityFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

LISTS = ["portal:my_connectors", "portal:inbox", "portal:my_grants", "portal:shadow"]


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    return len(ctx.captured_queries)


def _ask(requester, connector) -> ConnectorRequest:
    return request_create(
        requester=requester,
        kind="existing",
        connector=connector,
        justification="Needed.",
        scopes=["Mail.Read"],
    )


def _owned(owner, iam, n: int) -> list[Connector]:
    connectors = ConnectorFactory.create_batch(n, vendor="Acme AI")
    for c in connectors:
        connector_set_owner(connector=c, owner=owner, actor=iam)
    return connectors


# --- constant queries, 1 row and 50 rows


@pytest.mark.parametrize("page", ["sorted", "filtered"])
def test_my_connectors_uses_the_same_queries_for_one_and_fifty_connectors(
    client, owner, iam, employee, django_assert_num_queries, page
):
    identity = employee.identities.get()
    suffix = "?sort=-holders" if page == "sorted" else "?risk=medium&q=connector"
    url = reverse("portal:my_connectors") + suffix
    client.force_login(owner)
    first = _owned(owner, iam, 1)
    GrantFactory(connector=first[0], identity=identity)
    one = _queries(client, url)
    for c in _owned(owner, iam, 49):
        GrantFactory(connector=c, identity=identity)
        _ask(UserFactory(), c)
    with django_assert_num_queries(one):
        response = client.get(url)
    assert len(response.context["table"].page.object_list) == 25


def test_the_inbox_uses_the_same_queries_for_one_and_fifty_requests(
    client, owner, iam, employee, django_assert_num_queries
):
    url = reverse("portal:inbox") + "?sort=-created_at"
    client.force_login(owner)
    (c,) = _owned(owner, iam, 1)
    _ask(employee, c)
    one = _queries(client, url)
    for c in _owned(owner, iam, 49):
        _ask(UserFactory(), c)
    with django_assert_num_queries(one):
        response = client.get(url)
    assert response.context["table"].page.paginator.count == 50


def test_the_iam_inbox_uses_the_same_queries_for_one_and_fifty_requests(
    client, owner, iam, iam2, employee, django_assert_num_queries
):
    url = reverse("portal:inbox")
    client.force_login(iam)
    (c,) = _owned(owner, iam2, 1)
    request_decide_owner(request=_ask(employee, c), actor=owner, approve=True)
    one = _queries(client, url)
    for c in _owned(owner, iam2, 49):
        request_decide_owner(request=_ask(UserFactory(), c), actor=owner, approve=True)
    with django_assert_num_queries(one):
        response = client.get(url)
    assert response.context["table"].page.paginator.count == 50


def test_my_grants_uses_the_same_queries_for_one_and_fifty_grants(
    client, employee, django_assert_num_queries
):
    identity = employee.identities.get()
    url = reverse("portal:my_grants") + "?sort=-last_used_at"
    client.force_login(employee)
    GrantFactory(identity=identity, device=DeviceFactory())
    one = _queries(client, url)
    for _ in range(49):
        GrantFactory(identity=identity, device=DeviceFactory())
    with django_assert_num_queries(one):
        response = client.get(url)
    assert response.context["table"].page.paginator.count == 50


def test_shadow_triage_uses_the_same_queries_for_one_and_fifty_connectors(
    client, iam, django_assert_num_queries
):
    url = reverse("portal:shadow") + "?sort=-holders"
    client.force_login(iam)
    GrantFactory(connector=ConnectorFactory(discovered=True))
    one = _queries(client, url)
    for _ in range(49):
        GrantFactory(connector=ConnectorFactory(discovered=True))
    with django_assert_num_queries(one):
        response = client.get(url)
    assert response.context["table"].page.paginator.count == 50


def test_connector_detail_uses_the_same_queries_for_one_and_fifty_grants(
    client, owner, owned_connector, django_assert_num_queries
):
    url = reverse("portal:connector_detail", args=[owned_connector.pk])
    client.force_login(owner)
    GrantFactory(connector=owned_connector, device=DeviceFactory())
    one = _queries(client, url)
    for _ in range(49):
        GrantFactory(connector=owned_connector, device=DeviceFactory())
    with django_assert_num_queries(one):
        client.get(url)


def test_the_owner_inbox_sql_has_no_list_of_ids(client, owner, iam):
    for c in _owned(owner, iam, 5):
        _ask(UserFactory(), c)
    client.force_login(owner)
    with CaptureQueriesContext(connection) as ctx:
        client.get(reverse("portal:inbox"))
    assert all(" IN (%s, %s" not in q["sql"] and "IN (1, 2" not in q["sql"] for q in ctx.captured_queries)


# --- what each person sees


def test_my_connectors_lists_only_the_owners_connectors(client, owner, owned_connector):
    ConnectorFactory(name="Someone else's")
    client.force_login(owner)
    response = client.get(reverse("portal:my_connectors"))
    assert [c.name for c in response.context["table"].page.object_list.data] == ["Meeting Notes AI"]


def test_the_owner_inbox_holds_requests_for_their_connectors_only(client, owner, owned_connector, employee):
    mine = _ask(employee, owned_connector)
    _ask(employee, ConnectorFactory(business_owner=UserFactory()))
    client.force_login(owner)
    response = client.get(reverse("portal:inbox"))
    rows = list(response.context["table"].page.object_list.data)
    assert [r.pk for r in rows] == [mine.pk]
    assert rows[0].manager_name == "Max Manager"
    assert b"Max Manager" in response.content


def test_the_inbox_shows_similar_sanctioned_connectors(client, owner, iam, employee):
    ConnectorFactory(name="Acme Notes", vendor="Acme AI")
    ConnectorFactory(name="Acme Shadow", vendor="Acme AI", discovered=True)
    (c,) = _owned(owner, iam, 1)
    req = _ask(employee, c)
    client.force_login(owner)
    response = client.get(reverse("portal:inbox"))
    assert response.context["table"].similar == {req.pk: "Acme Notes"}
    assert "Acme Notes" in response.content.decode()


def test_iam_sees_requests_waiting_for_iam_and_ownerless_ones(client, iam, owner, owned_connector, employee):
    waiting_owner = _ask(employee, owned_connector)
    ownerless = _ask(employee, ConnectorFactory())
    other = _ask(UserFactory(), ConnectorFactory(business_owner=owner))
    request_decide_owner(
        request=_ask(UserFactory(), owned_connector), actor=owner, approve=True
    )  # now waiting for IAM
    client.force_login(iam)
    rows = {r.pk: r for r in client.get(reverse("portal:inbox")).context["table"].page.object_list.data}
    assert ownerless.pk in rows
    assert waiting_owner.pk not in rows and other.pk not in rows
    assert any(r.status == "pending_iam" for r in rows.values())


def test_an_iam_member_who_also_owns_a_connector_sees_both_kinds_of_step(client, iam, iam2, employee):
    (mine,) = _owned(iam, iam2, 1)
    for_me_as_owner = _ask(employee, mine)
    other_owner = UserFactory()
    (theirs,) = _owned(other_owner, iam2, 1)
    waiting_for_iam = request_decide_owner(request=_ask(employee, theirs), actor=other_owner, approve=True)
    not_mine = _ask(UserFactory(), ConnectorFactory(business_owner=other_owner))
    client.force_login(iam)
    rows = {r.pk for r in client.get(reverse("portal:inbox")).context["table"].page.object_list.data}
    assert {for_me_as_owner.pk, waiting_for_iam.pk} <= rows
    assert not_mine.pk not in rows


def test_the_inbox_filters_by_status(client, iam, owner, owned_connector, employee):
    request_decide_owner(request=_ask(employee, owned_connector), actor=owner, approve=True)
    _ask(employee, ConnectorFactory())
    client.force_login(iam)
    response = client.get(reverse("portal:inbox") + "?status=pending_iam")
    assert [r.status for r in response.context["table"].page.object_list.data] == ["pending_iam"]


def test_my_grants_lists_the_employees_own_grants(client, employee):
    mine = GrantFactory(identity=employee.identities.get())
    GrantFactory(identity=IdentityFactory())
    client.force_login(employee)
    response = client.get(reverse("portal:my_grants"))
    assert [g.pk for g in response.context["table"].page.object_list.data] == [mine.pk]


def test_home_sends_an_owner_to_their_connectors_and_an_employee_to_their_grants(
    client, owner, owned_connector, employee
):
    client.force_login(owner)
    assert client.get(reverse("home"))["Location"] == reverse("portal:my_connectors")
    client.force_login(employee)
    assert client.get(reverse("home"))["Location"] == reverse("portal:my_grants")


def test_the_nav_shows_links_by_permission(client, iam, employee):
    client.force_login(employee)
    page = client.get(reverse("portal:my_grants")).content.decode()
    assert "My grants" in page and "Shadow" not in page and "Decisions" not in page
    client.force_login(iam)
    page = client.get(reverse("portal:shadow")).content.decode()
    assert "Shadow" in page and "Decisions" in page


# --- actions through the pages


def test_the_owner_approves_from_the_inbox(client, owner, owned_connector, employee):
    req = _ask(employee, owned_connector)
    client.force_login(owner)
    response = client.post(
        reverse("portal:request_decide", args=[req.pk]), {"decision": "approve", "step": "owner"}
    )
    assert response.status_code == 302
    req.refresh_from_db()
    assert req.status == "pending_iam"


def test_a_rejection_without_a_reason_is_refused_with_a_message(client, owner, owned_connector, employee):
    req = _ask(employee, owned_connector)
    client.force_login(owner)
    response = client.post(
        reverse("portal:request_decide", args=[req.pk]), {"decision": "reject", "step": "owner"}, follow=True
    )
    assert "A rejection needs a reason." in response.content.decode()
    req.refresh_from_db()
    assert req.status == "pending_owner"


def test_a_late_second_decision_gets_a_clear_message(client, owner, owned_connector, employee):
    req = _ask(employee, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=True)
    client.force_login(owner)
    response = client.post(
        reverse("portal:request_decide", args=[req.pk]),
        {"decision": "reject", "reason": "no", "step": "owner"},
        follow=True,
    )
    assert "already" in response.content.decode()


def test_an_employee_requests_an_existing_connector_through_the_form(client, employee, owned_connector):
    client.force_login(employee)
    response = client.post(
        reverse("portal:request_new"),
        {
            "kind": "existing",
            "connector": owned_connector.pk,
            "connector_kind": "oauth_app",
            "justification": "Notes for customer calls.",
            "scopes": "Calendars.Read\nOnlineMeetings.Read",
        },
    )
    req = ConnectorRequest.objects.get()
    assert response["Location"] == reverse("portal:request_detail", args=[req.pk])
    assert req.scopes == ["Calendars.Read", "OnlineMeetings.Read"]
    assert req.requester == employee


def test_an_employee_asks_to_sanction_a_shadow_connector_they_hold(client, employee):
    shadow = ConnectorFactory(discovered=True, name="Shadow Notes")
    ConnectorFactory(discovered=True, name="Someone else's shadow")
    GrantFactory(connector=shadow, identity=employee.identities.get())
    client.force_login(employee)
    grants_page = client.get(reverse("portal:my_grants")).content.decode()
    link = f"{reverse('portal:request_new')}?connector={shadow.pk}&amp;kind=sanction"
    assert link in grants_page
    form_page = client.get(link.replace("&amp;", "&")).content.decode()
    assert "Shadow Notes (shadow)" in form_page
    assert "Someone else&#x27;s shadow" not in form_page and "Someone else's shadow" not in form_page
    client.post(
        reverse("portal:request_new"),
        {
            "kind": "sanction",
            "connector": shadow.pk,
            "connector_kind": "oauth_app",
            "justification": "Daily use.",
        },
    )
    shadow.refresh_from_db()
    assert shadow.status == "requested"
    assert ConnectorRequest.objects.get().kind == "sanction"


def test_the_request_form_explains_what_is_missing(client, employee):
    client.force_login(employee)
    response = client.post(reverse("portal:request_new"), {"kind": "new", "justification": "x"})
    assert response.status_code == 200
    assert "Name the connector you want." in response.content.decode()


def test_iam_assigns_an_owner_from_the_request_page(client, iam, owner, employee):
    req = _ask(employee, ConnectorFactory())
    client.force_login(iam)
    page = client.get(reverse("portal:request_detail", args=[req.pk])).content.decode()
    assert "Assign an owner" in page
    client.post(reverse("portal:connector_owner", args=[req.connector_id]), {"owner": owner.pk})
    req.connector.refresh_from_db()
    assert req.connector.business_owner == owner


def test_iam_sanctions_a_shadow_connector_from_triage(client, iam, owner, employee):
    connector = ConnectorFactory(discovered=True)
    client.force_login(iam)
    response = client.post(
        reverse("portal:connector_sanction", args=[connector.pk]),
        {"owner": owner.pk, "on_behalf_of": employee.pk, "justification": "Sales uses it daily."},
    )
    assert response["Location"] == reverse("portal:shadow")
    connector.refresh_from_db()
    assert connector.status == "requested"
    assert connector.business_owner == owner


def test_the_requester_withdraws_from_the_request_page(client, employee, owned_connector):
    req = _ask(employee, owned_connector)
    client.force_login(employee)
    client.post(reverse("portal:request_withdraw", args=[req.pk]))
    req.refresh_from_db()
    assert req.status == "withdrawn"


def test_iam_suspends_from_the_connector_page(client, iam, owned_connector):
    client.force_login(iam)
    client.post(reverse("portal:connector_suspend", args=[owned_connector.pk]), {"reason": "Vendor breach"})
    owned_connector.refresh_from_db()
    assert owned_connector.status == "suspended"


def test_an_employee_revokes_their_own_grant_without_a_source(client, employee):
    grant = GrantFactory(identity=employee.identities.get(), source=None)
    client.force_login(employee)
    client.post(reverse("portal:grant_revoke", args=[grant.pk]))
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert grant.revoked_by == employee


def test_an_employee_cannot_revoke_someone_elses_grant(client, employee):
    grant = GrantFactory(identity=IdentityFactory(), source=None)
    client.force_login(employee)
    assert client.post(reverse("portal:grant_revoke", args=[grant.pk])).status_code == 403
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE


def test_the_owner_revokes_a_holders_grant_on_their_connector(client, owner, owned_connector):
    grant = GrantFactory(connector=owned_connector, source=None)
    client.force_login(owner)
    page = client.get(reverse("portal:connector_detail", args=[owned_connector.pk])).content.decode()
    assert f'data-test="revoke-grant-{grant.pk}"' in page
    client.post(reverse("portal:grant_revoke", args=[grant.pk]))
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED


def test_the_owner_cannot_revoke_grants_on_someone_elses_connector(client, owner):
    grant = GrantFactory(connector=ConnectorFactory(), source=None)
    client.force_login(owner)
    assert client.post(reverse("portal:grant_revoke", args=[grant.pk])).status_code == 403


# --- refusals


def test_an_employee_is_refused_the_owner_and_iam_pages(client, employee, owned_connector):
    client.force_login(employee)
    for name in ("portal:my_connectors", "portal:inbox", "portal:shadow"):
        assert client.get(reverse(name)).status_code == 403, name
    assert client.get(reverse("portal:connector_detail", args=[owned_connector.pk])).status_code == 403


def test_an_owner_cannot_open_another_owners_connector_or_request(client, owner, employee):
    other = ConnectorFactory(business_owner=UserFactory())
    req = _ask(employee, other)
    client.force_login(owner)
    assert client.get(reverse("portal:connector_detail", args=[other.pk])).status_code == 403
    assert client.get(reverse("portal:request_detail", args=[req.pk])).status_code == 403
    assert (
        client.post(
            reverse("portal:request_decide", args=[req.pk]), {"decision": "approve", "step": "owner"}
        ).status_code
        == 403
    )


def test_the_outsider_is_refused_every_portal_page(client, outsider, owned_connector, employee):
    req = _ask(employee, owned_connector)
    grant = GrantFactory(connector=owned_connector, source=None)
    client.force_login(outsider)
    gets = [reverse(n) for n in LISTS] + [
        reverse("portal:request_new"),
        reverse("portal:connector_detail", args=[owned_connector.pk]),
        reverse("portal:connector_sanction", args=[owned_connector.pk]),
        reverse("portal:request_detail", args=[req.pk]),
        reverse("home"),
    ]
    for url in gets:
        assert client.get(url).status_code == 403, url
    posts = [
        reverse("portal:request_decide", args=[req.pk]),
        reverse("portal:request_provision", args=[req.pk]),
        reverse("portal:request_withdraw", args=[req.pk]),
        reverse("portal:grant_revoke", args=[grant.pk]),
        reverse("portal:connector_revoke", args=[owned_connector.pk]),
        reverse("portal:connector_suspend", args=[owned_connector.pk]),
        reverse("portal:connector_owner", args=[owned_connector.pk]),
        reverse("portal:connector_sanction", args=[owned_connector.pk]),
    ]
    for url in posts:
        assert (
            client.post(url, {"decision": "approve", "reason": "x", "owner": outsider.pk}).status_code == 403
        ), url
    req.refresh_from_db()
    grant.refresh_from_db()
    assert req.status == "pending_owner" and grant.status == "active"


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get(reverse("portal:inbox"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]
