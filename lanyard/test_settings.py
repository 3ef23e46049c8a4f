"""Settings for the test suite: the production settings with test-only secrets and fast hashing."""

import os

os.environ.setdefault("SECRET_KEY", "lanyard-test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("LANYARD_ENCRYPTION_KEYS", "uxrVqZ6j9U8Y0m5b8o3hZ3W6QpLrKx1VYt7dT1yRjD8=")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
SECURE_SSL_REDIRECT = False
LANYARD_REQUIRE_STAFF_MFA = True
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
ACCOUNT_RATE_LIMITS = False
# Each test process gets its own cache (rate limits, TOTP codes used) instead of the shared file cache.
CACHES = {"default": {"BACKEND": "telemetry.cache.LocMemCache"}}
# The gateway asks the register and the PDP on every call in tests
# (its ≤ 1 s memory is tested in tests/gateway/test_cache.py).
LANYARD_GATEWAY_CACHE_SECONDS = 0
