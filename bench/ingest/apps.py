"""The two ASGI apps bench/ingest serves with uvicorn, each in its own process (`--factory`).

    python -m uvicorn --factory bench.ingest.apps:noop_app   ...   the ceiling
    python -m uvicorn --factory bench.ingest.apps:koppel_app ...   Koppel's gateway

`koppel_app` reads its Redis from KOPPEL_BENCH_REDIS_URL (and `[gateway] wait_replicas` from
KOPPEL_BENCH_WAIT_REPLICAS) and uses the tests' sample config
(tests/samples.py: one endpoint of each kind, the tests' secrets).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import Config
from tests.samples import make_config

REDIS_URL_ENV = "KOPPEL_BENCH_REDIS_URL"
WAIT_REPLICAS_ENV = "KOPPEL_BENCH_WAIT_REPLICAS"
"""`[gateway] wait_replicas` for the Koppel app (bench/ingest/run.py --wait-replicas: its second Koppel run)."""
LINGER_ENV = "KOPPEL_BENCH_LINGER"
"""`Ingestor.linger` (seconds) for the Koppel app, to compare batching settings (gateway/ingest.py)."""


def noop_app() -> Starlette:
    """One POST route that reads the body (as any receiver must) and answers 202 with small JSON."""

    async def accept(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted", "queued": 1}, status_code=202)

    return Starlette(routes=[Route("/webhooks/{endpoint_id}", accept, methods=["POST"])])


def bench_config() -> Config:
    """The tests' sample config (tests/samples.py): one endpoint of each kind; `wait_replicas` from the env."""
    wait = int(os.environ.get(WAIT_REPLICAS_ENV, "0"))
    return make_config(wait_replicas=wait) if wait else make_config()


def koppel_app() -> Starlette:
    app = create_app(bench_config(), os.environ[REDIS_URL_ENV])
    if LINGER_ENV in os.environ:  # an experiment: the ingestor's batch linger, in seconds
        app.state.ingestor.linger = float(os.environ[LINGER_ENV])
    return app
