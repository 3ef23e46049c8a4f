"""factory_boy factories for the domain, with a trait per status."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from connectors.models import (
    CatalogEntry,
    Connector,
    ConnectorApp,
    Device,
    Grant,
    Identity,
    IdentitySource,
    Person,
    Risk,
    SyncRun,
)
from governance.models import ConnectorRequest, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password("correct-horse-battery")

    class Params:
        iam = factory.Trait(is_staff=True)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*[Group.objects.get(name=g) if isinstance(g, str) else g for g in extracted])


class IdentitySourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdentitySource
        django_get_or_create = ("name",)

    kind = IdentitySource.Kind.GOOGLE_WORKSPACE
    name = factory.Sequence(lambda n: f"source-{n}")
    base_url = "http://127.0.0.1:1/google"


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    source = factory.SubFactory(IdentitySourceFactory, name="default-source")
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    name = factory.Faker("name")
    department = "Engineering"

    class Params:
        suspended = factory.Trait(status=Identity.Status.SUSPENDED)
        deprovisioned = factory.Trait(status=Identity.Status.DEPROVISIONED)


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    source = factory.SubFactory(IdentitySourceFactory, name="default-source")
    external_id = factory.Sequence(lambda n: f"dev-{n}")
    name = factory.Sequence(lambda n: f"LAPTOP-{n:04d}")
    platform = "macOS"
    managed = True
    compliant = True


class ConnectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connector

    name = factory.Sequence(lambda n: f"AI Connector {n}")
    vendor = "Example AI Inc."
    kind = Connector.Kind.OAUTH_APP
    status = Connector.Status.ACTIVE
    risk = Risk.MEDIUM

    class Params:
        discovered = factory.Trait(
            status=Connector.Status.DISCOVERED, discovered_at=factory.LazyFunction(timezone.now)
        )
        requested = factory.Trait(status=Connector.Status.REQUESTED)
        pending_iam = factory.Trait(status=Connector.Status.PENDING_IAM)
        approved = factory.Trait(status=Connector.Status.APPROVED)
        active = factory.Trait(status=Connector.Status.ACTIVE)
        suspended = factory.Trait(status=Connector.Status.SUSPENDED)
        rejected = factory.Trait(status=Connector.Status.REJECTED)
        revoked = factory.Trait(status=Connector.Status.REVOKED)


class ConnectorAppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConnectorApp

    connector = factory.SubFactory(ConnectorFactory)
    source = factory.SubFactory(IdentitySourceFactory, name="default-source")
    client_id = factory.Sequence(lambda n: f"client-{n}.apps.example.com")
    name = factory.SelfAttribute("connector.name")


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    connector = factory.SubFactory(ConnectorFactory)
    source = factory.SubFactory(IdentitySourceFactory, name="default-source")
    identity = factory.SubFactory(IdentityFactory)
    external_id = factory.Sequence(lambda n: f"grant-{n}")
    kind = Grant.Kind.OAUTH_CONSENT
    scopes = factory.LazyFunction(lambda: ["https://www.googleapis.com/auth/drive.readonly"])
    status = Grant.Status.ACTIVE
    last_used_at = factory.LazyFunction(timezone.now)

    class Params:
        revoking = factory.Trait(status=Grant.Status.REVOKING)
        revoked = factory.Trait(status=Grant.Status.REVOKED, revoked_at=factory.LazyFunction(timezone.now))
        expired = factory.Trait(status=Grant.Status.EXPIRED)


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    source = factory.SubFactory(IdentitySourceFactory, name="default-source")


class ConnectorRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConnectorRequest

    connector = factory.SubFactory(ConnectorFactory, requested=True)
    kind = ConnectorRequest.Kind.NEW
    requester = factory.SubFactory(UserFactory)
    justification = "Summarise meeting notes for the sales team."
    scopes = factory.LazyFunction(lambda: ["https://www.googleapis.com/auth/calendar.readonly"])


class CatalogEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogEntry
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"ai-app-{n}")
    name = factory.Sequence(lambda n: f"AI App {n}")
    publisher = "Example AI Inc."
    ids = factory.LazyFunction(dict)


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Person

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"human{n}@example.com")
