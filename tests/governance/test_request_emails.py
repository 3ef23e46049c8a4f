"""Request emails: the owner on a new request, IAM after the owner approves, the requester on decisions."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import override_settings

from governance.emails import render_templated, send_templated
from governance.models import ConnectorRequest
from governance.services import request_create, request_decide_iam, request_decide_owner
from tests.factories import ConnectorFactory

pytestmark = pytest.mark.django_db


def _request(employee, connector) -> ConnectorRequest:
    return request_create(
        requester=employee,
        kind=ConnectorRequest.Kind.EXISTING,
        connector=connector,
        justification="Summarise my meetings.",
        scopes=["Calendars.Read"],
    )


@override_settings(LANYARD_BASE_URL="https://lanyard.example.com")
def test_a_new_request_emails_the_business_owner_with_a_link_to_the_inbox(
    employee, owner, owned_connector, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _request(employee, owned_connector)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [owner.email]
    assert "Meeting Notes AI" in message.subject
    assert "https://lanyard.example.com/inbox/" in message.body
    assert "Summarise my meetings." in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert 'href="https://lanyard.example.com/inbox/"' in html


def test_no_email_leaves_before_the_request_is_committed(
    employee, owned_connector, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _request(employee, owned_connector)
    assert mail.outbox == []
    assert len(callbacks) == 1


def test_a_request_for_an_ownerless_connector_emails_iam_staff(
    employee, iam, iam2, django_capture_on_commit_callbacks
):
    connector = ConnectorFactory(name="Orphan AI")
    with django_capture_on_commit_callbacks(execute=True):
        _request(employee, connector)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([iam.email, iam2.email])
    assert "Owner needed" in mail.outbox[0].subject
    assert "no business owner yet" in mail.outbox[0].body


def test_the_owners_approval_emails_iam_and_the_requester(
    employee, owner, owned_connector, iam, iam2, django_capture_on_commit_callbacks
):
    req = _request(employee, owned_connector)
    with django_capture_on_commit_callbacks(execute=True):
        request_decide_owner(request=req, actor=owner, approve=True)
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert set(by_recipient) == {iam.email, iam2.email, employee.email}
    assert "IAM decision needed" in by_recipient[iam.email].subject
    assert "approved by its business owner" in by_recipient[employee.email].subject


def test_a_rejection_emails_the_requester_with_the_reason(
    employee, owner, owned_connector, django_capture_on_commit_callbacks
):
    req = _request(employee, owned_connector)
    with django_capture_on_commit_callbacks(execute=True):
        request_decide_owner(request=req, actor=owner, approve=False, reason="Use the sanctioned one.")
    assert [m.to for m in mail.outbox] == [[employee.email]]
    assert "rejected" in mail.outbox[0].subject
    assert "Use the sanctioned one." in mail.outbox[0].body


def test_the_iam_decision_emails_the_requester(
    employee, owner, owned_connector, iam, django_capture_on_commit_callbacks
):
    req = _request(employee, owned_connector)
    request_decide_owner(request=req, actor=owner, approve=True)
    with django_capture_on_commit_callbacks(execute=True):
        request_decide_iam(request=req, actor=iam, approve=True)
    assert [m.to for m in mail.outbox] == [[employee.email]]
    assert "approved by IAM" in mail.outbox[0].subject


def test_send_templated_renders_subject_text_and_html_for_any_template_prefix(employee, owned_connector):
    req = _request(employee, owned_connector)
    subject, text, html = render_templated(
        "emails/request_provisioned", {"req": req, "connector": owned_connector, "grants_url": "x"}
    )
    assert "\n" not in subject
    assert "Meeting Notes AI" in text
    assert "<strong>Meeting Notes AI</strong>" in html
    mail.outbox.clear()
    assert (
        send_templated("emails/request_provisioned", ["a@example.com", "b@example.com", ""], {"req": req})
        == 2
    )
    assert len(mail.outbox) == 2
