"""The client's address for audit records, as allauth's trusted-proxy settings give it.

One definition for every app: the sign-in rate limits and every recorded address agree. Behind
proxies (``ALLAUTH_TRUSTED_PROXY_COUNT`` / ``ALLAUTH_TRUSTED_CLIENT_IP_HEADER``) it is the real
client, not the balancer; an address that cannot be read is None, never a 500.
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest


def client_ip(request: HttpRequest | None) -> str | None:
    """Return the client's address as allauth's rate limits see it, or None when there is none."""
    if request is None:
        return None
    from allauth.account.adapter import get_adapter

    try:
        ip = get_adapter(request).get_client_ip(request)
        ipaddress.ip_address(ip)
    except Exception:  # noqa: BLE001 - an address we cannot read is recorded as none, never a 500
        return None
    return ip
