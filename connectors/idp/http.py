"""The one HTTP core every adapter uses: retries with each provider's own signals, paging, concurrency.

Providers plug in two small hooks: ``classify`` (is this response OK, worth retrying — and after how
long — or a permanent failure?) and ``describe`` (the provider's own error text, for messages). All
failures leave as the ``IdpError`` family; messages name source, endpoint and status and never carry a
token or a secret. Verdicts (``verdicts``), token caching (``tokens``) and wire values (``values``) have
modules of their own; the names adapters use are importable from here too.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from .base import (
    IdpConfig,
    IdpError,
    MalformedResponse,
    NotFound,
    PermanentIdpError,
    TransientIdpError,
)
from .tokens import TokenCache
from .values import batched, parse_time, rfc3339
from .verdicts import (
    FAIL,
    NOT_FOUND,
    OK,
    REFRESH,
    RETRY,
    RETRYABLE_STATUS,
    Verdict,
    default_classify,
    default_describe,
    retry_after_seconds,
)

log = logging.getLogger("connectors.idp")

T = TypeVar("T")
R = TypeVar("R")

SECRET_WORDS = ("secret", "key", "token", "password", "credential")


class HttpCore:
    """A pooled ``httpx.Client`` with retry/backoff, paging helpers and bounded concurrency."""

    def __init__(
        self,
        config: IdpConfig,
        *,
        base_url: str,
        auth_scheme: str = "Bearer",
        token: TokenCache | None = None,
        static_token: str = "",
        headers: dict[str, str] | None = None,
        classify: Callable[[httpx.Response], Verdict | None] | None = None,
        describe: Callable[[httpx.Response], str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.config = config
        self.source = config.name or config.kind
        self.base_url = base_url.rstrip("/")
        self._host = urlsplit(self.base_url).netloc
        self.auth_scheme = auth_scheme
        self.token = token
        self._static_token = static_token
        self._classify = classify
        self._describe = describe or default_describe
        self.sleep: Callable[[float], None] = time.sleep  # tests may replace it
        pool = max(4, config.concurrency + 2)
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        if transport is None:
            # small requests back to back: don't let Nagle hold a POST body behind its headers
            transport = httpx.HTTPTransport(
                limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(config.timeout),
            limits=limits,
            headers={"User-Agent": "Lanyard/0.1 (+connector governance)", **(headers or {})},
            transport=transport,
            trust_env=False,
        )
        self._secrets = self._collect_secrets(config.credentials)

    # --- errors and secrets

    @staticmethod
    def _collect_secrets(creds: dict[str, Any]) -> list[str]:
        out = []
        for key, value in creds.items():
            # ids, emails and org names stay readable in messages; keys, secrets and tokens never do
            if not any(word in key.lower() for word in SECRET_WORDS):
                continue
            if isinstance(value, str) and len(value) >= 8:
                out.append(value)
                # a PEM key may leak a line at a time
                out.extend(line for line in value.splitlines() if len(line) >= 16 and "-----" not in line)
        return out

    def scrub(self, text: str) -> str:
        """Remove anything that looks like one of this source's secrets or tokens from ``text``."""
        for secret in [*self._secrets, self._static_token, self.token.current if self.token else ""]:
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def error(self, cls: type[IdpError], message: str, endpoint: str, status: int | None = None, **kw: Any):
        return cls(self.scrub(message), source=self.source, endpoint=endpoint, status=status, **kw)

    def _fail(self, verdict: Verdict, resp: httpx.Response, endpoint: str) -> IdpError:
        detail = self.scrub(self._describe(resp))[:300]
        reason = verdict.reason or "request refused"
        message = f"{reason}: {detail}" if detail else reason
        if verdict.action == NOT_FOUND:
            return self.error(NotFound, message, endpoint, resp.status_code)
        return self.error(PermanentIdpError, message, endpoint, resp.status_code)

    # --- requests

    def _auth_header(self) -> tuple[str, str]:
        if self.token is not None:
            tok = self.token.get()
            return f"{self.auth_scheme} {tok}", tok
        if self._static_token:
            return f"{self.auth_scheme} {self._static_token}", self._static_token
        return "", ""

    def _backoff(self, attempt: int, hint: float | None) -> float:
        cfg = self.config
        if hint is not None:
            wait = hint + random.uniform(0, cfg.backoff_base)
        else:
            wait = cfg.backoff_base * (2**attempt) * random.uniform(0.5, 1.0)
        return max(0.0, min(wait, cfg.backoff_max))

    @staticmethod
    def endpoint_of(url: str) -> str:
        return urlsplit(url).path or url

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        allow_not_found: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; return the response or raise an ``IdpError``.

        With ``allow_not_found`` a 404 is returned instead of raised (revocations use it).
        """
        endpoint = self.endpoint_of(url)
        if auth and url.startswith("http") and urlsplit(url).netloc != self._host:
            # never send credentials to a host the source was not configured with
            raise self.error(MalformedResponse, "paging link points at another host", endpoint)
        attempts = max(1, self.config.max_retries + 1)
        refreshed = False
        last_reason, last_status, last_hint = "", None, None
        attempt = 0
        while attempt < attempts:
            h = dict(headers or {})
            used_token = ""
            if auth:
                value, used_token = self._auth_header()
                if value:
                    h["Authorization"] = value
            try:
                resp = self.client.request(method, url, params=params, json=json, data=data, headers=h)
            except httpx.TimeoutException:
                last_reason, last_status, last_hint = "timed out", None, None
            except httpx.TransportError as exc:
                last_reason, last_status, last_hint = f"connection failed ({type(exc).__name__})", None, None
            else:
                verdict = (self._classify(resp) if self._classify else None) or default_classify(resp)
                if verdict.action == OK:
                    return resp
                if verdict.action == NOT_FOUND and allow_not_found:
                    return resp
                if verdict.action == REFRESH:
                    if self.token is not None and not refreshed and used_token:
                        # the cached token may have expired early or been revoked: fetch a new one once
                        self.token.invalidate(used_token)
                        refreshed = True
                        continue
                    raise self._fail(
                        Verdict(FAIL, reason=verdict.reason or "authentication failed"), resp, endpoint
                    )
                if verdict.action in (FAIL, NOT_FOUND):
                    raise self._fail(verdict, resp, endpoint)
                last_reason, last_status, last_hint = (
                    verdict.reason or f"HTTP {resp.status_code}",
                    resp.status_code,
                    (verdict.wait),
                )
                resp.close()
            attempt += 1
            if attempt >= attempts:
                break
            wait = self._backoff(attempt - 1, last_hint)
            log.info(
                "%s %s: %s; retry %d/%d in %.2fs",
                self.source,
                endpoint,
                last_reason,
                attempt,
                attempts - 1,
                wait,
            )
            self.sleep(wait)
        raise self.error(
            TransientIdpError,
            f"{last_reason}; gave up after {attempts} attempt{'s' if attempts > 1 else ''}",
            endpoint,
            last_status,
            retry_after=last_hint,
        )

    def json_of(self, resp: httpx.Response) -> Any:
        """Decode a JSON body or raise ``MalformedResponse`` naming the endpoint and status."""
        try:
            return resp.json()
        except ValueError:
            raise self.error(
                MalformedResponse,
                "response body is not valid JSON",
                self.endpoint_of(str(resp.url)),
                resp.status_code,
            )

    def get_json(self, url: str, params: Any = None) -> Any:
        return self.json_of(self.request("GET", url, params=params))

    def malformed(self, message: str, url: str, status: int | None = 200) -> MalformedResponse:
        return self.error(MalformedResponse, message, self.endpoint_of(url), status)

    def fetch_token(
        self, url: str, *, field: str = "access_token", what: str = "an access token", **request: Any
    ) -> tuple[dict[str, Any], str]:
        """POST to a token endpoint (unauthenticated); return the body and the token in ``field``.

        A refusal becomes a PermanentIdpError saying which token could not be had; a body without
        the token is a MalformedResponse. Neither message carries the credentials sent.
        """
        try:
            resp = self.request("POST", url, auth=False, **request)
        except PermanentIdpError as exc:
            raise self.error(
                PermanentIdpError, f"could not obtain {what}: {exc.message}", exc.endpoint, exc.status
            )
        body = self.json_of(resp)
        if not isinstance(body, dict) or not body.get(field):
            raise self.malformed(f"token response has no {field}", url, resp.status_code)
        return body, body[field]

    # --- paging

    def pages(
        self,
        url: str,
        params: dict[str, Any] | None,
        *,
        items: Callable[[Any], Any],
        next_page: Callable[[httpx.Response, Any, str, dict[str, Any] | None], tuple[str, Any] | None],
        stop_on_empty: bool = False,
    ) -> Iterator[list[Any]]:
        """Yield each non-empty page's items; ``next_page`` returns the next (url, params) or None."""
        seen: set[str] = set()
        while True:
            resp = self.request("GET", url, params=params)
            body = self.json_of(resp)
            page = items(body)
            if not isinstance(page, list):
                raise self.malformed("page does not hold a list of items", url, resp.status_code)
            if page:
                yield page
            nxt = next_page(resp, body, url, params)
            if nxt is None or (stop_on_empty and not page):
                return
            key = f"{nxt[0]}?{nxt[1]}"
            if key in seen:
                raise self.malformed("paging cursor repeats itself", url, resp.status_code)
            seen.add(key)
            url, params = nxt

    def link_pages(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        items: Callable[[Any], Any] | None = None,
        stop_on_empty: bool = False,
    ) -> Iterator[list[Any]]:
        """Paging by ``Link: <...>; rel="next"`` (Okta, GitHub)."""

        def next_page(resp: httpx.Response, body: Any, url: str, params: Any) -> tuple[str, Any] | None:
            nxt = resp.links.get("next", {}).get("url")
            return (nxt, None) if nxt else None

        return self.pages(
            url, params, items=items or (lambda body: body), next_page=next_page, stop_on_empty=stop_on_empty
        )

    def token_pages(self, url: str, params: dict[str, Any], key: str, cursor: str = "pageToken"):
        """Paging by ``nextPageToken`` in the body (Google)."""

        def next_page(resp: httpx.Response, body: Any, url: str, params: Any) -> tuple[str, Any] | None:
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            return (url, {**params, cursor: token}) if token else None

        def items(body: Any) -> Any:
            return body.get(key, []) if isinstance(body, dict) else None

        return self.pages(url, params, items=items, next_page=next_page)

    def odata_pages(self, url: str, params: dict[str, Any] | None = None):
        """Paging by ``@odata.nextLink`` (Microsoft Graph)."""

        def next_page(resp: httpx.Response, body: Any, url: str, params: Any) -> tuple[str, Any] | None:
            link = body.get("@odata.nextLink") if isinstance(body, dict) else None
            return (link, None) if link else None

        def items(body: Any) -> Any:
            return body.get("value") if isinstance(body, dict) else None

        return self.pages(url, params, items=items, next_page=next_page)

    # --- concurrency

    def ordered_map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(item)`` in input order, at most ``concurrency`` calls at once (memory bounded)."""
        workers = max(1, self.config.concurrency)
        if workers == 1:
            for item in items:
                yield fn(item)
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"idp-{self.config.kind}")
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers * 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.client.close()


class AdapterBase:
    """What every adapter shares: its config, its HTTP core, no devices by default, ``close()``."""

    kind = ""
    http: HttpCore

    def __init__(self, config: IdpConfig):
        self.config = config

    def cred(self, *names: str, required: bool = True) -> Any:
        for name in names:
            value = self.config.credentials.get(name)
            if value not in (None, ""):
                return value
        if required:
            raise PermanentIdpError(
                f"credentials are missing {names[0]!r}", source=self.config.name or self.config.kind
            )
        return None

    def page(self, provider_max: int) -> int:
        """Items to ask for per request: the provider's maximum, or less if the config says so."""
        return max(1, min(provider_max, self.config.page_size))

    def iter_devices(self) -> Iterator[list[Any]]:
        return iter(())

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = [
    "FAIL",
    "NOT_FOUND",
    "OK",
    "REFRESH",
    "RETRY",
    "RETRYABLE_STATUS",
    "AdapterBase",
    "HttpCore",
    "TokenCache",
    "Verdict",
    "batched",
    "default_classify",
    "default_describe",
    "parse_time",
    "retry_after_seconds",
    "rfc3339",
]
