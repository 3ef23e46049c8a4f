"""Sanctioning a discovered connector: provisioning is a recorded step, never an IdP call."""

import pytest

from connectors.models import Connector
from governance.models import ConnectorRequest
from governance.services import (
    WorkflowError,
    connector_sanction,
    request_decide_iam,
    request_decide_owner,
    request_provision,
)
from tests.factories import ConnectorAppFactory, ConnectorFactory, IdentitySourceFactory

pytestmark = pytest.mark.django_db


def _approved_sanction(iam, iam2, owner):
    entra = IdentitySourceFactory(name="entra", kind="microsoft_entra", base_url="http://127.0.0.1:9/entra")
    connector = ConnectorFactory(discovered=True, name="Otter.ai")
    ConnectorAppFactory(connector=connector, source=entra)
    req = connector_sanction(
        connector=connector, actor=iam, owner=owner, justification="Sales uses it daily."
    )
    request_decide_owner(request=req, actor=owner, approve=True)
    request_decide_iam(request=req, actor=iam2, approve=True, reason="Read-only calendar scopes.")
    return req


def test_sanctioning_records_evidence_and_activates_without_calling_the_idp(
    iam, iam2, owner, django_capture_on_commit_callbacks
):
    req = _approved_sanction(iam, iam2, owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request_provision(request=req, actor=iam, evidence="Publisher verified; scopes match the request.")
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.PROVISIONED
    assert req.connector.status == Connector.Status.ACTIVE
    assert req.provision_evidence.startswith("Publisher verified")
    assert not any("provision_request" in repr(c) for c in callbacks)


def test_sanctioning_without_evidence_is_refused_clearly(iam, iam2, owner):
    req = _approved_sanction(iam, iam2, owner)
    with pytest.raises(WorkflowError, match="already allowed at its identity provider"):
        request_provision(request=req, actor=iam, evidence="")
    req.refresh_from_db()
    assert req.status == ConnectorRequest.Status.APPROVED
