"""Events the register emits for the apps above it (connectors imports none of them).

Send them from ``transaction.on_commit`` so receivers only see committed state.
"""

from django.dispatch import Signal

# Sent with identity_ids: list[int], status: str ("suspended" | "deprovisioned"), source_id: int | None.
identity_status_changed = Signal()

# Sent (synchronously, no arguments) before the expiry policy looks for unused grants, so that the
# AI activity app can bring grants' usage times up to date first.
stale_check_starting = Signal()
