import pytest
from guardian.shortcuts import get_perms

from audit.models import AuditEvent
from governance.services import OWNER_PERMISSIONS, connector_set_owner
from tests.factories import ConnectorFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_setting_an_owner_grants_the_three_object_permissions(iam, owner):
    connector = ConnectorFactory()
    connector_set_owner(connector=connector, owner=owner, actor=iam)
    connector.refresh_from_db()
    assert connector.business_owner == owner
    assert sorted(get_perms(owner, connector)) == sorted(OWNER_PERMISSIONS)
    assert owner.has_perm("connectors.decide_connector", connector)


def test_changing_the_owner_moves_the_permissions_to_the_new_owner(iam, owner):
    connector = ConnectorFactory()
    connector_set_owner(connector=connector, owner=owner, actor=iam)
    successor = UserFactory()
    connector_set_owner(connector=connector, owner=successor, actor=iam)
    assert get_perms(owner, connector) == []
    assert sorted(get_perms(successor, connector)) == sorted(OWNER_PERMISSIONS)


def test_removing_the_owner_removes_the_permissions(iam, owned_connector, owner):
    connector_set_owner(connector=owned_connector, owner=None, actor=iam)
    owned_connector.refresh_from_db()
    assert owned_connector.business_owner is None
    assert get_perms(owner, owned_connector) == []


def test_an_owner_change_writes_one_audit_event(iam, owner):
    connector = ConnectorFactory()
    connector_set_owner(connector=connector, owner=owner, actor=iam)
    events = AuditEvent.objects.filter(action="connector.owner_set", connector=connector)
    assert events.count() == 1
    assert events.get().data["to"] == owner.email


def test_setting_the_same_owner_again_records_nothing(iam, owned_connector, owner):
    connector_set_owner(connector=owned_connector, owner=owner, actor=iam)
    assert not AuditEvent.objects.filter(action="connector.owner_set").exists()


def test_the_owner_object_permissions_use_the_direct_foreign_key_table(iam, owner):
    connector = ConnectorFactory()
    connector_set_owner(connector=connector, owner=owner, actor=iam)
    assert connector.user_permissions.filter(user=owner).count() == 3
