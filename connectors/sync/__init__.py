"""Sync one identity source into the register, page by page, in bulk, idempotently.

``sync_source`` claims the source with a compare-and-swap on ``sync_claimed_at`` (so two workers never
sync one source at once), then streams identities, devices, apps, grants and activity from the
adapter. Each page costs a fixed number of queries: one to load the rows it names, one bulk insert
of the new ones, one bulk update of the ones that really changed. Only keys are kept between
pages (identity ids, the primary keys of the grants seen), so memory does not grow with the tenant.

Grants and identities that the IdP no longer lists are marked gone only after a complete listing:
any failure leaves them alone and fails the run.
"""

from .activity import ACTIVITY_CURSOR, AUDIT_OUTCOMES
from .claim import CLAIM_REFRESH_SECONDS, ClaimLost, SyncRefused, claim_timeout
from .devices import DEVICE_FIELDS
from .grants import APP_FIELDS, CONSENT_TYPES, GRANT_COLUMNS, GRANT_FIELDS, GRANT_KINDS, GRANT_STATUS_FIELDS
from .helpers import PkSet
from .identities import IDENTITY_FIELDS, IDENTITY_STATUSES
from .run import sync_source
from .state import ANALYZE_AFTER_ROWS, CHUNK, VANISHED_REASON

__all__ = [
    "ACTIVITY_CURSOR",
    "ANALYZE_AFTER_ROWS",
    "APP_FIELDS",
    "AUDIT_OUTCOMES",
    "CHUNK",
    "CLAIM_REFRESH_SECONDS",
    "CONSENT_TYPES",
    "DEVICE_FIELDS",
    "GRANT_COLUMNS",
    "GRANT_FIELDS",
    "GRANT_KINDS",
    "GRANT_STATUS_FIELDS",
    "IDENTITY_FIELDS",
    "IDENTITY_STATUSES",
    "VANISHED_REASON",
    "ClaimLost",
    "PkSet",
    "SyncRefused",
    "claim_timeout",
    "sync_source",
]
