"""The demo workflow seed_demo calls: pending work for the demo owner and IAM, made through the services."""

import pytest

from governance.demo import build_demo_workflow
from governance.models import ConnectorRequest
from tests.factories import ConnectorFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("employees", [1, 3])
def test_the_demo_workflow_leaves_work_for_the_owner_and_for_iam(iam, owner, employee, employees):
    ConnectorFactory.create_batch(8, active=True)
    others = UserFactory.create_batch(employees - 1)
    made = build_demo_workflow(iam_user=iam, owner_user=owner, employee_users=[employee, *others])
    statuses = [r.status for r in ConnectorRequest.objects.all()]
    assert statuses.count("pending_owner") >= 4  # three for the owner, one new connector for IAM
    assert statuses.count("pending_iam") == 2
    assert {"rejected", "provisioned", "withdrawn"} <= set(statuses)
    assert len(made) == ConnectorRequest.objects.count()


def test_the_demo_workflow_runs_once(iam, owner, employee):
    ConnectorFactory.create_batch(4, active=True)
    build_demo_workflow(iam_user=iam, owner_user=owner, employee_users=[employee])
    count = ConnectorRequest.objects.count()
    assert build_demo_workflow(iam_user=iam, owner_user=owner, employee_users=[employee]) == []
    assert ConnectorRequest.objects.count() == count


def test_demo_requests_on_connectors_provisioned_through_an_idp_api_do_not_collide(iam, owner, employee):
    from tests.factories import ConnectorAppFactory, ConnectorFactory, IdentitySourceFactory

    entra = IdentitySourceFactory(
        name="entra-demo", kind="microsoft_entra", base_url="http://127.0.0.1:9/entra"
    )
    for i in range(8):
        ConnectorAppFactory(connector=ConnectorFactory(name=f"Entra app {i}", active=True), source=entra)
    made = build_demo_workflow(iam_user=iam, owner_user=owner, employee_users=[employee])
    assert len(made) >= 8
