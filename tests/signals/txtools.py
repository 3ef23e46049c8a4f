"""A small SSF push receiver for the transmitter tests: a threaded HTTP server verifying with our JWKS."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt


class PushReceiver:
    """Accepts RFC 8935 pushes; verifies each SET against a JWKS fetched over HTTP (PyJWKClient)."""

    def __init__(self, *, jwks_url: str = "", audience: str, issuer: str, jwks: dict | None = None):
        # jwks_url: fetched over HTTP for each SET; or jwks: a JWKS document given once (the bench).
        self.jwks_url, self.audience, self.issuer = jwks_url, audience, issuer
        self.jwks = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self.times: list[float] = []  # time.perf_counter() at each verified SET
        self.status = 202  # what to answer (503: "down")
        self.received: list[dict[str, Any]] = []  # verified SETs: {"header", "claims", "authorization"}
        self.attempts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with receiver.lock:
                    receiver.attempts += 1
                    status = receiver.status
                if status != 202:
                    self._answer(status, {"err": "temporarily_unavailable", "description": "down"})
                    return
                if self.headers.get("Content-Type") != "application/secevent+jwt":
                    self._answer(415, {"err": "invalid_request", "description": "content type"})
                    return
                try:
                    header = jwt.get_unverified_header(body)
                    if receiver.jwks is not None:
                        key = receiver.jwks[header["kid"]]
                    else:
                        key = jwt.PyJWKClient(receiver.jwks_url).get_signing_key(header["kid"])
                    claims = jwt.decode(
                        body,
                        key,
                        algorithms=["ES256", "RS256"],
                        audience=receiver.audience,
                        issuer=receiver.issuer,
                    )
                except (jwt.PyJWTError, KeyError) as exc:
                    self._answer(400, {"err": "invalid_key", "description": type(exc).__name__})
                    return
                with receiver.lock:
                    receiver.times.append(time.perf_counter())
                    receiver.received.append(
                        {
                            "header": header,
                            "claims": claims,
                            "authorization": self.headers.get("Authorization"),
                        }
                    )
                self._answer(202, None)

            def _answer(self, status: int, body: dict | None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        return [next(iter(r["claims"]["events"])) for r in self.received]
