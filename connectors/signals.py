"""Events the register emits for the apps above it (connectors imports none of them).

Send them from ``transaction.on_commit`` so receivers only see committed state.
"""

from django.dispatch import Signal

# Sent with identity_ids: list[int], status: str ("active" | "suspended" | "deprovisioned"),
# source_id: int | None. "active" only when an identity is set active again by hand (a sync's
# reactivations reach offboarding through sync_succeeded's reconcile).
identity_status_changed = Signal()

# Sent on commit after a sync completed every required phase, with source_id: int, run_id: int, so
# that offboarding can reconcile the source's identities (level-triggered, not only on changes).
sync_succeeded = Signal()

# Sent (synchronously, no arguments) before the expiry policy looks for unused grants, so that the
# AI activity app can bring grants' usage times up to date first.
stale_check_starting = Signal()

# Sent synchronously inside connector_merge's transaction with survivor: Connector, merged: Connector,
# so the apps above move what they hang on the merged connector (requests, transfers) in the same
# transaction as the merge and its audit event.
connector_merged = Signal()

# Sent synchronously inside the transaction that marks grants revoked or expired in Lanyard itself
# (no IdP call: portal credentials, gateway tokens), with grant_ids: list[int], so that the apps above
# revoke what hangs on them (the gateway's OAuth tokens) in the same transaction.
grants_ended = Signal()

# Sent synchronously inside the transaction that marks grants revoking (to be revoked at their IdP),
# with grant_ids: list[int], so that the apps above record what must follow (Shared Signals outbox
# rows) in the same transaction as the revocation's intent.
grants_revoking = Signal()

# Sent synchronously inside the transaction that records identities' status changes, with
# identity_ids: list[int], status: str, source_id: int | None (one send per status), so that the apps
# above write what must not be lost with the change (identity_status_changed comes after commit).
identities_status_recorded = Signal()

# Sent synchronously inside the transaction that moves a connector to a new status (suspended,
# revoked, active again), with connector: Connector, status: str, previous: str, reason: str.
connector_status_changed = Signal()
