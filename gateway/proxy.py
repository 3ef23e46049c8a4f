"""The gateway process: ``/mcp/<slug>`` speaks Streamable HTTP to the client and to the upstream.

Built on the official ``mcp`` SDK, not a hand-written JSON-RPC layer: the client side is the SDK's
low-level ``Server`` behind its ``StreamableHTTPSessionManager`` in *stateless* mode (no session is
kept between requests, so any number of gateway processes run behind a load balancer); the upstream
side is the SDK's ``streamable_http_client`` with the upstream credential headers, one short upstream
session per request.

Per request, before anything reaches an upstream:
1. the endpoint is looked up by slug (unknown → 404);
2. the bearer token is checked by ``introspection.token_status`` *in-process* (the gateway shares
   Lanyard's database, read-only in practice: two SELECTs), remembered for at most
   ``LANYARD_GATEWAY_CACHE_SECONDS`` (or longer while Lanyard's SETs arrive and make it forget:
   ``gateway/cache.py``, ``gateway/ssf.py``); a token for another endpoint is a 401;
3. ``tools/list`` is forwarded and filtered to what the PDP permits; ``tools/call``,
   ``resources/read`` and ``prompts/get`` are decided by the PDP before they are forwarded; a deny is
   an MCP error carrying the PDP's reason;
4. an upstream that is down or slower than ``LANYARD_GATEWAY_UPSTREAM_TIMEOUT`` is an MCP error,
   never a hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx
import httpx2
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import pdp, resource
from .cache import MISSING, TTLCache
from .models import Endpoint
from .recording import Recorder
from .services import connector_resource, endpoint_url
from .ssf import SignalListener

log = logging.getLogger(__name__)

#: JSON-RPC error codes of the gateway (the -32000..-32099 range is the implementation's).
DENIED = -32003
UPSTREAM_UNAVAILABLE = -32004

SCOPE_KEY = "lanyard.call"


@dataclass(slots=True)
class Call:
    """What the gateway knows about the request being served: who, through which endpoint."""

    endpoint_id: int
    slug: str
    connector_id: int
    connector_name: str
    upstream_url: str
    upstream_headers: dict[str, str]
    claims: dict[str, Any]
    connector_url: str = ""
    bytes_in: int = 0  # the client's request body (its Content-Length)
    upstream_key: tuple = ()  # EndpointConfig.upstream_key: which pooled client and session serve it

    @property
    def subject(self) -> dict[str, Any]:
        return subject_of(self.claims)


def subject_of(claims: dict[str, Any]) -> dict[str, Any]:
    """The AuthZEN subject of a token's claims: the register identity the grant names, else the login."""
    if claims.get("lanyard_identity"):
        # AuthZEN's id is the e-mail; Lanyard's own id makes the match exact (one person, two sources).
        return {
            "type": "identity",
            "id": claims.get("lanyard_email") or str(claims["lanyard_identity"]),
            "properties": {
                "lanyard_identity": str(claims["lanyard_identity"]),
                "username": claims["username"],
            },
        }
    return {"type": "user", "id": claims["sub"], "properties": {"username": claims["username"]}}


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """An endpoint's settings as the gateway uses them (the decrypted credential stays in memory)."""

    pk: int
    connector_id: int
    connector_name: str
    upstream_url: str
    upstream_headers: dict[str, str]
    #: (endpoint, SHA-256 of the credential headers, upstream URL), computed once per load: a rotated
    #: credential or a moved upstream gets a fresh pooled client and session at once.
    upstream_key: tuple[int, str, str]


#: Endpoint settings of this process (unknown slugs too), for LANYARD_GATEWAY_CACHE_SECONDS.
ENDPOINTS = TTLCache(size=2000)
#: PDP answers of this process, keyed by the whole question (gateway/cache.py).
DECISIONS = TTLCache()


