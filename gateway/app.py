"""The Starlette receiver: POST /webhooks/{endpoint_id}, /healthz, /readyz, /metrics, /ops/rq/, the web console
/console/ and the admin API /api/v1/ (admin).

The path of a webhook: find the endpoint (404) → read the raw body under the endpoint's cap (413)
→ the kind's handler verifies the signature on the raw bytes (401), answers handshakes, and splits
the body into events (400) → the ingestor stores them in Redis, deduplicated, in the inbox stream,
or, when Redis cannot take them, in the gateway's local journal (gateway/journal.py; drained into
Redis once it is back; 503 with Retry-After only when neither can take them) → only then 2xx. The
workers' inbox pumps turn the inbox entries into RQ jobs, under the job ids the 2xx answer named
(workers/inbox.py).

That path is plain ASGI (`WebhookReceiver`, put in front of the router by `Gateway`): no Request,
routing or middleware per webhook, the 2xx JSON rendered as bytes. It cut the gateway's CPU per
request from 2.8-2.9x to 1.6-2.0x a no-op Starlette route's (bench/ingest, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from connectors import issued, registry
from gateway import redisclient
from gateway.api import PREFIX as API_PREFIX
from gateway.api import admin_api
from gateway.config import Config, Endpoint
from gateway.console import Console, console_app
from gateway.errors import (
    BodyTooLarge,
    MalformedRequest,
    RedisUnavailable,
    SignatureRejected,
    UnknownEndpoint,
    WebhookRejected,
)
from gateway.ingest import Accepted, Draft, Ingestor
from gateway.journal import Journal, JournalCollector
from gateway.live import Changes, LiveConfig, Reloader, install_sighup
from gateway.metrics import EndpointCounters, Metrics
from gateway.oauth import CALLBACK_PATH, LEGACY_CALLBACK_PATH, START_PATH, oauth_callback, oauth_start
from gateway.ops import OperatorGuard, dashboard_app
from gateway.redisserver import data_dir
from handlers import Handler, Incoming, Outcome, handler_for

log = logging.getLogger("koppel.gateway")

RETRY_AFTER_SECONDS = 5
WEBHOOK_PREFIX = "/webhooks/"
ISSUED_SECRETS_SECONDS = 30.0
"""How long the receiver trusts its copy of an endpoint's issued webhook secrets (connectors/issued.py)."""
FRESH_READ_SECONDS = 1.0
"""A signature none of them verifies reads them again (a secret rotated since), at most this often."""


