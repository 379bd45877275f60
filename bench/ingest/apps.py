"""The two ASGI apps bench/ingest serves with uvicorn, each in its own process (`--factory`).

    python -m uvicorn --factory bench.ingest.apps:noop_app   ...   the ceiling
    python -m uvicorn --factory bench.ingest.apps:koppel_app ...   Koppel's gateway

`koppel_app` reads its Redis from KOPPEL_BENCH_REDIS_URL and the WooCommerce secret from
WC_SECRET (as production reads secrets: `env:NAME` in the config), with the same endpoints
as tests/conftest.make_config.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import Config, parse_config

REDIS_URL_ENV = "KOPPEL_BENCH_REDIS_URL"


def noop_app() -> Starlette:
    """One POST route that reads the body (as any receiver must) and answers 202 with small JSON."""

    async def accept(request: Request) -> Response:
        await request.body()
        return JSONResponse({"status": "accepted", "queued": 1}, status_code=202)

    return Starlette(routes=[Route("/webhooks/{endpoint_id}", accept, methods=["POST"])])


def bench_config() -> Config:
    """The config of tests/conftest.make_config: one endpoint of each kind, secrets from the environment."""
    data = {
        "gateway": {"max_body_bytes": 64 * 1024},
        "endpoints": [
            {"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"},
            {"id": "sq", "kind": "squarespace", "secret": "env:SQ_SECRET"},
            {"id": "bc", "kind": "businesscentral", "secret": "env:BC_STATE"},
            {"id": "exact-hooks", "kind": "exactonline", "secret": "env:EXACT_SECRET"},
        ],
        "systems": [{"id": "exact", "kind": "exactonline"}],
        "integrations": [{"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"]}],
    }
    return parse_config(data, environ=dict(os.environ))


def koppel_app() -> Starlette:
    return create_app(bench_config(), os.environ[REDIS_URL_ENV])
