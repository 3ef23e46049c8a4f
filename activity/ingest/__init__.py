"""AI activity ingest: a gateway's batch validated, resolved to the register and recorded in the chain."""

from .service import DiscoveryLimitReached, IngestResult, events_ingest
from .validation import MAX_ERRORS, BatchTooLarge, Event, IngestRejected, MalformedJSON, decode, validate

__all__ = [
    "MAX_ERRORS",
    "BatchTooLarge",
    "DiscoveryLimitReached",
    "Event",
    "IngestRejected",
    "IngestResult",
    "MalformedJSON",
    "decode",
    "events_ingest",
    "validate",
]