def redis_client(url: str) -> redis.Redis:
    """A client that fails fast (so the receiver can answer 503) and survives one dropped connection (through
    Sentinel the retry reconnects to the master the sentinels name: a failover is followed)."""
    return redisclient.connect(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def async_redis_client(url: str) -> redis.asyncio.Redis:
    """The event loop's client (the ingestor's batches): fails fast, like `redis_client`."""
    return redisclient.connect_async(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
    )


class ClientGone(Exception):
    """The client disconnected before its body was read (answered 400, which nobody receives)."""


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased; the first occurrence of a repeated name wins."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    return headers


async def read_body(headers: dict[str, str], receive: Receive, cap: int) -> bytes:
    """The raw body from the ASGI `receive` channel, refused (413) once it is over `cap` bytes."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise MalformedRequest("Content-Length header is not a number") from None
        if length > cap:
            raise BodyTooLarge(f"body of {length} bytes is over this endpoint's limit of {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(f"body is over this endpoint's limit of {cap} bytes")
        more = message.get("more_body", False)
        if not chunks and not more:
            return chunk  # the usual case: the whole body in one message
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


def _query(scope: Scope) -> dict[str, str]:
    """The query parameters as Starlette parses them; the first occurrence of a repeated name wins."""
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    return dict(reversed(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)))


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "message": message}, status_code=status, headers=headers)


def journal_dir(config: Config) -> Path:
    """Where the gateway journals events Redis cannot take: `[gateway] journal_dir`, else `<data dir>/journal`."""
    chosen = config.gateway.journal_dir
    return Path(chosen) if chosen else data_dir() / "journal"


def create_app(config: Config, redis_url: str, *, config_path: Path | None = None) -> Gateway:
    """Build the receiver. Nothing happens at import time; Redis is connected in the lifespan.

    With `config_path` (the file `config` was read from) the gateway follows that file (gateway/live.py):
    it is watched, reloaded on SIGHUP (when served from the main thread) and by `app.state.reload_config()`,
    which reads it now and returns its problems (an empty list: applied, or nothing changed). The admin API
    (/api/v1/, gateway/api) reads and changes that file."""
    connection = redis_client(redis_url)
    live = LiveConfig(config)
    settings = config.gateway
    journal = Journal(journal_dir(config)) if settings.journal else None
    ingestor = Ingestor(
        connection,
        queue_name=settings.queue,
        dedupe_ttl=settings.dedupe_ttl_seconds,
        batch_max=settings.enqueue_batch_max,
        async_connection=async_redis_client(redis_url),
        journal=journal,
        wait_replicas=settings.wait_replicas,
        wait_timeout_ms=settings.wait_timeout_ms,
    )
    metrics = Metrics(
        lambda: {settings.queue: ingestor.queue_depth()},
        lambda: {settings.queue: ingestor.inbox_depth()},
        lambda: {settings.queue: ingestor.failed_count()},
        lambda: {settings.queue: ingestor.inbox_oldest_age()},
    )
    if journal is not None:
        metrics.registry.register(JournalCollector(journal))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """200 while the gateway accepts webhooks: "ready", "draining" (Redis answers, the journal is
        being stored in it) or "degraded" (Redis does not answer, the journal takes events meanwhile: still
        routable, docs/durability.md); 503 "unavailable" when neither can take an event."""
        body: dict[str, object] = {"status": "ready", "redis": "ok"}
        try:
            await asyncio.to_thread(connection.ping)
        except (redis.RedisError, OSError) as exc:
            body = {"status": "unavailable", "redis": f"unreachable ({exc.__class__.__name__})"}
        if journal is not None:
            problem = journal.usable()
            state: dict[str, object] = {"in_use": journal.in_use, "pending": journal.pending, "writable": not problem}
            body["journal"] = state if problem is None else state | {"problem": problem}
            if problem is None and body["status"] == "unavailable":
                body["status"] = "degraded"  # accepting: events wait in the journal until Redis is back
            elif journal.in_use and body["status"] == "ready":
                body["status"] = "draining"  # Redis is back; journaled events are being stored
        if body["status"] == "unavailable":
            return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return JSONResponse(body)

    admin = settings.admin_token.get_secret_value().encode() if settings.admin_token is not None else b""

    async def metrics_endpoint(request: Request) -> Response:
        if settings.metrics_auth:  # the config requires an admin token with it
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), admin):
                return _error(401, "unauthorized", "/metrics needs Authorization: Bearer <gateway.admin_token> "
                              "(gateway.metrics_auth is on)", {"WWW-Authenticate": "Bearer"})  # fmt: skip
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reasons = {404: "not_found", 405: "method_not_allowed"}
        messages = {
            404: f"no route for {request.url.path}; webhooks go to POST /webhooks/{{endpoint_id}}",
            405: f"{request.method} is not allowed here",
        }
        return _error(
            exc.status_code,
            reasons.get(exc.status_code, "http_error"),
            messages.get(exc.status_code, str(exc.detail)),
            dict(exc.headers or {}),
        )

    reloader: Reloader | None = None
    if config_path is not None:
        from gateway.checks import check_parts

        reloader = Reloader(Path(config_path), live, live.swap, check_parts, connection=connection, name="gateway")

    def reload_config() -> list[str]:
        if reloader is None:
            return ["the gateway was started without a config file (create_app's config_path): nothing to reload"]
        return reloader.reload()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ingestor.start()
        endpoints = ", ".join(f"{e.id} ({e.kind})" for e in config.endpoints) or "none"
        log.info("webhooks at %s{endpoint}: %s; events go to queue %s", WEBHOOK_PREFIX, endpoints, settings.queue)
        if reloader is not None:
            reloader.start()
            install_sighup(reloader)
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's view: full collections stay short (p99)
        try:
            yield
        finally:
            if reloader is not None:
                reloader.stop()
            await ingestor.stop()
            if ingestor.async_connection is not None:
                await redisclient.aclose(ingestor.async_connection)
            redisclient.close(connection)

    receiver = WebhookReceiver(config, ingestor, metrics)
    console = Console(live, connection, snapshot_ttl=config.retention.payloads)
    guard = OperatorGuard(
        dashboard_app(redis_url), settings.admin_token, console.session_of, public_url=settings.public_url
    )

    def swapped(new: Config, changes: Changes) -> None:
        app.state.config = new
        receiver.swap(new)
        guard.public_url(new.gateway.public_url)

    live.on_swap(swapped)
    app = Gateway(
        receiver,
        routes=[
            Route(WEBHOOK_PREFIX + "{endpoint_id}", receiver, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route(LEGACY_CALLBACK_PATH, oauth_callback(live, connection), methods=["GET"]),
            Route(CALLBACK_PATH, oauth_callback(live, connection), methods=["GET"]),
            Route(START_PATH, oauth_start(live, connection), methods=["GET"]),
            Mount("/ops", app=guard),
            Mount("/console", app=console_app(console)),
            Mount(API_PREFIX, app=admin_api()),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.config = config
    app.state.live = live
    app.state.config_path = config_path
    app.state.reload_config = reload_config
    app.state.ingestor = ingestor
    app.state.journal = journal
    app.state.metrics = metrics
    return app


_JSON_TYPE = (b"content-type", b"application/json")


def _summary(accepted: list[Accepted]) -> tuple[bytes, int, int]:
    """The 2xx answer's JSON (as JSONResponse would render it), and the counts of queued and duplicate events."""
    jobs = [a.job_id for a in accepted if not a.duplicate]  # our own hex ids: nothing to escape
    queued, duplicates = len(jobs), len(accepted) - len(jobs)
    listed = ",".join(f'"{job}"' for job in jobs)
    body = f'{{"status":"accepted","queued":{queued},"duplicates":{duplicates},"jobs":[{listed}]}}'
    if accepted and accepted[0].journaled:  # a batch is journaled whole or not at all
        body = body[:-1] + ',"journaled":true}'
    return body.encode(), queued, duplicates


@dataclass(frozen=True, slots=True)
class _Target:
    """A configured endpoint and what its requests need, looked up once."""

    endpoint: Endpoint
    handler: Handler
    counters: EndpointCounters
    cap: int
    issued: bool = False
    """Whether the system issues the webhook secrets itself (`Connector.issued_secrets`): read from Redis."""


class WebhookReceiver:
    """POST /webhooks/{endpoint_id} in plain ASGI: the receiver's hot path, without a Request object.

    Steps and answers as in the module docstring; every answer is sent only when the steps before
    it are done, so a 2xx always follows the ingestor's storing of the events.
    """

    def __init__(self, config: Config, ingestor: Ingestor, metrics: Metrics) -> None:
        # The running config and its endpoints looked up so far (configured ones only: unknown ids are not
        # kept), swapped as one (`swap`): a request takes both once, and finishes with what it took.
        self._view: tuple[Config, dict[str, _Target]] = (config, {})
        self.ingestor = ingestor
        self.metrics = metrics
        self._issued: dict[str, tuple[float, tuple[str, ...]]] = {}  # endpoint → (read at, secrets)
        self._refreshed: dict[str, float] = {}  # endpoint → when a refused signature last made it read them

    @property
    def config(self) -> Config:
        return self._view[0]

    def swap(self, config: Config) -> None:
        """Serve `config` from the next request on (a live reload, gateway/live.py); its endpoints are
        looked up afresh, issued secrets read again."""
        self._view = (config, {})
        self._issued, self._refreshed = {}, {}

    def _target(self, endpoint_id: str) -> _Target:
        config, targets = self._view
        target = targets.get(endpoint_id)
        if target is None:
            endpoint = config.endpoint(endpoint_id)
            if endpoint is None:
                raise UnknownEndpoint(f"no webhook endpoint {endpoint_id!r} is configured")
            cap = endpoint.max_body_bytes or config.gateway.max_body_bytes
            counters = self.metrics.of(endpoint.id, endpoint.kind)
            issued = registry.get(endpoint.kind).issued_secrets
            target = targets[endpoint_id] = _Target(endpoint, handler_for(endpoint.kind), counters, cap, issued)
        return target

    async def _issued_secrets(self, endpoint_id: str, *, fresh: bool = False) -> tuple[str, ...] | None:
        """The secrets the system issued for the endpoint (connectors/issued.py), read again after
        `ISSUED_SECRETS_SECONDS`, or when `fresh` (a signature that none verified: perhaps a secret rotated
        a moment ago) — a fresh read at most once a second, so forged requests cost little; None when a
        fresh read is not due."""
        now = time.monotonic()
        held = self._issued.get(endpoint_id)
        if not fresh and held is not None and now - held[0] < ISSUED_SECRETS_SECONDS:
            return held[1]
        if fresh:
            if now - self._refreshed.get(endpoint_id, -FRESH_READ_SECONDS) < FRESH_READ_SECONDS:
                return None
            self._refreshed[endpoint_id] = now
        try:
            if self.ingestor.async_connection is not None:
                stored = await self.ingestor.async_connection.hgetall(issued.issued_key(endpoint_id))
            else:
                stored = await asyncio.to_thread(self.ingestor.connection.hgetall, issued.issued_key(endpoint_id))
        except (redis.RedisError, OSError) as exc:
            if held is not None:  # Redis is away: the copy held (asked again later), so the journal can take it
                if not fresh:
                    self._issued[endpoint_id] = (now, held[1])
                return None if fresh else held[1]
            raise RedisUnavailable(f"the endpoint's webhook secrets could not be read ({type(exc).__name__})") from None
        secrets = issued.live(stored, time.time())
        self._issued[endpoint_id] = (now, secrets)
        return secrets

    async def _verify(self, target: _Target, incoming: Incoming) -> Outcome:
        """The handler's outcome for an endpoint whose system issues its secrets: with those secrets."""
        secrets = await self._issued_secrets(target.endpoint.id)
        try:
            return target.handler(replace(incoming, secrets=secrets or ()), target.endpoint)
        except SignatureRejected:
            again = await self._issued_secrets(target.endpoint.id, fresh=True)
            if again is None or again == secrets:
                raise
            return target.handler(replace(incoming, secrets=again), target.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As the router's ASGI endpoint (a path the fast path in `Gateway` leaves to the router)."""
        await self.handle(scope["path_params"]["endpoint_id"], scope, receive, send)

    async def handle(self, endpoint_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        target: _Target | None = None
        try:
            target = self._target(endpoint_id)
            target.counters.received.inc()
            endpoint = target.endpoint
            headers = _headers(scope)
            body = await read_body(headers, receive, target.cap)
            incoming = Incoming(scope["method"], headers, _query(scope), body)
            outcome = await self._verify(target, incoming) if target.issued else target.handler(incoming, endpoint)
            received_at = datetime.now(UTC)
            drafts = [
                Draft.wrap(event, source=endpoint.kind, endpoint=endpoint.id, received_at=received_at)
                for event in outcome.events
            ]
            accepted = await self.ingestor.submit(drafts)
        except WebhookRejected as exc:
            label = target.endpoint.id if target else "unknown"
            self.metrics.rejected.labels(label, exc.reason).inc()
            log.info("rejected %s request to endpoint %s: %s", exc.reason, label, exc.message)
            return await _error(exc.status, exc.reason, exc.message)(scope, receive, send)
        except RedisUnavailable as exc:
            label = target.endpoint.id if target else "unknown"
            self.metrics.rejected.labels(label, "unavailable").inc()
            log.warning("endpoint %s: %s; answering 503", label, exc)
            message = "the event could not be stored right now; nothing was queued, retry later"
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return await _error(503, "unavailable", message, retry)(scope, receive, send)
        except ClientGone:
            return await Response(status_code=400)(scope, receive, send)
        content, queued, duplicates = _summary(accepted)
        if queued:
            target.counters.queued.inc(queued)
        if duplicates:
            target.counters.duplicates.inc(duplicates)
        if outcome.body is not None:
            response = PlainTextResponse(outcome.body, status_code=outcome.status, media_type=outcome.media_type)
            return await response(scope, receive, send)
        headers_out = [(b"content-length", str(len(content)).encode()), _JSON_TYPE]
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers_out})
        await send({"type": "http.response.body", "body": content})


class Gateway(Starlette):
    """The receiver's Starlette app, with POST /webhooks/{endpoint_id} served by `WebhookReceiver` in
    front of the router (no routing, middleware or Request per webhook); every other request, and
    any path the router would treat differently (a root path, a nested or empty id), goes to Starlette.
    Middleware added to this app does not see the webhooks the fast path serves."""

    def __init__(self, receiver: WebhookReceiver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(WEBHOOK_PREFIX):
                endpoint_id = path[len(WEBHOOK_PREFIX) :]
                if endpoint_id and "/" not in endpoint_id:
                    return await self.receiver.handle(endpoint_id, scope, receive, send)
        await super().__call__(scope, receive, send)
