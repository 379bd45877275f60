"""The two ASGI apps bench/ingest serves with uvicorn, each in its own process (`--factory`).

    python -m uvicorn --factory bench.ingest.apps:noop_app   ...   the ceiling
    python -m uvicorn --factory bench.ingest.apps:koppel_app ...   Koppel's gateway

`koppel_app` reads its Redis from KOPPEL_BENCH_REDIS_URL (and `[gateway] wait_replicas` from
KOPPEL_BENCH_WAIT_REPLICAS) and uses the tests' sample config
(tests/samples.py: one endpoint of each kind, the tests' secrets), written to a file it follows as
`koppel serve` follows its own (gateway/live.py: the file watched twice a second, announcements heard).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tomlkit
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import Config
from tests.samples import SECRETS, make_config

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
    config = bench_config()
    data = {
        "gateway": config.gateway.model_dump(exclude_defaults=True),
        "endpoints": [{"id": e.id, "kind": e.kind, "secret": f"env:{name}"}
                      for e, name in zip(config.endpoints, ENDPOINT_SECRETS, strict=True)],
        "systems": [s.model_dump(exclude_defaults=True) for s in config.systems],  # no credentials in the sample
        "integrations": [i.model_dump(exclude_defaults=True) for i in config.integrations],
    }  # fmt: skip
    os.environ.update(SECRETS)
    path = Path(tempfile.mkdtemp(prefix="koppel-bench-")) / "koppel.toml"
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    app = create_app(config, os.environ[REDIS_URL_ENV], config_path=path)
    if LINGER_ENV in os.environ:  # an experiment: the ingestor's batch linger, in seconds
        app.state.ingestor.linger = float(os.environ[LINGER_ENV])
    return app


ENDPOINT_SECRETS = ("WC_SECRET", "SQ_SECRET", "BC_STATE", "EXACT_SECRET")
"""The secrets' variables of the sample config's endpoints, in its order (tests/samples.py)."""
