"""Shared fixtures: the five personas (iam, owner, manager, employee, outsider)."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from tests.factories import ConnectorFactory, IdentityFactory, UserFactory

# Every answer the simulator serves is checked against the providers' official descriptions.
pytest_plugins = ["tests.contracts.plugin"]

IAM_STAFF = "IAM staff"


def enrol_totp(user) -> str:
    """Give ``user`` a TOTP authenticator (staff need MFA for the admin); return the secret."""
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


@pytest.fixture
def iam(db):
    """An IAM staff member: staff flag, the IAM staff group (model permissions), MFA enrolled."""
    user = UserFactory(username="iris", email="iris.iam@example.com", is_staff=True, groups=[IAM_STAFF])
    enrol_totp(user)
    return user


@pytest.fixture
def iam2(db):
    """A second IAM staff member, for segregation-of-duties cases."""
    user = UserFactory(username="ivan", email="ivan.iam@example.com", is_staff=True, groups=[IAM_STAFF])
    enrol_totp(user)
    return user


@pytest.fixture
def owner(db):
    """A business owner: no model permissions, object permissions on the connector they own."""
    return UserFactory(username="olivia", email="olivia.owner@example.com")


@pytest.fixture
def owned_connector(owner):
    connector = ConnectorFactory(name="Meeting Notes AI", business_owner=owner)
    for perm in ("view_connector", "decide_connector", "revoke_connector"):
        assign_perm(f"connectors.{perm}", owner, connector)
    return connector


@pytest.fixture
def manager(db):
    user = UserFactory(username="max", email="max.manager@example.com")
    IdentityFactory(email=user.email, name="Max Manager", user=user, external_id="mgr-max")
    return user


@pytest.fixture
def employee(manager):
    """An employee with an identity whose manager is ``manager``."""
    user = UserFactory(username="emma", email="emma.employee@example.com")
    IdentityFactory(
        email=user.email,
        name="Emma Employee",
        user=user,
        external_id="emp-emma",
        manager=manager.identities.get(),
    )
    return user


@pytest.fixture
def outsider(db):
    """Logged in, no permissions, no identity: must be refused everywhere."""
    return UserFactory(username="charlie", email="charlie.outsider@example.com")


def pytest_sessionstart(session):
    """In the services pass (.ci/run), PostgreSQL and Redis must be there: fail, never skip."""
    import os

    if not os.environ.get("LANYARD_REQUIRE_SERVICES"):
        return
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"services pass needs PostgreSQL, DATABASE_URL gives {engine}", returncode=3)
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.exit("services pass needs CELERY_BROKER_URL=redis://...", returncode=3)
    import redis

    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis unreachable at {settings.CELERY_BROKER_URL}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def browser():
    """The session's one headless Chromium (tests/browser/conftest.py), shared by every directory."""
    from tests.browser.conftest import launch_browser

    yield from launch_browser()


@pytest.fixture
def log_lines():
    """Every log record, as production writes it (settings.LOGGING's JSON formatter), at DEBUG."""
    import io
    import json
    import logging
    import logging.config

    import structlog

    from telemetry.logs import logging_config

    stream = io.StringIO()
    config = logging_config("json", "DEBUG")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.config.dictConfigClass(config).configure_custom(config["formatters"]["structured"])
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    structlog.contextvars.clear_contextvars()
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
