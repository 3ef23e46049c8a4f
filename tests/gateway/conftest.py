"""Gateway fixtures: a decision point on a real HTTP port speaking AuthZEN 1.0's evaluation shape.

It stands in for the PDP (built in the access app) the way the simulator stands in for the IdPs:
the gateway's side of the wire is real. ``pdp.deny[(subject_id, action)] = reason`` makes it deny;
``pdp.deny[(subject_id, action, tool)]`` denies one tool only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.models import Endpoint
from tests.factories import ConnectorFactory


class PDPDouble:
    def __init__(self) -> None:
        self.deny: dict[tuple, str] = {}
        self.requests: list[dict] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                found = self.path == "/.well-known/authzen-configuration"
                data = json.dumps({"policy_decision_point": double.url} if found else {}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                double.requests.append(body)
                if self.path != "/access/v1/evaluation":
                    self.send_response(404)
                    self.end_headers()
                    return
                key = (body["subject"]["id"], body["action"]["name"])
                target = (body["resource"].get("properties") or {}).get("tool")
                reason = double.deny.get(key, double.deny.get((*key, target)))
                answer = {"decision": reason is None}
                if reason is not None:
                    answer["context"] = {"reason_user": {"en": reason}}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pdp(settings):
    double = PDPDouble()
    settings.LANYARD_PDP_URL = double.url
    yield double
    double.close()


@pytest.fixture
def endpoint(owner):
    connector = ConnectorFactory(name="Team Wiki MCP", kind="mcp_server", business_owner=owner, risk="high")
    return Endpoint.objects.create(
        connector=connector, slug="team-wiki", upstream_url="http://127.0.0.1:9/mcp"
    )
