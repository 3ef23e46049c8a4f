"""What governance hangs on a connector follows it when IAM merges it into another."""

from __future__ import annotations

from typing import Any

from connectors.models import Connector

from .models import ConnectorRequest, OwnershipTransfer


def on_connector_merged(*, survivor: Connector, merged: Connector, **kwargs: Any) -> dict[str, int]:
    """Move the merged connector's requests and ownership transfers to the survivor (same transaction)."""
    requests = ConnectorRequest.objects.filter(connector=merged).update(connector=survivor)
    transfers = OwnershipTransfer.objects.filter(connector=merged).update(connector=survivor)
    return {"requests": requests, "transfers": transfers}
