"""The SSF, RISC and CAEP event types the receiver knows, and how each SET subject is read."""

from __future__ import annotations

from typing import Any

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"

ACCOUNT_DISABLED = RISC + "account-disabled"
ACCOUNT_PURGED = RISC + "account-purged"
CREDENTIAL_COMPROMISE = RISC + "credential-compromise"
SESSIONS_REVOKED = RISC + "sessions-revoked"
IDENTIFIER_CHANGED = RISC + "identifier-changed"
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
DEVICE_COMPLIANCE_CHANGE = CAEP + "device-compliance-change"
TOKEN_CLAIMS_CHANGE = CAEP + "token-claims-change"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"

# Offboarding starts at once.
OFFBOARDING = (ACCOUNT_DISABLED, ACCOUNT_PURGED)
# Recorded and audited: Lanyard holds nothing it could revoke for a login session or a password
# (grants are OAuth consents of AI apps, which outlive a session by design).
RECORD_ONLY = (
    CREDENTIAL_COMPROMISE,
    SESSIONS_REVOKED,
    SESSION_REVOKED,
    CREDENTIAL_CHANGE,
    TOKEN_CLAIMS_CHANGE,
)
# About the stream itself, not a subject.
STREAM = (VERIFICATION, STREAM_UPDATED)
KNOWN = frozenset(OFFBOARDING + RECORD_ONLY + STREAM + (IDENTIFIER_CHANGED, DEVICE_COMPLIANCE_CHANGE))


# What Lanyard transmits (signals.outbox); verification SETs go to every stream regardless.
TRANSMITTED = (SESSION_REVOKED, TOKEN_CLAIMS_CHANGE, CREDENTIAL_CHANGE)


def short(event_type: str) -> str:
    """``.../risc/event-type/account-disabled`` → ``risc:account-disabled`` (for audit and admin)."""
    for prefix, name in ((RISC, "risc"), (CAEP, "caep"), (SSF, "ssf")):
        if event_type.startswith(prefix):
            return f"{name}:{event_type[len(prefix) :]}"
    return event_type[:200]


def subject_of(claims: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Return the SET's subject: SSF 1.0's top-level ``sub_id``, else the event's own ``subject``.

    Google's RISC SETs (and CAEP drafts) carry ``subject`` inside the event payload.
    """
    if isinstance(payload, dict) and isinstance(payload.get("subject"), dict):
        return payload["subject"]
    sub_id = claims.get("sub_id")
    return sub_id if isinstance(sub_id, dict) else {}


def subject_format(subject: dict[str, Any]) -> str:
    """The subject identifier format (RFC 9493 ``format``; the RISC draft's ``subject_type`` too)."""
    fmt = subject.get("format") or subject.get("subject_type") or ""
    if not fmt and any(k in subject for k in ("user", "device", "session", "tenant")):
        fmt = "complex"
    return str(fmt).replace("-", "_")
