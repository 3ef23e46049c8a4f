import pytest
from django.db import IntegrityError, transaction

from connectors.models import Connector, Grant, IllegalTransition
from governance.models import Decision
from tests.factories import (
    ConnectorAppFactory,
    ConnectorFactory,
    ConnectorRequestFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_identity_external_id_is_unique_per_source():
    a, b = IdentitySourceFactory(name="a"), IdentitySourceFactory(name="b")
    IdentityFactory(source=a, external_id="u1")
    IdentityFactory(source=b, external_id="u1")  # another source may reuse it
    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityFactory(source=a, external_id="u1")


def test_unsourced_identities_are_unique_by_external_id():
    IdentityFactory(source=None, external_id="gateway-user")
    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityFactory(source=None, external_id="gateway-user")


def test_grant_external_id_is_unique_per_source():
    grant = GrantFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        GrantFactory(source=grant.source, external_id=grant.external_id)


def test_connector_app_client_id_is_unique_per_source():
    app = ConnectorAppFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ConnectorAppFactory(source=app.source, client_id=app.client_id)


def test_a_revoked_grant_must_say_when():
    with pytest.raises(IntegrityError), transaction.atomic():
        GrantFactory(status=Grant.Status.REVOKED, revoked_at=None)


def test_fingerprint_holds_only_a_sha256_never_token_material():
    GrantFactory(fingerprint="a" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        GrantFactory(fingerprint="ya29.a0AfH6SMB-raw-access-token")


def test_a_rejection_needs_a_reason():
    request = ConnectorRequestFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(
            request=request, step="owner", outcome="reject", decided_by=UserFactory(), reason=""
        )


def test_one_decision_per_step():
    request = ConnectorRequestFactory()
    user = UserFactory()
    Decision.objects.create(request=request, step="owner", outcome="approve", decided_by=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(request=request, step="owner", outcome="approve", decided_by=user)


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("discovered", "requested", True),
        ("requested", "pending_iam", True),
        ("pending_iam", "approved", True),
        ("approved", "active", True),
        ("active", "suspended", True),
        ("suspended", "active", True),
        ("active", "revoked", True),
        ("discovered", "active", False),
        ("requested", "active", False),
        ("revoked", "active", False),
        ("rejected", "approved", False),
    ],
)
def test_connector_transitions_follow_the_lifecycle(current, new, allowed):
    connector = ConnectorFactory.build(status=current)
    assert connector.can_become(new) is allowed
    if allowed:
        connector.check_transition(new)
    else:
        with pytest.raises(IllegalTransition, match=f"from '{current}' to '{new}'"):
            connector.check_transition(new)


def test_every_status_has_its_transitions_declared():
    assert set(Connector.TRANSITIONS) == set(Connector.Status.values)
    assert set(Grant.TRANSITIONS) == set(Grant.Status.values)
