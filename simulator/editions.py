"""Edition and permission switches: make the tenant lack what real tenants often lack.

Each switch is on (the tenant has it) by default; turning it off makes the endpoints behind it answer
as the real provider does for a tenant without that edition, licence or permission.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from .wire import Resp

# switch -> (provider, path substring, what the real provider answers without it)
SWITCHES: dict[str, tuple[str, str, str]] = {
    # GitHub Free/Team: the organization audit-log API is Enterprise Cloud only (404).
    "github_enterprise_cloud": ("github", "/audit-log", "github_not_found"),
    # Okta Classic Engine: no Devices API (404 E0000007).
    "okta_identity_engine": ("okta", "/api/v1/devices", "okta_not_found"),
    # Entra app without Device.Read.All: 403 Authorization_RequestDenied.
    "entra_device_read_all": ("entra", "/v1.0/devices", "graph_denied"),
    # Entra tenant without a P1/P2 licence: sign-in logs answer 403 (non-premium tenant).
    "entra_premium": ("entra", "/auditLogs/signIns", "graph_not_premium"),
    # Google service account without the mobile-device scope in its domain-wide delegation: 403.
    "google_mobile_device_scope": ("google", "/devices/mobile", "google_scope"),
}
DEFAULTS = dict.fromkeys(SWITCHES, True)


def _graph_error(code: str, message: str) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now, "request-id": rid, "client-request-id": rid},
        }
    }


def _answer(kind: str) -> Resp:
    if kind == "github_not_found":
        return Resp(
            404,
            {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/orgs/orgs#get-the-audit-log-for-an-organization",
                "status": "404",
            },
        )
    if kind == "okta_not_found":
        return Resp(
            404,
            {
                "errorCode": "E0000007",
                "errorSummary": "Not found: Resource not found: devices (UserDevice)",
                "errorLink": "E0000007",
                "errorId": f"oae{uuid.uuid4().hex[:19]}",
                "errorCauses": [],
            },
        )
    if kind == "graph_denied":
        return Resp(
            403,
            _graph_error("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
        )
    if kind == "graph_not_premium":
        return Resp(
            403,
            _graph_error(
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            ),
        )
    return Resp(
        403,
        {
            "error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "errors": [
                    {
                        "message": "Insufficient Permission",
                        "domain": "global",
                        "reason": "insufficientPermissions",
                    }
                ],
                "status": "PERMISSION_DENIED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                        "domain": "googleapis.com",
                        "metadata": {
                            "service": "admin.googleapis.com",
                            "method": "ccc.hosted.frontend.directory.v1.DirectoryMobiledevices.List",
                        },
                    }
                ],
            }
        },
    )


class Editions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on = dict(DEFAULTS)

    def set(self, **switches: bool) -> dict[str, bool]:
        unknown = set(switches) - set(SWITCHES)
        if unknown:
            raise ValueError(
                f"unknown edition switches: {', '.join(sorted(unknown))}; one of {', '.join(SWITCHES)}"
            )
        with self._lock:
            self._on.update({k: bool(v) for k, v in switches.items()})
            return dict(self._on)

    def reset(self, **switches: bool) -> dict[str, bool]:
        with self._lock:
            self._on = dict(DEFAULTS)
        return self.set(**switches)

    def state(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._on)

    def refuse(self, provider: str, path: str) -> Resp | None:
        """Return the provider's answer when a switched-off edition or permission covers ``path``."""
        with self._lock:
            off = [k for k, on in self._on.items() if not on]
        for key in off:
            p, fragment, kind = SWITCHES[key]
            if p == provider and fragment in path:
                return _answer(kind)
        return None
