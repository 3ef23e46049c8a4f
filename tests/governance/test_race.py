"""Two people deciding the same request at the same moment: exactly one wins (PostgreSQL row locks)."""

from __future__ import annotations

import pytest
from django.db import connection

from governance.models import ConnectorRequest, Decision
from governance.services import AlreadyDecided, request_create, request_decide_iam, request_decide_owner
from tests.concurrency import race as _race

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_two_iam_staff_deciding_at_once_one_wins_the_other_is_told(
    employee, owner, owned_connector, iam, iam2
):
    assert connection.vendor == "postgresql"
    req = request_create(
        requester=employee, kind="existing", connector=owned_connector, justification="x", scopes=[]
    )
    request_decide_owner(request=req, actor=owner, approve=True)
    results, errors = _race(
        [
            lambda: request_decide_iam(request=req, actor=iam, approve=True),
            lambda: request_decide_iam(request=req, actor=iam2, approve=False, reason="Not needed."),
        ]
    )
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], AlreadyDecided)
    assert "was already decided" in str(errors[0])
    req.refresh_from_db()
    assert req.decisions.filter(step=Decision.Step.IAM).count() == 1
    assert req.status in (ConnectorRequest.Status.APPROVED, ConnectorRequest.Status.REJECTED)


def test_the_owner_deciding_twice_at_once_records_one_decision(employee, owner, owned_connector):
    req = request_create(
        requester=employee, kind="existing", connector=owned_connector, justification="x", scopes=[]
    )
    results, errors = _race([lambda: request_decide_owner(request=req, actor=owner, approve=True)] * 2)
    assert len(results) == 1
    assert [type(e) for e in errors] == [AlreadyDecided]
    assert req.decisions.count() == 1
