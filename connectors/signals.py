"""Events the register emits for other apps (connectors never imports governance).

Send them from ``transaction.on_commit`` so receivers only see committed state.
"""

from django.dispatch import Signal

# Sent with identity_ids: list[int], status: str ("suspended" | "deprovisioned"), source_id: int | None.
identity_status_changed = Signal()
