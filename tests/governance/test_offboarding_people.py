"""Offboarding acts on the person: what their HR source reports reaches their records in every source."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.models import Grant, Identity, IdentitySource
from connectors.people import link_people
from governance import offboarding
from governance.models import OwnershipTransfer
from governance.services import connector_set_owner
from tests.factories import (
    ConnectorFactory,
    GrantFactory,
    IdentityFactory,
    IdentitySourceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings):
    """Ada in the HR source (Google, authoritative) and in GitHub, a grant in each; Ada owns a connector."""
    settings.LANYARD_OFFBOARD_SUSPENDED_DAYS = 7
    hr = IdentitySourceFactory(
        name="Google", kind=IdentitySource.Kind.GOOGLE_WORKSPACE, hr_authoritative=True
    )
    gh = IdentitySourceFactory(
        name="GitHub", kind=IdentitySource.Kind.GITHUB, base_url="http://127.0.0.1:1/gh"
    )
    boss_user = UserFactory(email="boss@example.com")
    boss = IdentityFactory(source=hr, email="boss@example.com", user=boss_user)
    ada_user = UserFactory(email="ada@example.com")
    ada_hr = IdentityFactory(source=hr, email="ada@example.com", manager=boss, user=ada_user)
    ada_gh = IdentityFactory(source=gh, email="Ada@Example.com")
    link_people()
    ada_hr.refresh_from_db()
    ada_gh.refresh_from_db()
    assert ada_hr.person_id == ada_gh.person_id
    owned = ConnectorFactory(active=True)
    connector_set_owner(connector=owned, owner=ada_user, actor="system")
    return {
        "hr": ada_hr,
        "gh": ada_gh,
        "hr_grant": GrantFactory(identity=ada_hr, source=hr),
        "gh_grant": GrantFactory(identity=ada_gh, source=gh),
        "owned": owned,
        "boss_user": boss_user,
    }


def _status(grant: Grant) -> str:
    grant.refresh_from_db()
    return grant.status


def _set(identity: Identity, status: str, *, days_ago: int = 0) -> None:
    Identity.objects.filter(pk=identity.pk).update(
        status=status, status_changed_at=timezone.now() - timedelta(days=days_ago)
    )


def test_deprovisioned_in_the_hr_source_revokes_the_grants_of_every_identity(
    world, django_capture_on_commit_callbacks
):
    _set(world["hr"], Identity.Status.DEPROVISIONED)
    with django_capture_on_commit_callbacks():
        summary = offboarding.offboarding_reconcile(source_id=world["hr"].source_id)
    assert _status(world["hr_grant"]) == Grant.Status.REVOKING
    # GitHub still shows Ada active; her person has left, so her GitHub grant goes too.
    assert _status(world["gh_grant"]) == Grant.Status.REVOKING
    assert summary["grants_revoked"] == 2
    offer = OwnershipTransfer.objects.get(connector=world["owned"])
    assert offer.to_user == world["boss_user"]


def test_reconciling_a_person_twice_revokes_nothing_twice_and_offers_once(
    world, django_capture_on_commit_callbacks
):
    _set(world["hr"], Identity.Status.DEPROVISIONED)
    with django_capture_on_commit_callbacks():
        offboarding.offboarding_reconcile()
    with django_capture_on_commit_callbacks():
        again = offboarding.offboarding_reconcile()
    assert again == {}
    assert OwnershipTransfer.objects.filter(connector=world["owned"]).count() == 1


def test_removed_from_one_source_only_loses_that_sources_grants(world, django_capture_on_commit_callbacks):
    _set(world["gh"], Identity.Status.DEPROVISIONED)
    with django_capture_on_commit_callbacks():
        offboarding.offboarding_reconcile()
    assert _status(world["gh_grant"]) == Grant.Status.REVOKING
    assert _status(world["hr_grant"]) == Grant.Status.ACTIVE
    # Still employed (active in the HR source): keeps ownership, nothing offered.
    assert not OwnershipTransfer.objects.exists()


def test_suspended_in_the_hr_source_holds_every_identitys_grants_then_releases_them(world):
    _set(world["hr"], Identity.Status.SUSPENDED)
    offboarding.offboarding_reconcile()
    for key in ("hr_grant", "gh_grant"):
        world[key].refresh_from_db()
        assert world[key].status == Grant.Status.ACTIVE
        assert world[key].held_at is not None, key

    _set(world["hr"], Identity.Status.ACTIVE)
    offboarding.offboarding_reconcile()
    for key in ("hr_grant", "gh_grant"):
        world[key].refresh_from_db()
        assert world[key].held_at is None, key


def test_suspended_in_the_hr_source_past_the_grace_revokes_everywhere(
    world, django_capture_on_commit_callbacks
):
    _set(world["hr"], Identity.Status.SUSPENDED, days_ago=8)
    with django_capture_on_commit_callbacks():
        offboarding.offboarding_reconcile()
    assert _status(world["hr_grant"]) == Grant.Status.REVOKING
    assert _status(world["gh_grant"]) == Grant.Status.REVOKING


def test_reconcile_queries_do_not_grow_with_people(world, django_assert_max_num_queries):
    # The standing of everyone is read in a fixed number of queries before any person is acted on.
    for n in range(30):
        IdentityFactory(source=world["hr"].source, email=f"extra{n}@example.com")
    link_people()
    with django_assert_max_num_queries(12):
        offboarding.offboarding_reconcile()
