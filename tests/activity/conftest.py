"""AI activity fixtures: the audit trail's (a signing key per test, a clean cache)."""

from tests.audit.conftest import *  # noqa: F403