def _load_endpoint(slug: str) -> EndpointConfig | None:
    close_old_connections()
    endpoint = Endpoint.objects.select_related("connector").filter(slug=slug).first()
    if endpoint is None:
        return None
    headers = dict(endpoint.credentials.get("headers") or {})
    fingerprint = hashlib.sha256(json.dumps(sorted(headers.items())).encode()).hexdigest()
    return EndpointConfig(
        pk=endpoint.pk,
        connector_id=endpoint.connector_id,
        connector_name=endpoint.connector.name,
        upstream_url=endpoint.upstream_url,
        upstream_headers=headers,
        upstream_key=(endpoint.pk, fingerprint, endpoint.upstream_url),
    )


async def endpoint_config(slug: str) -> EndpointConfig | None:
    config = ENDPOINTS.get(slug)
    if config is MISSING:
        config = await sync_to_async(_load_endpoint)(slug)
        ENDPOINTS.put(slug, config, [("connector", config.connector_id)] if config else [])
    return config


def _call(ctx: Any) -> Call:
    request = ctx.request
    call = request.scope.get(SCOPE_KEY) if request is not None else None
    if call is None:  # only reachable if the app is mounted without the bearer check
        raise MCPError(DENIED, "Not authenticated.")
    return call


class UpstreamClients:
    """One pooled HTTP client per endpoint and credential, kept for the life of the process.

    Building an ``httpx2.AsyncClient`` loads the CA bundle (about 100 ms on a busy machine), and a
    client per call also means a TCP connection per call: the pool keeps connections to each upstream
    alive. The key is the endpoint's ``upstream_key`` (its credential as a SHA-256 fingerprint, never
    logged), so a rotated credential gets a fresh client at once; the least recently used client
    beyond ``size`` is closed.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.clients: OrderedDict[tuple, httpx2.AsyncClient] = OrderedDict()
        self.lock = anyio.Lock()

    async def get(self, upstream_key: tuple, headers: dict[str, str], timeout: float) -> httpx2.AsyncClient:
        key = (*upstream_key, timeout)
        async with self.lock:
            client = self.clients.get(key)
            if client is not None:
                self.clients.move_to_end(key)
                return client
            client = httpx2.AsyncClient(headers=headers, timeout=timeout)
            self.clients[key] = client
            stale = [self.clients.popitem(last=False)[1] for _ in range(len(self.clients) - self.size)]
        for old in stale:
            await old.aclose()
        return client

    async def aclose(self) -> None:
        clients, self.clients = list(self.clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()


class PooledSession:
    """An initialised upstream MCP session, held open by a task of the gateway's task group.

    The SDK's ``ClientSession`` multiplexes concurrent requests by JSON-RPC id, so one session per
    endpoint and credential serves every call of this process: a call is one upstream POST instead of
    four (initialize, initialized, the call, the DELETE that ends a one-call session).
    """

    def __init__(self, url: str, http: httpx2.AsyncClient) -> None:
        self.url, self.http = url, http
        self.session: ClientSession | None = None
        self.ready, self.done = anyio.Event(), anyio.Event()
        self.error: str = ""

    async def hold(self) -> None:
        try:
            async with (
                streamable_http_client(self.url, http_client=self.http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                self.session = session
                self.ready.set()
                await self.done.wait()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # the upstream went away: this session is over, not the gateway
            self.error = type(exc).__name__
        finally:
            self.session = None
            self.done.set()
            self.ready.set()


class UpstreamSessions:
    """The pooled upstream sessions of this process, one per endpoint, credential and URL."""

    def __init__(self) -> None:
        self.sessions: dict[tuple, PooledSession] = {}
        self.task_group: anyio.abc.TaskGroup | None = None

    async def get(self, key: tuple, url: str, http: httpx2.AsyncClient) -> tuple[PooledSession, bool]:
        """Return (an open session, whether it was opened for this call)."""
        pooled = self.sessions.get(key)
        fresh = pooled is None or pooled.done.is_set()
        if fresh:
            assert self.task_group is not None
            pooled = self.sessions[key] = PooledSession(url, http)
            self.task_group.start_soon(pooled.hold)
        await pooled.ready.wait()
        if pooled.session is None:
            self.discard(key, pooled)
            raise ConnectionError(f"upstream session could not be opened ({pooled.error or 'closed'})")
        return pooled, fresh

    def discard(self, key: tuple, pooled: PooledSession) -> None:
        if self.sessions.get(key) is pooled:
            del self.sessions[key]
        pooled.done.set()

    def close(self) -> None:
        for pooled in list(self.sessions.values()):
            pooled.done.set()
        self.sessions.clear()


def _session_terminated(exc: MCPError) -> bool:
    """The upstream no longer knows the session (restarted, expired): the request was not run."""
    return exc.error.code == types.INVALID_REQUEST and exc.error.message == "Session terminated"


class Gateway:
    """The ASGI application: routes, the SDK server, the shared PDP client."""

    def __init__(self) -> None:
        self.server = Server(
            "lanyard-gateway",
            version="1",
            instructions="Lanyard managed MCP gateway: calls are decided by Lanyard's policy and recorded.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
        )
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)
        self.pdp_client: httpx.AsyncClient | None = None
        self.upstreams = UpstreamClients()
        self.sessions = UpstreamSessions()
        self.signals = SignalListener([resource.TOKENS, ENDPOINTS, DECISIONS])
        self.recorder = Recorder()
        self.app = Starlette(
            routes=[
                Route(
                    "/.well-known/oauth-protected-resource/mcp/{slug}", resource.protected_resource_metadata
                ),
                Route("/mcp/{slug}", self.endpoint, methods=["GET", "POST", "DELETE"]),
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client, self.manager.run(), anyio.create_task_group() as tg:
            self.pdp_client = client
            self.sessions.task_group = tg
            tg.start_soon(self.recorder.run)
            tg.start_soon(self.signals.run)
            try:
                yield
            finally:
                self.sessions.close()
                tg.cancel_scope.cancel()
        await self.recorder.flush()  # shutdown (SIGTERM): what is buffered reaches the chain
        await self.upstreams.aclose()
        self.pdp_client = None

    async def healthz(self, request: Request) -> JSONResponse:
        """Liveness: the process answers (load balancers restart it when this stops answering)."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        """Readiness: the database answers and the decision point answers; 503 names what does not."""
        checks: dict[str, str] = {}
        try:
            await sync_to_async(_database_answers)()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable ({type(exc).__name__})"
        assert self.pdp_client is not None
        url = settings.LANYARD_PDP_URL.rstrip("/") + "/.well-known/authzen-configuration"
        try:
            answer = await self.pdp_client.get(url, timeout=settings.LANYARD_PDP_TIMEOUT)
            checks["pdp"] = "ok" if answer.status_code == 200 else f"HTTP {answer.status_code} from {url}"
        except httpx.HTTPError as exc:
            checks["pdp"] = f"unreachable at {url} ({type(exc).__name__})"
        ready = all(v == "ok" for v in checks.values())
        # Informational: without its SET stream the gateway only keeps memories for the short bound.
        checks["signals"] = self.signals.state()
        body = {"status": "ok" if ready else "unavailable", "checks": checks}
        return JSONResponse(body, 200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        """Prometheus exposition of this process, behind the same token or network rule as the web's."""
        from prometheus_client import CONTENT_TYPE_LATEST

        from telemetry import metrics as telemetry_metrics
        from telemetry.web import METRICS_REFUSED, metrics_client_allowed, metrics_refused_status

        client = request.client.host if request.client else ""
        if not metrics_client_allowed(request.headers.get("authorization", ""), client):
            headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if settings.LANYARD_METRICS_TOKEN else {}
            return PlainTextResponse(METRICS_REFUSED, metrics_refused_status(), headers=headers)
        body = await sync_to_async(telemetry_metrics.exposition, thread_sensitive=False)()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def endpoint(self, request: Request) -> Any:
        """Authenticate, then hand the request to the SDK's transport (which answers it itself)."""
        slug = request.path_params["slug"]
        endpoint = await endpoint_config(slug)
        if endpoint is None:
            return await self.unknown(request, slug)
        if request.method == "POST":
            too_big = _body_refused(request)
            if too_big is not None:
                return too_big
        claims, refused = await resource.authenticate(request, slug)
        if refused is not None:
            return refused
        request.scope[SCOPE_KEY] = Call(
            endpoint_id=endpoint.pk,
            slug=slug,
            connector_id=endpoint.connector_id,
            connector_name=endpoint.connector_name,
            upstream_url=endpoint.upstream_url,
            upstream_headers=endpoint.upstream_headers,
            upstream_key=endpoint.upstream_key,
            claims=claims,
            connector_url=claims.get("lanyard_connector_url") or endpoint_url(slug),
            bytes_in=int(request.headers.get("content-length") or 0),
        )
        return _Passthrough(self.manager)

    async def unknown(self, request: Request, slug: str) -> JSONResponse:
        """404 for a slug no endpoint has. A person who is signed in to the gateway (a usable token for
        another endpoint) is asked about by the PDP, which records the unknown MCP server as discovered
        (shadow AI, in IAM's triage; capped per PEP key and hour) and says how to request it."""
        description = f"No connector at /mcp/{slug}."
        token = resource.bearer(request)
        if token and self.pdp_client is not None:
            status = await resource.checked(token)
            if status.active:
                decision = await pdp.aevaluate(
                    subject=subject_of(status.claims),
                    action={"name": "connect"},
                    resource={"type": "mcp_server", "id": endpoint_url(slug)},
                    context={"via": "gateway", "unknown_endpoint": slug},
                    client=self.pdp_client,
                )
                if decision.reason and decision.answered:
                    description = f"{description} {decision.reason}"
        return JSONResponse({"error": "not_found", "error_description": description}, 404)

    # --- the PDP -------------------------------------------------------------------------------

    async def decide(self, call: Call, action: str, target: dict[str, Any]) -> pdp.Decision:
        """Ask the PDP, or answer from this process's memory of the same question (≤ the cache bound)."""
        assert self.pdp_client is not None
        question = {
            "subject": call.subject,
            "action": {"name": action},
            "resource": connector_resource_for(call)
            | {"properties": {"name": call.connector_name, **target}},
            "context": {"via": "gateway", "grant": call.claims.get("lanyard_grant")},
        }
        key = json.dumps(question, sort_keys=True, default=str)
        decision = DECISIONS.get(key)
        if decision is MISSING:
            decision = await pdp.aevaluate(**question, client=self.pdp_client)
            if decision.answered:  # a PDP that did not answer is asked again next time
                DECISIONS.put(key, decision, resource.memory_tags(call.claims, call.connector_id))
        return decision

    async def require(self, call: Call, action: str, target: dict[str, Any], started: float) -> None:
        decision = await self.decide(call, action, target)
        if not decision.allowed:
            await self.recorder.observe_call(call, action, _target_name(target), "denied", started)
            reason = decision.reason or f"Lanyard's policy does not permit {action} on {call.connector_name}."
            raise MCPError(DENIED, reason, {"reason": reason, "connector": call.slug})

    # --- the upstream ------------------------------------------------------------------------------

    async def upstream(self, call: Call, method: str, target: str, started: float, go: Callable) -> Any:
        """Open a short upstream session, run ``go(session)``; any failure or timeout is an MCP error."""
        timeout = settings.LANYARD_GATEWAY_UPSTREAM_TIMEOUT
        try:
            with anyio.fail_after(timeout):
                key = call.upstream_key
                http = await self.upstreams.get(key, call.upstream_headers, timeout)
                while True:
                    pooled, fresh = await self.sessions.get(key, call.upstream_url, http)
                    try:
                        result = await go(pooled.session)
                        break
                    except MCPError as exc:
                        if not _session_terminated(exc):
                            raise
                        self.sessions.discard(key, pooled)
                        if fresh:
                            raise
                        # A pooled session the upstream forgot: the call never ran; once more, fresh.
                    except Exception:
                        self.sessions.discard(key, pooled)
                        raise
        except MCPError:
            await self.recorder.observe_call(call, method, target, "upstream_error", started)
            raise
        except TimeoutError:
            await self.recorder.observe_call(call, method, target, "upstream_timeout", started)
            raise MCPError(
                UPSTREAM_UNAVAILABLE,
                f"{call.connector_name} did not answer within {timeout:g} s; try again later.",
            ) from None
        except Exception as exc:  # connection refused, TLS, HTTP 5xx from the upstream...
            log.warning("upstream %s failed: %s", call.slug, type(exc).__name__)
            await self.recorder.observe_call(call, method, target, "upstream_error", started)
            raise MCPError(
                UPSTREAM_UNAVAILABLE, f"{call.connector_name} is unreachable right now; try again later."
            ) from None
        size = (
            len(result.model_dump_json(by_alias=True, exclude_none=True))
            if hasattr(result, "model_dump_json")
            else 0
        )
        await self.recorder.observe_call(call, method, target, "success", started, bytes_out=size)
        return result

    # --- handlers ----------------------------------------------------------------------------------

    async def list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        call, started = _call(ctx), time.perf_counter()
        listed = await self.upstream(call, "tools/list", "", started, lambda s: s.list_tools(params=params))
        permitted = []
        async with anyio.create_task_group() as tg:
            decisions: dict[str, pdp.Decision] = {}

            async def one(name: str) -> None:
                decisions[name] = await self.decide(call, "tools/call", {"tool": name})

            for tool in listed.tools:
                tg.start_soon(one, tool.name)
        permitted = [tool for tool in listed.tools if decisions[tool.name].allowed]
        return types.ListToolsResult(tools=permitted, next_cursor=listed.next_cursor)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        call, started = _call(ctx), time.perf_counter()
        await self.require(call, "tools/call", {"tool": params.name}, started)
        return await self.upstream(
            call, "tools/call", params.name, started, lambda s: s.call_tool(params.name, params.arguments)
        )

    async def list_resources(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        call, started = _call(ctx), time.perf_counter()
        return await self.upstream(
            call, "resources/list", "", started, lambda s: s.list_resources(params=params)
        )

    async def read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        call, started = _call(ctx), time.perf_counter()
        uri = str(params.uri)
        await self.require(call, "resources/read", {"uri": uri}, started)
        return await self.upstream(call, "resources/read", uri, started, lambda s: s.read_resource(uri))

    async def list_prompts(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        call, started = _call(ctx), time.perf_counter()
        return await self.upstream(call, "prompts/list", "", started, lambda s: s.list_prompts(params=params))

    async def get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        call, started = _call(ctx), time.perf_counter()
        await self.require(call, "prompts/get", {"prompt": params.name}, started)
        return await self.upstream(
            call, "prompts/get", params.name, started, lambda s: s.get_prompt(params.name, params.arguments)
        )


def connector_resource_for(call: Call) -> dict[str, Any]:
    return {"type": "connector", "id": str(call.connector_id)}


def _target_name(target: dict[str, Any]) -> str:
    return str(next(iter(target.values()), ""))


def _body_refused(request: Request) -> JSONResponse | None:
    """A POST must say its size (Content-Length), and that size fit LANYARD_GATEWAY_MAX_BYTES."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return JSONResponse(
            {
                "error": "length_required",
                "error_description": "Send a Content-Length with the JSON-RPC body.",
            },
            411,
        )
    limit = settings.LANYARD_GATEWAY_MAX_BYTES
    if int(length) > limit:
        return JSONResponse(
            {
                "error": "request_too_large",
                "error_description": f"A JSON-RPC message to the gateway may be at most {limit} bytes.",
            },
            413,
        )
    return None


class _Passthrough:
    """A Starlette 'response' that lets the SDK's transport answer the (already authenticated) request."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def _database_answers() -> None:
    from django.db import connection

    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def create_app() -> Starlette:
    return Gateway().app


__all__ = ["Gateway", "create_app", "connector_resource"]
