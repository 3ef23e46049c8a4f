"""Addresses are hashed as the database prints them back, so every recorded address verifies."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.chain import normalise_ip

CASES = {
    "10.0.0.1": "10.0.0.1",
    "2001:DB8::1": "2001:db8::1",
    "::1": "::1",
    "::": "::",
    "::ffff:1.2.3.4": "::ffff:1.2.3.4",
    "::ffff:0102:0304": "::ffff:1.2.3.4",
    "::ffff:0.0.1.2": "::ffff:0.0.1.2",
    "::0.59.192.76": "::0.59.192.76",
    "::3b:c04c": "::0.59.192.76",
    "::100": "::100",
    "::1:0:0:1": "::1:0:0:1",
}


@pytest.mark.parametrize(("given", "printed"), CASES.items())
def test_an_address_is_normalised_as_postgresql_prints_it(given, printed):
    assert normalise_ip(given) == printed


@pytest.mark.services
@pytest.mark.django_db
def test_postgresql_prints_every_case_as_normalised():
    assert connection.vendor == "postgresql", "the services pass runs on PostgreSQL"
    with connection.cursor() as cursor:
        for given in CASES:
            cursor.execute("SELECT host(%s::inet)", [given])
            assert cursor.fetchone()[0] == normalise_ip(given), given
