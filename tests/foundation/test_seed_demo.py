import pytest
from django.core import mail
from django.core.management import call_command

from audit.models import AuditEvent
from connectors.models import Connector, Device, Grant, Identity
from governance.models import AttestationCampaign, ConnectorRequest, User

pytestmark = pytest.mark.django_db(transaction=True)


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Identity, Device, Connector, Grant, User, AuditEvent)
    }


def test_seed_demo_builds_a_realistic_organisation_and_is_idempotent():
    call_command("seed_demo", identities=120, verbosity=0)
    first = _counts()
    assert first["Identity"] >= 120
    assert Identity.objects.filter(manager__isnull=False).count() >= 119
    assert Identity.objects.values("department").distinct().count() >= 5
    assert {c.status for c in Connector.objects.all()} >= set(Connector.Status.values) - {
        Connector.Status.MERGED
    }
    assert Connector.objects.filter(status=Connector.Status.DISCOVERED).count() >= 3
    assert Grant.objects.filter(status=Grant.Status.ACTIVE).count() > 50
    assert User.objects.get(email="iam@lanyard.demo").groups.filter(name="IAM staff").exists()
    employee = User.objects.get(email="employee@lanyard.demo").identities.get()
    assert employee.manager.user.email == "manager@lanyard.demo"
    # Each login is one person: its identity records carry its name and email, and it is their primary.
    for user in User.objects.filter(email__endswith="@lanyard.demo"):
        identity = user.identities.get()
        assert (identity.name, identity.email) == (user.get_full_name(), user.email)
        assert identity.person.primary_identity == identity

    requests = ConnectorRequest.objects.filter(status__in=ConnectorRequest.OPEN)
    assert requests.filter(
        status=ConnectorRequest.Status.PENDING_OWNER, connector__business_owner__email="owner@lanyard.demo"
    ).exists()
    assert requests.filter(status=ConnectorRequest.Status.PENDING_IAM).exists()
    assert AttestationCampaign.objects.filter(status=AttestationCampaign.Status.RUNNING).count() == 1
    assert len(mail.outbox) >= 1  # one email per reviewing manager, and the request emails

    # A week of gateway activity, through the ingest service: grants used, a shadow MCP server
    # discovered, a contractor no IdP knows kept and flagged, usage times rolled up on commit.
    activity = AuditEvent.objects.filter(action__startswith="ai.", ingest_key__name="Demo AI gateway")
    assert activity.count() > 400
    assert activity.filter(grant__isnull=False).count() > 300
    mcp = Connector.objects.get(mcp_server_url="https://mcp.notes-ai.example/sse")
    assert mcp.status == Connector.Status.DISCOVERED
    assert Identity.objects.get(email="contractor@partner.example").unverified
    assert Grant.objects.filter(last_used_at__isnull=False).count() > 100

    call_command("seed_demo", identities=120, verbosity=0)
    assert _counts() == first
