"""One threaded HTTP/1.1 server speaking Google, Graph, Okta and GitHub under path prefixes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from socketserver import StreamRequestHandler
from typing import Any
from urllib.parse import parse_qs

import httpx

from . import api_entra, api_github, api_google, api_okta, creds
from .editions import Editions
from .faults import Faults
from .oidc import OidcProviders
from .oidc import handles as oidc_handles
from .ssf import SsfTransmitters
from .tenant import DEPROVISIONED, STATUS_NAMES, Tenant
from .wire import ApiError, Req, Resp, page_of

log = logging.getLogger("simulator")

DROP = object()  # close the connection without answering


MODULES = {"google": api_google, "entra": api_entra, "okta": api_okta, "github": api_github}

# Opt-in observers of what the simulator serves, for the contract tests (tests/contracts/plugin.py):
# each is called as ``observe(provider, method, path, status, body)`` for every 2xx answer of a
# provider API (not the control API, not an injected fault), before the answer is sent.
OBSERVERS: list[Callable[[str, str, str, int, Any], None]] = []
# A child process (``spawn()``, ``python -m simulator``) started with this variable set to a directory
# appends the same records as JSON lines to ``<dir>/<pid>.jsonl``.
RECORD_ENV = "LANYARD_SIM_RECORD"


def record_to(directory: str) -> Callable[[str, str, str, int, Any], None]:
    """Return an observer that appends each served answer to a JSON-lines file in ``directory``."""
    path = os.path.join(directory, f"{os.getpid()}.jsonl")
    lock = threading.Lock()

    def observe(provider: str, method: str, sub: str, status: int, body: Any) -> None:
        line = json.dumps(
            {"provider": provider, "method": method, "path": sub, "status": status, "body": body},
            separators=(",", ":"),
        )
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    return observe


class Sim:
    """The tenant plus fault switches, independent of the HTTP plumbing."""

    def __init__(
        self, *, seed: int = 1, identities: int = 300, grants: int = 3000, events: int | None = None
    ):
        self.params = {"seed": seed, "identities": identities, "grants": grants, "events": events}
        self.tenant = Tenant(**self.params)
        self.faults = Faults()
        self.editions = Editions()
        self.ssf = SsfTransmitters()
        self.oidc = OidcProviders(seed=seed)
        self.requests = 0

    def reset(self, **overrides: Any) -> None:
        self.params.update({k: v for k, v in overrides.items() if k in self.params})
        self.tenant = Tenant(**self.params)
        self.faults.clear()
        self.editions.reset(**(overrides.get("edition") or {}))
        self.ssf.reset()
        self.oidc.reset(self.params["seed"])

    # --- dispatch

    def dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> Resp | object:
        self.requests += 1
        path, _, qs = raw_path.partition("?")
        query_all = parse_qs(qs, keep_blank_values=True)
        query = {k: v[-1] for k, v in query_all.items()}
        _, prefix, *rest = path.split("/", 2)
        sub = "/" + (rest[0] if rest else "")
        host = headers.get("Host", "127.0.0.1")
        base = f"http://{host}/{prefix}"
        if prefix == "_sim":
            try:
                return self.control(method, sub, query, body, f"http://{host}")
            except (ValueError, KeyError, TypeError) as exc:
                return Resp(400, {"error": str(exc)})
        if prefix == "ssf":  # the simulated SSF transmitters (simulator/ssf.py)
            return self.ssf.handle(method, sub, f"http://{host}", headers, body)
        if oidc_handles(prefix, sub):  # sign-in: the simulated OpenID providers (simulator/oidc.py)
            return self.oidc.handle(prefix, method, sub, f"http://{host}", self.tenant, headers, body, query)
        mod = MODULES.get(prefix)
        if mod is None:
            return Resp(
                404, {"error": f"unknown prefix /{prefix}; use /google, /entra, /okta, /github or /_sim"}
            )
        req = Req(method, sub, query, headers, body, base, query_all)
        fault = self.faults.take(prefix, method, sub, page_of(query))
        if fault is not None:
            out = self.apply_fault(mod, fault)
            if out is not None:
                return out
        refused = self.editions.refuse(prefix, sub)
        try:
            if refused is not None:
                raise ApiError(refused)
            resp = mod.handle(self, req)
        except ApiError as exc:
            resp = exc.resp
        except Exception:
            log.exception("simulator handler failed: %s %s", method, raw_path)
            resp = mod.error(500, "internal", "The simulator failed on this request.")
        extra = getattr(mod, "common_headers", None)
        if extra:
            resp.headers = {**extra(self), **resp.headers}
        if OBSERVERS and 200 <= resp.status < 300 and not isinstance(resp.body, bytes):
            for observe in OBSERVERS:
                observe(prefix, method, sub, resp.status, resp.body)
        return resp

    def apply_fault(self, mod: Any, fault: Any) -> Resp | object | None:
        kind = fault.kind
        if kind in ("slow", "timeout"):
            time.sleep(fault.delay if fault.delay is not None else (5.0 if kind == "timeout" else 1.0))
            return None
        if kind == "drop":
            return DROP
        if kind == "malformed":
            return Resp(200, b'{"items": [{"id": "1", "truncated', {"Content-Type": "application/json"})
        if kind == "unauthorized":
            return mod.error(401, "unauthorized", "The simulator was told to refuse these credentials.")
        if kind == "forbidden":
            return mod.error(403, "forbidden", "Insufficient permissions for this resource.")
        if kind == "server_error":
            return mod.error(fault.status or 500, "backendError", "Internal error encountered.")
        if kind == "rate_limit":
            return mod.rate_limit(fault)
        return None

    def gone(self, provider: str, req: Req, not_found: Resp) -> Resp:
        """Answer a DELETE of something absent: 404, or 204 while a ``delete_204`` fault is set."""
        if self.faults.take(provider, req.method, req.path, 1, kinds=("delete_204",)):
            return Resp(204)
        return not_found

    # --- control API

    def control(self, method: str, sub: str, query: dict[str, str], body: bytes, url: str) -> Resp:
        data = json.loads(body or b"{}")
        t = self.tenant
        if sub == "/state" and method == "GET":
            return Resp(
                200,
                {
                    **t.state(),
                    "faults": self.faults.list(),
                    "edition": self.editions.state(),
                    "requests": self.requests,
                },
            )
        if sub == "/edition":
            if method == "POST":
                return Resp(200, {"edition": self.editions.set(**data)})
            return Resp(200, {"edition": self.editions.state()})
        if sub == "/faults":
            if method == "GET":
                return Resp(200, {"faults": self.faults.list()})
            if method == "DELETE" or data.get("clear"):
                self.faults.clear()
                if not data.get("faults") and "kind" not in data:
                    return Resp(200, {"faults": []})
            specs = data.get("faults") if "faults" in data else [data]
            added = [self.faults.add(**spec).id for spec in specs]
            return Resp(200, {"added": added, "faults": self.faults.list()})
        if sub == "/reset" and method == "POST":
            self.reset(**data)
            return Resp(200, {"ok": True, **self.params, "edition": self.editions.state()})
        if sub == "/grant" and method == "GET":
            provider, gid = query["provider"], query["id"]
            return Resp(200, {"provider": provider, "id": gid, "exists": t.grant_exists(provider, gid)})
        if sub == "/credentials" and method == "GET":
            return Resp(
                200, creds.credentials(url, seed=self.params["seed"], identities=self.params["identities"])
            )
        if sub == "/mutate" and method == "POST":
            return Resp(200, self.mutate(data, url))
        if sub.startswith("/ssf/"):
            return self.ssf.control(sub, method, data, url, t)
        if sub.startswith("/oidc/"):
            return self.oidc.control(sub, method, data, url, t)
        return Resp(404, {"error": f"unknown control endpoint {method} /_sim{sub}"})

    def mutate(self, data: dict, url: str = "") -> dict:
        t = self.tenant
        op = data["op"]
        person = t.by_email[data["email"].lower()] if "email" in data else None
        if op == "add_grant":
            provider = data["provider"]
            app = t.app_by_name[data["app"].lower()]
            if app not in t.provider_apps[provider]:
                raise ValueError(f"{data['app']} has no {provider} presence")
            flags = 0
            if provider == "okta" and data.get("token"):
                flags = 1
            if provider == "github" and data.get("classic"):
                flags = 2
            pos = t.add_grant(provider, person, app, variant=int(data.get("variant", 0)), flags=flags)
            out = {"id": t.external_id(provider, pos)}
            if flags == 1:
                out["token_id"] = t.external_id(provider, pos, token=True)
            return out
        if op == "remove_grant":
            return {"removed": t.remove(data["provider"], data["id"])}
        if op == "set_status":
            status = STATUS_NAMES.index(data["status"])
            t.set_status(person, status)
            pushed = self.ssf.on_status(url, t, data["email"], data["status"]) if url else []
            return {"email": data["email"], "status": data["status"], "ssf": pushed}
        if op == "add_pat_request":
            app = t.app_by_name[data.get("app", "Cursor").lower()]
            if not t.provider_apps["github"] or app not in t.provider_apps["github"]:
                raise ValueError(f"{data.get('app')} has no GitHub presence")
            t.store("github")
            if t.status[person] == DEPROVISIONED:
                raise ValueError("a deprovisioned person is not an org member")
            return {"id": t.add_pat_request(person, app, data.get("reason", ""))}
        if op == "expire_tokens":
            t.expire_tokens(data.get("provider"))
            return {"ok": True}
        raise ValueError(
            f"unknown op {op!r}; one of add_grant, remove_grant, set_status, add_pat_request, expire_tokens"
        )


# --- HTTP plumbing


class Headers(dict):
    """Request headers with case-insensitive ``get`` (keys are stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


REASONS = {s.value: s.phrase for s in HTTPStatus}


class Handler(StreamRequestHandler):
    """A lean HTTP/1.1 keep-alive handler: http.server's email-based header parsing costs more than
    everything else a simulated request does, and the benchmark syncs need thousands a second."""

    disable_nagle_algorithm = True
    server: SimServer

    def handle(self) -> None:
        rfile, sim, verbose = self.rfile, self.server.sim, self.server.verbose
        while True:
            try:
                line = rfile.readline(65537)
            except (ConnectionError, TimeoutError, OSError):
                return
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            try:
                method, target, version = line.decode("latin-1").split()
            except ValueError:
                self._send(Resp(400, {"error": "bad request line"}), keep_alive=False)
                return
            headers = Headers()
            while True:
                h = rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = self._read_chunked()
            else:
                length = int(headers.get("content-length") or 0)
                body = rfile.read(length) if length else b""
            try:
                resp = sim.dispatch(method, target, headers, body)
            except Exception:
                log.exception("simulator failed on %s %s", method, target)
                resp = Resp(500, {"error": "the simulator failed on this request"})
            if verbose:
                status = resp.status if isinstance(resp, Resp) else "dropped"
                sys.stderr.write(f"sim: {method} {target} -> {status}\n")
            if resp is DROP:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            try:
                self._send(resp, keep_alive)
            except OSError:
                return
            if not keep_alive:
                return

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, resp: Any, keep_alive: bool) -> None:
        assert isinstance(resp, Resp)
        if isinstance(resp.body, bytes):
            payload = resp.body
        elif resp.body is None:
            payload = b""
        else:
            payload = json.dumps(resp.body, separators=(",", ":")).encode()
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}", "Server: LanyardSim/1.0"]
        if payload and "Content-Type" not in resp.headers:
            lines.append("Content-Type: application/json; charset=utf-8")
        lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
        lines.append(f"Content-Length: {len(payload)}")
        if not keep_alive:
            lines.append("Connection: close")
        # one write per response: headers and body together
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], sim: Sim, verbose: bool = False):
        super().__init__(addr, Handler)
        self.sim = sim
        self.verbose = verbose

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class SimHandle:
    """A running simulator: ``url``, ``faults()``, ``reset()``, ``mutate()``, ``state()``, ``stop()``."""

    def __init__(self, url: str, server: SimServer | None = None, process: subprocess.Popen | None = None):
        self.url = url
        self._server = server
        self._process = process
        self._client = httpx.Client(base_url=url, timeout=30)

    @property
    def sim(self) -> Sim | None:
        return self._server.sim if self._server else None

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self._client.request(method, f"/_sim{path}", **kw)
        r.raise_for_status()
        return r.json()

    def faults(self, *specs: dict, clear: bool = False, **spec: Any) -> list[dict]:
        """Add fault switches, e.g. ``faults(kind="rate_limit", provider="entra", count=2)``."""
        items = list(specs) + ([spec] if spec else [])
        return self._call("POST", "/faults", json={"clear": clear, "faults": items})["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def reset(self, **params: Any) -> dict:
        """Rebuild the tenant; ``edition={...}`` sets edition switches (all others back on)."""
        return self._call("POST", "/reset", json=params)

    def edition(self, **switches: bool) -> dict[str, bool]:
        """Turn edition/permission switches off or on, e.g. ``edition(okta_identity_engine=False)``."""
        return self._call("POST", "/edition", json=switches)["edition"]

    def state(self) -> dict:
        return self._call("GET", "/state")

    def grant_exists(self, provider: str, external_id: str) -> bool | None:
        return self._call("GET", "/grant", params={"provider": provider, "id": external_id})["exists"]

    def mutate(self, op: str, **data: Any) -> dict:
        return self._call("POST", "/mutate", json={"op": op, **data})

    def credentials(self) -> dict:
        return self._call("GET", "/credentials")

    # --- the SSF transmitters (simulator/ssf.py)

    def ssf_issuer(self, provider: str) -> str:
        return f"{self.url}/ssf/{provider}"

    def ssf_stream(self, provider: str, *, url: str, aud: str) -> dict:
        """Register a receiver: the provider pushes its SETs there (e.g. when a person is suspended)."""
        return self._call("POST", "/ssf/streams", json={"provider": provider, "url": url, "aud": aud})

    def ssf_push(self, provider: str, event: str, **options: Any) -> list[dict]:
        """Push one SET (``email=``, ``url=``/``aud=``, ``kid=``, ``sign_with="stray"``, ``iat_offset=``)."""
        return self._call("POST", "/ssf/push", json={"provider": provider, "event": event, **options})[
            "results"
        ]

    def ssf_poll_stream(self, provider: str, *, aud: str, authorization: str = "") -> str:
        """Open the provider's poll stream (RFC 8936); return its poll endpoint."""
        body = {"provider": provider, "poll": True, "aud": aud, "authorization": authorization}
        return self._call("POST", "/ssf/streams", json=body)["poll_url"]

    def ssf_poll_state(self, provider: str) -> dict:
        """The poll stream's outstanding, acknowledged and refused (setErrs) jtis."""
        return self._call("GET", "/ssf/streams", json={"provider": provider, "poll": True})

    def ssf_rotate(self, provider: str) -> str:
        return self._call("POST", "/ssf/rotate", json={"provider": provider})["kid"]

    # --- the OpenID Connect providers (simulator/oidc.py)

    def oidc_clients(self) -> dict[str, dict[str, str]]:
        """Per provider (okta, google): issuer, client_id and client_secret of its one client."""
        return self._call("GET", "/oidc/clients")

    def oidc_groups(self, email: str, *, add: list[str] = (), remove: list[str] = ()) -> list[str]:
        """Add or remove a person's Okta groups; return the groups their next id token carries."""
        body = {"email": email, "add": list(add), "remove": list(remove)}
        return self._call("POST", "/oidc/groups", json=body)["groups"]

    def stop(self) -> None:
        self._client.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **size: Any) -> SimHandle:
    """Start the simulator in a background thread of this process and return its handle."""
    sim = Sim(**size)
    server = SimServer((host, port), sim, verbose=verbose)
    threading.Thread(target=server.serve_forever, name="lanyard-simulator", daemon=True).start()
    return SimHandle(f"http://{host}:{server.server_address[1]}", server=server)


def spawn(host: str = "127.0.0.1", port: int = 0, **size: Any) -> SimHandle:
    """Start the simulator in a child process (no GIL shared with the caller: use it for benchmarks)."""
    args = [sys.executable, "-m", "simulator", "--host", host, "--port", str(port)]
    for key in ("seed", "identities", "grants", "events"):
        if size.get(key) is not None:
            args += [f"--{key}", str(size[key])]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return SimHandle(line.split()[0], process=proc)
