"""People: identities of one human across sources become one person; IAM fixes wrong links by hand."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from connectors import people
from connectors.models import Device, Identity, IdentitySource, IllegalTransition, Person
from connectors.selectors import person_identities
from connectors.sync import sync_source
from tests.connectors.conftest import make_source
from tests.factories import DeviceFactory, IdentityFactory, IdentitySourceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sources(db):
    return {
        kind: IdentitySourceFactory(name=kind, kind=kind)
        for kind in ("google_workspace", "microsoft_entra", "okta", "github")
    }


def test_one_email_in_four_sources_is_one_person(sim):
    all_sources = [
        make_source(sim, kind) for kind in ("google_workspace", "microsoft_entra", "okta", "github")
    ]
    for source in all_sources:
        sync_source(source)
    people_count = sim.state()["identities"]

    assert Person.objects.count() == people_count
    assert not Identity.objects.filter(person__isnull=True).exists()
    emails = {e.lower() for e in Identity.objects.exclude(email="").values_list("email", flat=True)}
    assert len(emails) == people_count
    for person in Person.objects.prefetch_related("identities"):
        assert len({i.email.lower() for i in person.identities.all() if i.email}) == 1
        assert person.primary_identity_id in {i.pk for i in person.identities.all()}
    # Managers come through the person: a report's GitHub record has no manager, its person has one.
    with_manager = Person.objects.filter(manager__isnull=False).count()
    assert with_manager >= people_count - 1
    assert Identity.objects.filter(source__kind="github", person__manager__isnull=False).exists()
    # A resync changes no person.
    before = list(Person.objects.order_by("pk").values_list("pk", "manager_id", "primary_identity_id"))
    sync_source(all_sources[0])
    assert (
        list(Person.objects.order_by("pk").values_list("pk", "manager_id", "primary_identity_id")) == before
    )


def test_emails_match_case_insensitively_and_unverified_identities_are_not_linked_by_email(sources):
    a = IdentityFactory(source=sources["google_workspace"], email="Emma.Jones@Acme.com")
    b = IdentityFactory(source=sources["okta"], email="emma.jones@acme.com")
    gateway = IdentityFactory(source=None, email="emma.jones@acme.com", unverified=True)

    people.link_people()

    a.refresh_from_db(), b.refresh_from_db(), gateway.refresh_from_db()
    assert a.person_id == b.person_id is not None
    assert gateway.person_id not in (None, a.person_id)


def test_an_immutable_link_key_joins_identities_with_different_emails(sources):
    a = IdentityFactory(source=sources["microsoft_entra"], email="e.jones@acme.com", link_key="ad-guid:AAA=")
    b = IdentityFactory(source=sources["okta"], email="emma@acme.com", link_key="ad-guid:AAA=")
    c = IdentityFactory(source=sources["google_workspace"], email="emma@acme.com")

    people.link_people()

    assert len({i.person_id for i in Identity.objects.filter(pk__in=[a.pk, b.pk, c.pk])}) == 1


def test_two_immutable_ids_claiming_one_email_are_flagged_never_guessed(sources):
    a = IdentityFactory(source=sources["microsoft_entra"], email="sam@acme.com", link_key="ad-guid:ONE")
    b = IdentityFactory(source=sources["okta"], email="sam@acme.com", link_key="ad-guid:TWO")
    c = IdentityFactory(source=sources["google_workspace"], email="sam@acme.com")

    people.link_people()

    rows = {i.pk: i for i in Identity.objects.filter(pk__in=[a.pk, b.pk, c.pk])}
    assert len({i.person_id for i in rows.values()}) == 3
    assert all("ad-guid:ONE" in i.link_conflict and "ad-guid:TWO" in i.link_conflict for i in rows.values())
    assert Person.objects.exclude(conflict="").count() == 3


def test_manual_link_and_unlink_are_pinned_and_audited(sources, iam):
    google = IdentityFactory(source=sources["google_workspace"], email="lee@acme.com")
    github = IdentityFactory(source=sources["github"], email="", name="lee-gh")
    people.link_people()
    google.refresh_from_db()

    people.person_link(identity=github, person=google.person, actor=iam)
    people.link_people()  # the sync leaves a hand-made link alone
    github.refresh_from_db()
    assert github.person_id == google.person_id and github.link_pinned
    assert AuditEvent.objects.filter(action="person.identity_linked", actor_user=iam).count() == 1
    with pytest.raises(IllegalTransition):
        people.person_link(identity=github, person=google.person, actor=iam)

    people.person_unlink(identity=github, actor=iam)
    people.link_people()
    github.refresh_from_db()
    assert github.person_id != google.person_id
    assert AuditEvent.objects.filter(action="person.identity_unlinked").count() == 1

    people.person_unpin(identity=github, actor=iam)
    github.refresh_from_db()
    assert not github.link_pinned


def test_the_hr_source_decides_manager_and_department(sources):
    google, okta = sources["google_workspace"], sources["okta"]
    boss_g = IdentityFactory(source=google, email="boss@acme.com")
    other_o = IdentityFactory(source=okta, email="other@acme.com")
    IdentityFactory(source=google, email="ann@acme.com", manager=boss_g, department="Sales")
    IdentityFactory(source=okta, email="ann@acme.com", manager=other_o, department="Marketing")
    okta.hr_authoritative = True
    okta.save()

    people.link_people()

    ann = Person.objects.get(email__iexact="ann@acme.com")
    assert ann.manager.email == "other@acme.com" and ann.department == "Marketing"
    IdentitySource.objects.filter(pk=okta.pk).update(hr_authoritative=False)
    people.link_people()
    ann.refresh_from_db()
    # default: the first source with manager data (google was created first)
    assert ann.manager.email == "boss@acme.com" and ann.department == "Sales"


def test_the_primary_identity_is_the_one_the_person_signs_in_with(sources):
    user = UserFactory(email="kim@acme.com")
    IdentityFactory(source=sources["google_workspace"], email="kim@acme.com")
    signed_in = IdentityFactory(source=sources["okta"], email="KIM@acme.com", user=user)
    people.link_people()
    assert Person.objects.get().primary_identity == signed_in


def test_person_identities_returns_every_record_of_the_same_people(sources):
    a = IdentityFactory(source=sources["google_workspace"], email="x@acme.com")
    b = IdentityFactory(source=sources["okta"], email="x@acme.com")
    c = IdentityFactory(source=sources["okta"], email="y@acme.com")
    lone = IdentityFactory(source=sources["github"], email="z@acme.com")
    people.link_people()
    Identity.objects.filter(pk=lone.pk).update(person=None)

    assert person_identities([a.pk]) == {a.pk, b.pk}
    assert person_identities([a.pk, c.pk, lone.pk]) == {a.pk, b.pk, c.pk, lone.pk}
    assert person_identities([]) == set()


def test_a_person_has_the_devices_of_all_its_identities(sources):
    a = IdentityFactory(source=sources["google_workspace"], email="d@acme.com")
    b = IdentityFactory(source=sources["microsoft_entra"], email="d@acme.com")
    DeviceFactory(owner=a), DeviceFactory(owner=b)
    people.link_people()

    assert Device.objects.filter(owner__person=Person.objects.get()).count() == 2


def test_linking_is_bulk_constant_in_queries_and_idempotent(sources, django_assert_max_num_queries):
    for n in range(50):
        IdentityFactory(source=sources["google_workspace"], email=f"p{n}@acme.com")
        IdentityFactory(source=sources["okta"], email=f"P{n}@acme.com")
    with django_assert_max_num_queries(14):
        stats = people.link_people()
    assert stats["people_new"] == 50
    with django_assert_max_num_queries(8):
        assert people.link_people() == {}


def test_people_link_command_links_existing_identities(sources, capsys):
    IdentityFactory(source=sources["google_workspace"], email="q@acme.com")
    IdentityFactory(source=sources["okta"], email="q@acme.com")
    call_command("people_link")
    assert Person.objects.count() == 1
    assert "people_new=1" in capsys.readouterr().out
