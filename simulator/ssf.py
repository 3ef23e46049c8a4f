"""A simulated SSF transmitter (OpenID Shared Signals 1.0) for the Okta and Google tenants.

Each provider has a signing key (RSA, RS256; rotation keeps old keys in the JWKS), serves
``/ssf/<provider>/.well-known/ssf-configuration`` and ``/ssf/<provider>/jwks``, and pushes SETs
(RFC 8417) to registered receivers over RFC 8935 push delivery. SET shapes follow the providers:

- Okta: SSF 1.0 ``sub_id`` at the top level, a complex subject ``{"user": {"format": "email"}}``,
  ``typ: secevent+jwt``, CAEP-style ``event_timestamp`` and ``reason_admin``;
- Google (RISC): the subject inside the event, ``{"subject_type": "iss-sub", "iss", "sub"}`` with the
  Google account id, and a ``reason`` (``hijacking``, ``bulk-account``).

Setting a person suspended (``account-disabled``) or deprovisioned (``account-purged``) through the
control API pushes the event to every stream registered for that provider. Tests steer everything
else (a wrong key, an unknown kid, an old iat, another issuer...) through ``push``'s options.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .wire import Resp

RISC = "https://schemas.openid.net/secevent/risc/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
PROVIDERS = ("okta", "google")
EVENTS = {
    "account-disabled": RISC,
    "account-purged": RISC,
    "account-enabled": RISC,
    "credential-compromise": RISC,
    "sessions-revoked": RISC,
    "identifier-changed": RISC,
    "session-revoked": CAEP,
    "credential-change": CAEP,
    "device-compliance-change": CAEP,
}


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Transmitter:
    provider: str
    keys: list[tuple[str, Any]] = field(default_factory=list)  # (kid, private key); last is current
    streams: list[dict[str, str]] = field(default_factory=list)  # {"url", "aud", "authorization"}
    stray: Any = None  # a key nobody publishes ("wrong key")
    # RFC 8936 poll delivery: one poll stream per transmitter, SETs outstanding until acknowledged.
    poll: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.rotate()
        self.stray = _new_key()

    def rotate(self) -> str:
        kid = f"{self.provider}-ssf-{len(self.keys) + 1}-{uuid.uuid4().hex[:8]}"
        self.keys.append((kid, _new_key()))
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}


class SsfTransmitters:
    """The Okta and Google transmitters of one simulator (keys survive a tenant reset; streams do not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_provider = {p: Transmitter(p) for p in PROVIDERS}
        self.pushes = 0

    def reset(self) -> None:
        with self._lock:
            for t in self.by_provider.values():
                t.streams.clear()
                t.poll = None

    @staticmethod
    def issuer(base: str, provider: str) -> str:
        return f"{base}/ssf/{provider}"

    # --- provider endpoints

    def handle(self, method: str, sub: str, base: str, headers: Any = None, body: bytes = b"") -> Resp:
        provider, _, rest = sub.strip("/").partition("/")
        t = self.by_provider.get(provider)
        if t is not None and rest == "poll" and method == "POST":
            return self._poll(t, headers, body)
        if t is None or method != "GET":
            return Resp(404, {"error": "unknown SSF transmitter; use /ssf/okta or /ssf/google"})
        iss = self.issuer(base, provider)
        if rest == ".well-known/ssf-configuration":
            return Resp(
                200,
                {
                    "spec_version": "1_0",
                    "issuer": iss,
                    "jwks_uri": f"{iss}/jwks",
                    "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
                    "events_supported": [prefix + name for name, prefix in EVENTS.items()],
                    "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
                    "default_subjects": "ALL",
                },
            )
        if rest == "jwks":
            return Resp(200, t.jwks())
        return Resp(404, {"error": f"unknown SSF endpoint /ssf/{sub.strip('/')}"})

    def _poll(self, t: Transmitter, headers: Any, body: bytes) -> Resp:
        """RFC 8936: take acknowledgements and errors, answer with outstanding SETs."""
        stream = t.poll
        if stream is None:
            return Resp(404, {"err": "invalid_request", "description": "no poll stream"})
        if stream["authorization"] and (headers or {}).get("authorization") != stream["authorization"]:
            return Resp(401, {"err": "authentication_failed", "description": "bad Authorization"})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return Resp(400, {"err": "invalid_request", "description": "malformed JSON"})
        with self._lock:
            for jti in req.get("ack") or []:
                stream["outstanding"].pop(jti, None)
                stream["acked"].append(jti)
            for jti, err in (req.get("setErrs") or {}).items():
                stream["outstanding"].pop(jti, None)
                stream["errors"][jti] = err
            limit = int(req.get("maxEvents", 100))
            items = list(stream["outstanding"].items())
            sets = dict(items[:limit])
            return Resp(200, {"sets": sets, "moreAvailable": len(items) > limit})

    # --- control

    def control(self, sub: str, method: str, data: dict, base: str, tenant: Any) -> Resp:
        if sub == "/ssf/streams":
            provider = data.get("provider", "okta")
            t = self.by_provider[provider]
            if method == "DELETE":
                with self._lock:
                    t.streams.clear()
                return Resp(200, {"streams": []})
            if method == "POST" and data.get("poll"):
                with self._lock:
                    t.poll = {
                        "aud": data["aud"],
                        "authorization": data.get("authorization", ""),
                        "outstanding": {},
                        "acked": [],
                        "errors": {},
                    }
                return Resp(200, {"poll_url": f"{self.issuer(base, provider)}/poll"})
            if method == "GET" and data.get("poll"):
                with self._lock:
                    p = t.poll or {"outstanding": {}, "acked": [], "errors": {}}
                    return Resp(
                        200,
                        {
                            "outstanding": list(p["outstanding"]),
                            "acked": list(p["acked"]),
                            "errors": dict(p["errors"]),
                        },
                    )
            if method == "POST":
                with self._lock:
                    t.streams.append(
                        {
                            "url": data["url"],
                            "aud": data["aud"],
                            "authorization": data.get("authorization", ""),
                        }
                    )
            return Resp(200, {"streams": t.streams, "issuer": self.issuer(base, provider)})
        if sub == "/ssf/rotate" and method == "POST":
            t = self.by_provider[data.get("provider", "okta")]
            with self._lock:
                return Resp(200, {"kid": t.rotate()})
        if sub == "/ssf/push" and method == "POST":
            return Resp(200, {"results": self.push(base, tenant, **data)})
        return Resp(404, {"error": f"unknown control endpoint {method} /_sim{sub}"})

    def build(
        self, base: str, tenant: Any, *, provider: str, event: str, aud: str, **o: Any
    ) -> tuple[str, str]:
        """Return (jti, SET) for ``event`` about the person ``o['email']`` (or ``o['subject']``)."""
        t = self.by_provider[provider]
        iss = o.get("iss") or self.issuer(base, provider)
        now = int(time.time())
        jti = o.get("jti") or uuid.uuid4().hex
        event_type = o.get("event_type") or (EVENTS[event] + event if event in EVENTS else event)
        payload: dict[str, Any] = dict(o.get("payload") or {})
        subject = o.get("subject")
        claims: dict[str, Any] = {
            "iss": iss,
            "jti": jti,
            "iat": now + int(o.get("iat_offset", 0)),
            "aud": aud,
        }
        if subject is None and "email" in o:
            person = tenant.by_email[o["email"].lower()]
            if provider == "google":
                subject = {"subject_type": "iss-sub", "iss": iss, "sub": tenant.google_ids[person]}
            else:
                subject = {"format": "complex", "user": {"format": "email", "email": tenant.email[person]}}
        if provider == "google":
            payload.setdefault("subject", subject)
            if event == "account-disabled":
                payload.setdefault("reason", "hijacking")
        else:
            claims["sub_id"] = subject
            payload.setdefault("event_timestamp", now)
            payload.setdefault("initiating_entity", "admin")
            payload.setdefault("reason_admin", {"en": f"{event} in the simulated Okta tenant"})
        claims["events"] = {event_type: payload}
        claims.update(o.get("claims") or {})
        kid, key = t.keys[-1]
        if o.get("kid"):
            kid = o["kid"]
        if o.get("sign_with") == "stray":
            key = t.stray
        headers = {"kid": kid, **({"typ": "secevent+jwt"} if provider == "okta" else {})}
        return jti, jwt.encode(claims, key, algorithm="RS256", headers=headers)

    def push(self, base: str, tenant: Any, *, provider: str = "okta", event: str, **o: Any) -> list[dict]:
        """Push one SET to ``o['url']`` (with ``o['aud']``) or to every stream registered for ``provider``."""
        t = self.by_provider[provider]
        aud = o.pop("aud", None)
        authorization = o.pop("authorization", None)
        if o.pop("poll", False):  # queue for the poll stream instead of pushing
            if t.poll is None:
                raise ValueError(f"no poll stream for {provider}")
            jti, token = self.build(
                base, tenant, provider=provider, event=event, aud=aud or t.poll["aud"], **o
            )
            with self._lock:
                t.poll["outstanding"][jti] = o.get("raw", token)
            return [{"poll": True, "jti": jti, "status": None}]
        if "url" in o:
            targets = [{"url": o.pop("url"), "aud": aud or "", "authorization": authorization or ""}]
        else:
            targets = list(t.streams)
        results = []
        for target in targets:
            jti, token = self.build(
                base, tenant, provider=provider, event=event, aud=aud or target["aud"], **o
            )
            body = o.get("raw", token)
            try:
                r = httpx.post(
                    target["url"],
                    content=body.encode() if isinstance(body, str) else body,
                    headers={
                        "Content-Type": o.get("content_type", "application/secevent+jwt"),
                        "Accept": "application/json",
                        **({"Authorization": target["authorization"]} if target.get("authorization") else {}),
                    },
                    timeout=30,
                )
                answer: Any = r.json() if r.content else None
                results.append({"url": target["url"], "jti": jti, "status": r.status_code, "body": answer})
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                results.append(
                    {"url": target["url"], "jti": jti, "status": None, "error": type(exc).__name__}
                )
            self.pushes += 1
        return results

    def on_status(self, base: str, tenant: Any, email: str, status: str) -> list[dict]:
        """A person suspended or deprovisioned in the tenant: push RISC account-disabled / -purged."""
        event = {"suspended": "account-disabled", "deprovisioned": "account-purged"}.get(status)
        if event is None:
            return []
        out = []
        for provider, t in self.by_provider.items():
            if t.streams:
                out += self.push(base, tenant, provider=provider, event=event, email=email)
            if t.poll is not None:
                out += self.push(base, tenant, provider=provider, event=event, email=email, poll=True)
        return out
