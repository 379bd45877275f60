"""The Starlette receiver: POST /webhooks/{endpoint_id}, /healthz, /readyz, /metrics, /ops/rq/ (admin).

The path of a webhook: find the endpoint (404) → read the raw body under the endpoint's cap (413)
→ the kind's handler verifies the signature on the raw bytes (401), answers handshakes, and splits
the body into events (400) → the ingestor stores them in Redis, deduplicated, in the inbox stream
(503 with Retry-After when Redis cannot take them) → only then 2xx. The workers' inbox pumps turn
the inbox entries into RQ jobs, under the job ids the 2xx answer named (gateway/inbox.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from gateway.config import Config
from gateway.errors import BodyTooLarge, MalformedRequest, RedisUnavailable, Rejected, UnknownEndpoint
from gateway.ingest import Accepted, Draft, Ingestor
from gateway.metrics import EndpointCounters, Metrics
from gateway.oauth import CALLBACK_PATH, exact_callback
from gateway.ops import AdminAuth, dashboard_app
from handlers import Incoming, handler_for

log = logging.getLogger("koppel.gateway")

RETRY_AFTER_SECONDS = 5


def redis_client(url: str) -> redis.Redis:
    """A client that fails fast (so the receiver can answer 503) and survives one dropped connection."""
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def async_redis_client(url: str) -> redis.asyncio.Redis:
    """The event loop's client (the ingestor's batches): fails fast, like `redis_client`."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
    )


async def read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise MalformedRequest("Content-Length header is not a number") from None
        if length > cap:
            raise BodyTooLarge(f"body of {length} bytes is over this endpoint's limit of {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(f"body is over this endpoint's limit of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _incoming(request: Request, body: bytes) -> Incoming:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        headers.setdefault(name, raw_value.decode("latin-1"))  # first occurrence wins
    query = {key: value for key, value in request.query_params.multi_items()[::-1]}  # first wins
    return Incoming(method=request.method, headers=headers, query=query, body=body)


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "message": message}, status_code=status, headers=headers)


def create_app(config: Config, redis_url: str) -> Starlette:
    """Build the receiver. Nothing happens at import time; Redis is connected in the lifespan."""
    connection = redis_client(redis_url)
    settings = config.gateway
    ingestor = Ingestor(
        connection,
        queue_name=settings.queue,
        dedupe_ttl=settings.dedupe_ttl_seconds,
        batch_max=settings.enqueue_batch_max,
        async_connection=async_redis_client(redis_url),
    )
    metrics = Metrics(
        lambda: {settings.queue: ingestor.queue_depth()}, lambda: {settings.queue: ingestor.inbox_depth()}
    )

    async def webhook(request: Request) -> Response:
        endpoint_id = request.path_params["endpoint_id"]
        endpoint = config.endpoint(endpoint_id)
        label = endpoint.id if endpoint else "unknown"
        try:
            if endpoint is None:
                raise UnknownEndpoint(f"no webhook endpoint {endpoint_id!r} is configured")
            counters = metrics.of(endpoint.id, endpoint.kind)
            counters.received.inc()
            body = await read_body(request, endpoint.max_body_bytes or settings.max_body_bytes)
            outcome = handler_for(endpoint.kind)(_incoming(request, body), endpoint)
            received_at = datetime.now(UTC)
            drafts = [
                Draft.wrap(event, source=endpoint.kind, endpoint=endpoint.id, received_at=received_at)
                for event in outcome.events
            ]
            accepted = await ingestor.submit(drafts)
        except Rejected as exc:
            metrics.rejected.labels(label, exc.reason).inc()
            log.info("rejected %s request to endpoint %s: %s", exc.reason, label, exc.message)
            return _error(exc.status, exc.reason, exc.message)
        except RedisUnavailable as exc:
            metrics.rejected.labels(label, "unavailable").inc()
            log.warning("endpoint %s: %s; answering 503", label, exc)
            return _error(
                503,
                "unavailable",
                "the event could not be stored right now; nothing was queued, retry later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except ClientDisconnect:
            return Response(status_code=400)
        return _answer(outcome.status, outcome.body, outcome.media_type, accepted, counters)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.to_thread(connection.ping)
        except (redis.RedisError, OSError) as exc:
            return JSONResponse(
                {"status": "unavailable", "redis": f"unreachable ({exc.__class__.__name__})"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ready", "redis": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ingestor.start()
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's view: full collections stay short (p99)
        try:
            yield
        finally:
            await ingestor.stop()
            if ingestor.async_connection is not None:
                await ingestor.async_connection.aclose()
            connection.close()

    app = Starlette(
        routes=[
            Route("/webhooks/{endpoint_id}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route(CALLBACK_PATH, exact_callback(config, connection), methods=["GET"]),
            Mount("/ops", app=AdminAuth(dashboard_app(redis_url), settings.admin_token)),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.config = config
    app.state.ingestor = ingestor
    app.state.metrics = metrics
    return app


def _answer(
    status: int,
    body: str | None,
    media_type: str,
    accepted: list[Accepted],
    counters: EndpointCounters,
) -> Response:
    queued = [a.job_id for a in accepted if not a.duplicate]
    duplicates = len(accepted) - len(queued)
    if queued:
        counters.queued.inc(len(queued))
    if duplicates:
        counters.duplicates.inc(duplicates)
    if body is not None:
        return PlainTextResponse(body, status_code=status, media_type=media_type)
    return JSONResponse(
        {"status": "accepted", "queued": len(queued), "duplicates": duplicates, "jobs": queued},
        status_code=status,
    )
