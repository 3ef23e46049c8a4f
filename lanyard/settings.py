"""Lanyard settings, read from the environment (see README "Configuration")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("LANYARD_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (a long random string), "
            "or set DEBUG=true for a local demo."
        )
    SECRET_KEY = "lanyard-insecure-debug-only-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys for IdP credentials at rest, newest first; older keys still decrypt (rotation).
LANYARD_ENCRYPTION_KEYS = env.list("LANYARD_ENCRYPTION_KEYS", default=[])
if not LANYARD_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "LANYARD_ENCRYPTION_KEYS is not set. Generate one with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    # Single sign-on (issue 19): allauth's social accounts, generic OpenID Connect provider.
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "guardian",
    "django_tables2",
    "django_filters",
    "audit",
    "connectors",
    "activity",
    "governance",
    "access",  # the AuthZEN decision point, Cedar policies (issue 13)
    "signals",  # Shared Signals receiver (issue 15)
    # Operations (issue 17): health-check templates, django-structlog's request middleware.
    "health_check",
    "django_structlog",
]

MIDDLEWARE = [
    # Operations (issue 17): request metrics around everything.
    "telemetry.web.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Issue 13: /access/v1/ (the decision point, bearer keys only) leaves the stack here.
    "lanyard.middleware.ApiFastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "lanyard.middleware.RequireStaffMFAMiddleware",
    # Operations (issue 17): request id and user bound to every log line of the request.
    "django_structlog.middlewares.RequestMiddleware",
]

ROOT_URLCONF = "lanyard.urls"
WSGI_APPLICATION = "lanyard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# An empty variable means "use the default", so `DATABASE_URL= make test` runs on the embedded defaults.
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'lanyard.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the web process and the worker write side by side.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "governance.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "account_login"

# django-allauth: email + password, no open sign-up, TOTP + recovery codes.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "lanyard.adapters.AccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
# Passkeys (WebAuthn) as a second factor besides TOTP (issue 19); not (yet) passwordless sign-in.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False
# WebAuthn needs https (or localhost); the local demo and the browser tests run on http.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = env.bool("LANYARD_WEBAUTHN_ALLOW_INSECURE_ORIGIN", default=DEBUG)
MFA_TOTP_ISSUER = "Lanyard"
LANYARD_OPEN_SIGNUP = env.bool("LANYARD_OPEN_SIGNUP", default=False)
LANYARD_REQUIRE_STAFF_MFA = env.bool("LANYARD_REQUIRE_STAFF_MFA", default=not DEBUG)

# --- Single sign-on (issue 19): the company IdP over OpenID Connect (allauth's openid_connect) -----
# LANYARD_OIDC_PROVIDERS names the providers (e.g. "okta,entra"); each ID has its own variables,
# LANYARD_OIDC_<ID>_SERVER_URL (the issuer), _CLIENT_ID, _SECRET, and optional _NAME (the button),
# _SCOPE, _TOKEN_AUTH_METHOD, _SOURCE (the identity source whose external ids are this IdP's
# subjects), _SUBJECT_CLAIM (default sub; Entra: oid), _GROUPS_CLAIM (default groups),
# _STAFF_GROUPS (groups that make IAM staff), _AUDITOR_GROUPS (the read-only Auditors role); neither
# set: sign-in never changes roles. README "Single sign-on".
LANYARD_PASSWORD_LOGIN = env.bool("LANYARD_PASSWORD_LOGIN", default=True)
# amr values (RFC 8176) that count as a second factor done at the IdP: staff then need no TOTP here.
LANYARD_SSO_MFA_AMR = env.list("LANYARD_SSO_MFA_AMR", default=["mfa", "otp", "hwk"])


def _oidc_apps() -> list[dict]:
    apps = []
    for provider_id in env.list("LANYARD_OIDC_PROVIDERS", default=[]):
        provider_id = provider_id.strip().lower()
        if not provider_id.replace("-", "").replace("_", "").isalnum():
            raise ImproperlyConfigured(
                f"LANYARD_OIDC_PROVIDERS: '{provider_id}' must be letters, digits, - or _"
            )
        prefix = "LANYARD_OIDC_" + provider_id.upper().replace("-", "_") + "_"
        missing = [v for v in ("SERVER_URL", "CLIENT_ID", "SECRET") if not env.str(prefix + v, default="")]
        if missing:
            raise ImproperlyConfigured(
                f"Sign-in provider '{provider_id}' needs {', '.join(prefix + v for v in missing)}."
            )
        app_settings = {
            "server_url": env.str(prefix + "SERVER_URL").rstrip("/"),
            "oauth_pkce_enabled": True,
            "fetch_userinfo": True,
            "scope": env.str(prefix + "SCOPE", default="openid email profile").split(),
            # Lanyard's own keys (allauth ignores them): how an IdP's people and groups map.
            "lanyard_source": env.str(prefix + "SOURCE", default=""),
            "lanyard_subject_claim": env.str(prefix + "SUBJECT_CLAIM", default="sub"),
            "lanyard_groups_claim": env.str(prefix + "GROUPS_CLAIM", default="groups"),
            "lanyard_staff_groups": env.list(prefix + "STAFF_GROUPS", default=[]),
            "lanyard_auditor_groups": env.list(prefix + "AUDITOR_GROUPS", default=[]),
        }
        if env.str(prefix + "TOKEN_AUTH_METHOD", default=""):
            app_settings["token_auth_method"] = env.str(prefix + "TOKEN_AUTH_METHOD")
        apps.append(
            {
                "provider_id": provider_id,
                "name": env.str(prefix + "NAME", default=provider_id.replace("-", " ").title()),
                "client_id": env.str(prefix + "CLIENT_ID"),
                "secret": env.str(prefix + "SECRET"),
                "settings": app_settings,
            }
        )
    return apps


SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": _oidc_apps()}}
SOCIALACCOUNT_ADAPTER = "lanyard.adapters.SocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True  # just-in-time accounts, decided by the adapter (a register match)
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # linking by email is the adapter's, through the register
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_STORE_TOKENS = False  # the IdP's access and refresh tokens are never kept
SOCIALACCOUNT_LOGIN_ON_GET = False  # the "Sign in with …" buttons POST (CSRF-protected)
SOCIALACCOUNT_REQUESTS_TIMEOUT = env.int("LANYARD_SSO_TIMEOUT", default=10)
TEMPLATES[0]["OPTIONS"]["context_processors"].append("lanyard.adapters.sign_in_context")

# Sign-in behind proxies (hardening): the client address that allauth's rate limits and the audit
# trail's sign-in events use. Direct (the default): REMOTE_ADDR. Behind N proxies you run: the Nth
# address from the right of X-Forwarded-For. Or a header one trusted proxy sets (e.g. X-Real-IP).
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("LANYARD_TRUSTED_PROXY_COUNT", default=0)
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = env.str("LANYARD_TRUSTED_CLIENT_IP_HEADER", default="") or None

ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = True

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}


# Email: a file backend under var/mail/ by default; SMTP in production (smtp+tls://user:pass@host:587).
def _mailer(url: str) -> dict:
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("", "filemail"):
        path = Path(unquote(parts.path)) if parts.path not in ("", "/") else VAR_DIR / "mail"
        path.mkdir(parents=True, exist_ok=True)
        return {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(path)},
        }
    if scheme == "consolemail":
        return {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if scheme == "memorymail":
        return {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    if scheme in ("smtp", "smtp+tls", "smtps", "smtp+ssl"):
        return {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": parts.hostname or "localhost",
                "port": parts.port
                or (465 if scheme in ("smtps", "smtp+ssl") else 587 if scheme == "smtp+tls" else 25),
                "username": unquote(parts.username or ""),
                "password": unquote(parts.password or ""),
                "use_tls": scheme == "smtp+tls",
                "use_ssl": scheme in ("smtps", "smtp+ssl"),
                "timeout": 15,
            },
        }
    raise ImproperlyConfigured(
        f"EMAIL_URL scheme '{scheme}' is not supported: use smtp://, smtp+tls://, smtps://, filemail://, consolemail://"
    )


MAILERS = {"default": _mailer(env.str("EMAIL_URL", default=""))}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Lanyard <lanyard@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
LANYARD_BASE_URL = env.str("LANYARD_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# Celery: kombu's filesystem transport under var/ by default (no server); Redis in production.
# A host name, though the transport ignores it: without one kombu warns on every connection.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        # The transport polls its folder; the default 1 s makes a burst of emails crawl.
        "polling_interval": 0.1,
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "heartbeat": {
        "task": "lanyard.heartbeat",
        "schedule": timedelta(seconds=env.int("LANYARD_HEARTBEAT_SECONDS", default=60)),
    },
    "attestation-tick": {"task": "governance.attestation_tick", "schedule": timedelta(hours=1)},
    "attestation-schedule": {"task": "governance.attestation_schedule", "schedule": timedelta(hours=6)},
    "audit-checkpoint": {
        "task": "audit.checkpoint",
        "schedule": timedelta(minutes=env.int("LANYARD_AUDIT_CHECKPOINT_MINUTES", default=5)),
    },
    "audit-rollup-usage": {"task": "activity.rollup_usage", "schedule": timedelta(minutes=1)},
    "connectors-sync-due-sources": {"task": "connectors.sync_due_sources", "schedule": timedelta(minutes=1)},
    "connectors-sweep-revoking": {"task": "connectors.sweep_revoking", "schedule": timedelta(minutes=5)},
    "governance-sweep-provisioning": {
        "task": "governance.sweep_provisioning",
        "schedule": timedelta(minutes=5),
    },
    # Suspensions ripen into offboarding with time, not only when a sync sees a change.
    "governance-offboarding-reconcile": {
        "task": "governance.offboarding_reconcile",
        "schedule": timedelta(hours=1),
    },
    "connectors-expire-stale-grants": {
        "task": "connectors.expire_stale_grants",
        "schedule": timedelta(hours=1),
    },
}

# Policy knobs (documented in the README).
LANYARD_STALE_GRANT_DAYS = env.int("LANYARD_STALE_GRANT_DAYS", default=90)
# Grants on a connector that is discovered, requested, approved or suspended are revoked after this.
LANYARD_UNSANCTIONED_GRACE_DAYS = env.int("LANYARD_UNSANCTIONED_GRACE_DAYS", default=14)

# Offboarding: a suspended identity's grants are held at once and revoked (with its connectors
# offered to its manager) after this many days of suspension; 0 revokes at once.
LANYARD_OFFBOARD_SUSPENDED_DAYS = env.int("LANYARD_OFFBOARD_SUSPENDED_DAYS", default=7)

# Identity-provider sync and revocation (connectors.sync, connectors.tasks).
LANYARD_SYNC_PAGE_SIZE = env.int("LANYARD_SYNC_PAGE_SIZE", default=500)
# A sync claim older than this is taken to be from a dead worker and may be taken over.
LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES = env.int("LANYARD_SYNC_CLAIM_TIMEOUT_MINUTES", default=40)
LANYARD_IDP_TIMEOUT = env.float("LANYARD_IDP_TIMEOUT", default=10.0)
LANYARD_IDP_MAX_RETRIES = env.int("LANYARD_IDP_MAX_RETRIES", default=5)
LANYARD_IDP_BACKOFF_BASE = env.float("LANYARD_IDP_BACKOFF_BASE", default=0.5)
LANYARD_IDP_BACKOFF_MAX = env.float("LANYARD_IDP_BACKOFF_MAX", default=30.0)
LANYARD_REVOKE_MAX_RETRIES = env.int("LANYARD_REVOKE_MAX_RETRIES", default=5)
# The sweep re-enqueues a grant still revoking this long after its last attempt was due.
LANYARD_REVOKE_SWEEP_MINUTES = env.int("LANYARD_REVOKE_SWEEP_MINUTES", default=5)
# After a permanent IdP refusal (401, 403), the next attempt waits this long.
LANYARD_REVOKE_PERMANENT_RETRY_MINUTES = env.int("LANYARD_REVOKE_PERMANENT_RETRY_MINUTES", default=60)
# Hardening: a revocation task's claim on its grant lasts this long; after it, a dead worker's claim
# is taken over (by the sweep's re-delivery).
LANYARD_REVOKE_CLAIM_MINUTES = env.float("LANYARD_REVOKE_CLAIM_MINUTES", default=15)
# Attestation campaigns the beat launches by itself: "" (none, launch from the admin), "monthly" or
# "quarterly"; each gets the deadline, reminder days, escalation and deadline policy below.
LANYARD_ATTESTATION_SCHEDULE = env.str("LANYARD_ATTESTATION_SCHEDULE", default="")
LANYARD_ATTESTATION_DEADLINE_DAYS = env.int("LANYARD_ATTESTATION_DEADLINE_DAYS", default=14)
LANYARD_ATTESTATION_REMINDER_DAYS = env.list("LANYARD_ATTESTATION_REMINDER_DAYS", cast=int, default=[7, 3, 1])
LANYARD_ATTESTATION_ESCALATE_AFTER = env.int("LANYARD_ATTESTATION_ESCALATE_AFTER", default=2)
LANYARD_ATTESTATION_POLICY = env.str("LANYARD_ATTESTATION_POLICY", default="flag")
# Hardening: a review link is exchanged (by POST) for a session this long, never past the deadline.
LANYARD_ATTESTATION_SESSION_MINUTES = env.int("LANYARD_ATTESTATION_SESSION_MINUTES", default=30)

# Audit trail: Ed25519 checkpoint signing key kept outside the database (PEM or base64 raw
# private key, or a file holding either); DEBUG generates one under var/ when neither is set.
LANYARD_AUDIT_SIGNING_KEY = env.str("LANYARD_AUDIT_SIGNING_KEY", default="")
LANYARD_AUDIT_SIGNING_KEY_FILE = env.str("LANYARD_AUDIT_SIGNING_KEY_FILE", default="")
LANYARD_AUDIT_CHECKPOINT_MINUTES = env.int("LANYARD_AUDIT_CHECKPOINT_MINUTES", default=5)
# --- audit trail: checkpoints at once and the witness (audit helper "trail") ---
# Events whose action starts with one of these get a checkpoint as soon as their transaction
# commits (audit.services.checkpoint_soon), not only at the next period.
LANYARD_AUDIT_CHECKPOINT_ACTIONS = env.list(
    "LANYARD_AUDIT_CHECKPOINT_ACTIONS",
    default=[
        "grant.revoke",
        "connector.revoked",
        "connector.suspended",
        "identity.offboarded",
        "identity.deprovisioned",
        "identity.suspended",
        "ingest_key.",
        "policy.",
        "audit.",
    ],
)
# Where each signed checkpoint is also written, out of the database's reach (audit.witness):
# "file" (JSON Lines, one O_APPEND file a day in LANYARD_AUDIT_WITNESS_DIR, default
# $LANYARD_VAR_DIR/audit-witness), "s3" (an Object Lock bucket, see below) or "none".
LANYARD_AUDIT_WITNESS = env.str("LANYARD_AUDIT_WITNESS", default="file")
LANYARD_AUDIT_WITNESS_DIR = env.str("LANYARD_AUDIT_WITNESS_DIR", default="")
# The s3 witness (audit/witness_s3.py): a bucket created with Object Lock; credentials from boto3's chain.
LANYARD_AUDIT_WITNESS_S3_BUCKET = env.str("LANYARD_AUDIT_WITNESS_S3_BUCKET", default="")
LANYARD_AUDIT_WITNESS_S3_PREFIX = env.str("LANYARD_AUDIT_WITNESS_S3_PREFIX", default="lanyard-audit/")
LANYARD_AUDIT_WITNESS_S3_RETENTION_DAYS = env.int("LANYARD_AUDIT_WITNESS_S3_RETENTION_DAYS", default=400)
LANYARD_AUDIT_WITNESS_S3_MODE = env.str("LANYARD_AUDIT_WITNESS_S3_MODE", default="COMPLIANCE")
LANYARD_AUDIT_WITNESS_S3_ENDPOINT_URL = env.str("LANYARD_AUDIT_WITNESS_S3_ENDPOINT_URL", default="")
# --- end audit trail ---
# Ingest API limits per request.
LANYARD_INGEST_MAX_EVENTS = env.int("LANYARD_INGEST_MAX_EVENTS", default=1000)
LANYARD_INGEST_MAX_BYTES = env.int("LANYARD_INGEST_MAX_BYTES", default=5 * 1024 * 1024)
# Hardening: discovered (shadow) connectors one ingest key may create per hour; beyond it the batch
# is refused with 429 and nothing is recorded.
LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR = env.int("LANYARD_INGEST_MAX_DISCOVERIES_PER_HOUR", default=100)
# Seconds after an ingested batch before a worker moves grants' and devices' usage times forward
# from it (one roll-up at a time; beat also runs one every minute).
LANYARD_USAGE_ROLLUP_SECONDS = env.int("LANYARD_USAGE_ROLLUP_SECONDS", default=5)

# The cache backs rate limits (ingest keys, allauth); web processes must share it, so the default
# is a file cache under var/ rather than per-process memory. Production: CACHE_URL=redis://...
CACHES = {"default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}
# Django's own backends, counted for /metrics (telemetry/cache.py: hits, misses, writes per backend kind).
_COUNTED_CACHES = {"RedisCache", "FileBasedCache", "LocMemCache", "DatabaseCache", "DummyCache"}
for _cache in CACHES.values():
    _module, _, _name = _cache["BACKEND"].rpartition(".")
    if _module.startswith("django.core.cache.backends.") and _name in _COUNTED_CACHES:
        _cache["BACKEND"] = f"telemetry.cache.{_name}"

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Shared Signals receiver (signals/): SETs pushed by the IdPs' SSF transmitters (RFC 8417, 8935)
# A SET older than this (by its iat) is refused: a replay window bounded in time as well as by jti.
LANYARD_SSF_MAX_AGE = env.int("LANYARD_SSF_MAX_AGE", default=300)
LANYARD_SSF_CLOCK_SKEW = env.int("LANYARD_SSF_CLOCK_SKEW", default=30)  # seconds of iat in the future
LANYARD_SSF_MAX_SET_BYTES = env.int("LANYARD_SSF_MAX_SET_BYTES", default=65536)
LANYARD_SSF_JWKS_TTL = env.int("LANYARD_SSF_JWKS_TTL", default=3600)  # seconds a fetched JWKS is used
# At most one JWKS fetch per stream in this many seconds (an unknown kid refetches once, not per SET).
LANYARD_SSF_JWKS_MIN_REFETCH = env.float("LANYARD_SSF_JWKS_MIN_REFETCH", default=30.0)
LANYARD_SSF_JWKS_TIMEOUT = env.float("LANYARD_SSF_JWKS_TIMEOUT", default=5.0)
# Poll delivery (RFC 8936): how often beat polls the poll streams, and how much per poll.
LANYARD_SSF_POLL_SECONDS = env.int("LANYARD_SSF_POLL_SECONDS", default=10)
LANYARD_SSF_POLL_MAX_EVENTS = env.int("LANYARD_SSF_POLL_MAX_EVENTS", default=100)
LANYARD_SSF_POLL_MAX_ROUNDS = env.int("LANYARD_SSF_POLL_MAX_ROUNDS", default=20)
# The processor acts on received SETs after the push is answered: a task queued when a SET is stored,
# taking up to LANYARD_SSF_PROCESS_BATCH at a time; beat runs it every LANYARD_SSF_PROCESS_SWEEP_SECONDS
# too, in case a task was lost.
# Seconds a web process keeps a receiver stream it read (a change is seen at once in the process
# that made it, within these seconds in the others; 0: read it on every push).
LANYARD_SSF_STREAM_CACHE_SECONDS = env.float("LANYARD_SSF_STREAM_CACHE_SECONDS", default=5.0)
LANYARD_SSF_PROCESS_BATCH = env.int("LANYARD_SSF_PROCESS_BATCH", default=200)
LANYARD_SSF_PROCESS_SWEEP_SECONDS = env.int("LANYARD_SSF_PROCESS_SWEEP_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["ssf-process"] = {
    "task": "signals.process_received",
    "schedule": timedelta(seconds=LANYARD_SSF_PROCESS_SWEEP_SECONDS),
}
CELERY_BEAT_SCHEDULE["ssf-poll"] = {
    "task": "signals.poll_streams",
    "schedule": timedelta(seconds=LANYARD_SSF_POLL_SECONDS),
}

# --- Shared Signals transmitter (signals/): Lanyard's own SETs to gateways and IdPs (SSF 1.0, CAEP)
# The iss of every SET and the base of the endpoint URLs in /.well-known/ssf-configuration.
LANYARD_SSF_ISSUER = env.str("LANYARD_SSF_ISSUER", default="") or LANYARD_BASE_URL
LANYARD_SSF_SIGNING_ALG = env.str("LANYARD_SSF_SIGNING_ALG", default="ES256")  # ES256 | RS256
# A retired signing key stays in the JWKS this long after a rotation (longer than any SET's life).
LANYARD_SSF_KEY_RETENTION_HOURS = env.float("LANYARD_SSF_KEY_RETENTION_HOURS", default=24.0)
LANYARD_SSF_PUSH_TIMEOUT = env.float("LANYARD_SSF_PUSH_TIMEOUT", default=10.0)
LANYARD_SSF_PUSH_MAX_ATTEMPTS = env.int("LANYARD_SSF_PUSH_MAX_ATTEMPTS", default=10)
LANYARD_SSF_PUSH_BACKOFF_BASE = env.float("LANYARD_SSF_PUSH_BACKOFF_BASE", default=5.0)
LANYARD_SSF_PUSH_BACKOFF_MAX = env.float("LANYARD_SSF_PUSH_BACKOFF_MAX", default=3600.0)
# Beat re-enqueues pending push SETs overdue by this many seconds (a lost task, a broker outage).
LANYARD_SSF_OUTBOX_SWEEP_SECONDS = env.int("LANYARD_SSF_OUTBOX_SWEEP_SECONDS", default=30)
# Poll delivery without returnImmediately: how long a poll waits for a SET before answering empty.
LANYARD_SSF_POLL_WAIT_SECONDS = env.float("LANYARD_SSF_POLL_WAIT_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["ssf-outbox-sweep"] = {
    "task": "signals.sweep_outbox",
    "schedule": timedelta(seconds=LANYARD_SSF_OUTBOX_SWEEP_SECONDS),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- gateway: the managed MCP gateway and its OAuth authorization server (django-oauth-toolkit) ---
INSTALLED_APPS += ["oauth2_provider", "gateway"]
LANYARD_GATEWAY_PORT = env.int("LANYARD_GATEWAY_PORT", default=8901)
# The gateway's public base URL: each connector endpoint is <this>/mcp/<slug>, the RFC 8707 resource.
LANYARD_GATEWAY_URL = env.str("LANYARD_GATEWAY_URL", default=f"http://127.0.0.1:{LANYARD_GATEWAY_PORT}")
# Seconds the gateway waits for an upstream MCP server before answering the client with an MCP error.
LANYARD_GATEWAY_UPSTREAM_TIMEOUT = env.float("LANYARD_GATEWAY_UPSTREAM_TIMEOUT", default=10.0)
# Seconds the gateway answers the same token, question and endpoint from memory (gateway/cache.py):
# the bound on how late a revocation, suspension or policy change reaches a gateway process. 0: off.
LANYARD_GATEWAY_CACHE_SECONDS = env.float("LANYARD_GATEWAY_CACHE_SECONDS", default=1.0)
# The gateway as a receiver of Lanyard's SETs (gateway/ssf.py): a transmitter receiver token from the admin.
LANYARD_GATEWAY_SSF_TOKEN = env.str("LANYARD_GATEWAY_SSF_TOKEN", default="")
LANYARD_GATEWAY_SSF_POLL_SECONDS = env.float("LANYARD_GATEWAY_SSF_POLL_SECONDS", default=0.25)
# While SETs arrive, how long the gateway may remember (each SET makes it forget its subject at once).
LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS = env.float("LANYARD_GATEWAY_SIGNALLED_CACHE_SECONDS", default=30.0)
# Names this process's stream (lanyard-gateway <instance>); default <hostname>:<port>.
LANYARD_GATEWAY_INSTANCE = env.str("LANYARD_GATEWAY_INSTANCE", default="")
# The largest JSON-RPC message (bytes) a client may POST to the gateway (413 beyond; 411 without a length).
LANYARD_GATEWAY_MAX_BYTES = env.int("LANYARD_GATEWAY_MAX_BYTES", default=1024 * 1024)
# Seconds between flushes of the gateway's buffered activity events to the audit chain.
LANYARD_GATEWAY_FLUSH_SECONDS = env.float("LANYARD_GATEWAY_FLUSH_SECONDS", default=0.5)
# The AuthZEN PDP the consent page and the gateway ask (Lanyard itself unless deployed apart).
LANYARD_PDP_URL = env.str("LANYARD_PDP_URL", default=LANYARD_BASE_URL)
LANYARD_PDP_KEY = env.str("LANYARD_PDP_KEY", default="")
LANYARD_PDP_TIMEOUT = env.float("LANYARD_PDP_TIMEOUT", default=2.0)
# The decision point (access app): limits, the shipped default that refuses ownerless connectors,
# how often permit counts are written, and the decisions kept for the what-if page.
LANYARD_PDP_MAX_BYTES = env.int("LANYARD_PDP_MAX_BYTES", default=512 * 1024)
LANYARD_PDP_MAX_EVALUATIONS = env.int("LANYARD_PDP_MAX_EVALUATIONS", default=1000)
LANYARD_PDP_FORBID_OWNERLESS = env.bool("LANYARD_PDP_FORBID_OWNERLESS", default=True)
LANYARD_PDP_MAX_DISCOVERIES_PER_HOUR = env.int("LANYARD_PDP_MAX_DISCOVERIES_PER_HOUR", default=100)
LANYARD_PDP_FLUSH_SECONDS = env.float("LANYARD_PDP_FLUSH_SECONDS", default=1.0)
LANYARD_PDP_SAMPLES_PER_FLUSH = env.int("LANYARD_PDP_SAMPLES_PER_FLUSH", default=20)
LANYARD_PDP_SAMPLES_KEPT = env.int("LANYARD_PDP_SAMPLES_KEPT", default=2000)
# Dynamic client registration (RFC 7591): open | authenticated | off, and the redirect targets allowed
# besides loopback (https hosts, custom schemes such as vscode or cursor).
LANYARD_GATEWAY_DCR = env.str("LANYARD_GATEWAY_DCR", default="open")
LANYARD_GATEWAY_DCR_REDIRECT_HOSTS = env.list(
    "LANYARD_GATEWAY_DCR_REDIRECT_HOSTS", default=["claude.ai", "vscode.dev", "insiders.vscode.dev"]
)
LANYARD_GATEWAY_DCR_REDIRECT_SCHEMES = env.list(
    "LANYARD_GATEWAY_DCR_REDIRECT_SCHEMES", default=["vscode", "cursor"]
)
OAUTH2_PROVIDER = {
    "OIDC_ISS_ENDPOINT": LANYARD_BASE_URL,
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,  # S256 only
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,  # bearer in the header only
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,  # RFC 9207 iss on the redirect
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,  # tokens stored hashed, never in plaintext
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("LANYARD_GATEWAY_TOKEN_SECONDS", default=600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env.int("LANYARD_GATEWAY_REFRESH_SECONDS", default=30 * 24 * 3600),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "SCOPES": {
        "mcp": "Use the connector's tools, resources and prompts through the Lanyard gateway",
        "introspection": "Introspect gateway tokens (the gateway's own client only)",
    },
    "DEFAULT_SCOPES": ["mcp"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    # client_credentials: headless agents registered by IAM with an owner (gateway/oauth.py).
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token", "client_credentials"],
    "OAUTH2_VALIDATOR_CLASS": "gateway.oauth.LanyardOAuth2Validator",
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_post", "client_secret_basic"],
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https", *LANYARD_GATEWAY_DCR_REDIRECT_SCHEMES],
    "ALLOW_LOCALHOST_LOOPBACK": True,  # RFC 8252: native clients listen on any loopback port
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("gateway.registration.IamRegistrationPermission",),
}
# http redirect URIs stay allowed for loopback only (RFC 8252 §7.3, native MCP clients); registration
# refuses any other http host (gateway.registration), so DOT's blanket warning is silenced.
SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "oauth2_provider.W008"]

# --- Operations (issue 17): queues, the single beat, health, metrics, structured logs -------------
from kombu import Queue  # noqa: E402

# One queue per kind of work, so a slow IdP sync never holds up a revocation or an email.
CELERY_TASK_DEFAULT_QUEUE = "default"
# Each queue bound by its own routing key: with one shared key, a direct exchange copies every message
# into every queue.
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in ("default", "sync", "revoke", "mail")]
CELERY_TASK_ROUTES = {
    "connectors.sync_source": {"queue": "sync"},
    "connectors.sync_due_sources": {"queue": "sync"},
    "connectors.revoke_grant_at_idp": {"queue": "revoke"},
    "connectors.sweep_revoking": {"queue": "revoke"},
    "governance.offboard_identity": {"queue": "revoke"},
    # Lanyard's SETs carry revocations to gateways: the same queue, so mail or syncs never delay them.
    "signals.deliver_set": {"queue": "revoke"},
    # Received SETs: account-disabled starts offboarding, so the revocations' queue too.
    "signals.process_received": {"queue": "revoke"},
    "signals.sweep_outbox": {"queue": "revoke"},
    "governance.send_email": {"queue": "mail"},
    "governance.attestation_mail": {"queue": "mail"},
}
# The one-beat guard: celery-redbeat keeps the schedule in Redis under a lock that a second beat
# started by mistake waits on (it dispatches nothing until the first one dies and the lock expires).
CELERY_REDBEAT_REDIS_URL = env.str("CELERY_REDBEAT_REDIS_URL", default="") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
CELERY_REDBEAT_KEY_PREFIX = env.str("CELERY_REDBEAT_KEY_PREFIX", default="lanyard:redbeat:")
CELERY_REDBEAT_LOCK_TIMEOUT = env.int("CELERY_REDBEAT_LOCK_TIMEOUT", default=60)
CELERY_REDBEAT_REDIS_OPTIONS: dict = {}
CELERY_REDBEAT_REDIS_USE_SSL = CELERY_REDBEAT_REDIS_URL.startswith("rediss://")
CELERY_BEAT_MAX_LOOP_INTERVAL = env.int("CELERY_BEAT_MAX_LOOP_INTERVAL", default=5)
# acks_late (above): a task is acknowledged after it ran, so a worker killed mid-task (SIGKILL, OOM,
# power) leaves it unacknowledged and Redis hands it to another worker once this many seconds pass.
# It must exceed the longest task (CELERY_TASK_TIME_LIMIT) and the longest retry countdown.
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        visibility_timeout=env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
        # Each worker looks for such orphaned messages this often (one cheap Redis scan each time).
        unacked_restore_interval=env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        unacked_restore_throttle=1,
    )
LANYARD_HEARTBEAT_SECONDS = env.int("LANYARD_HEARTBEAT_SECONDS", default=60)

# /metrics: a scraper sends `Authorization: Bearer <token>` or comes from an allowed network.
LANYARD_METRICS_TOKEN = env.str("LANYARD_METRICS_TOKEN", default="")
LANYARD_METRICS_ALLOWED_NETWORKS = env.list(
    "LANYARD_METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"] if DEBUG else []
)
# Pending email above this many messages in the mail queue is reported on the health page.
LANYARD_HEALTH_MAIL_BACKLOG = env.int("LANYARD_HEALTH_MAIL_BACKLOG", default=200)

# Structured logs: JSON lines in production, readable lines in the demo (LANYARD_LOG_FORMAT=console).
LANYARD_LOG_FORMAT = env.str("LANYARD_LOG_FORMAT", default="console" if DEBUG else "json")
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = True
from telemetry.logs import configure_structlog, logging_config  # noqa: E402

LOGGING = logging_config(LANYARD_LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))
configure_structlog()
