"""The gateway's webhook path in-process, without uvicorn or a load generator: CPU per request by batch size.

    .venv/bin/python -m bench.ingest.inproc [--requests 20000] [--concurrency 64 1] [--profile]

For each `--concurrency` C, C tasks send bench/ingest's signed WooCommerce deliveries one after another
straight into `WebhookReceiver.handle` (the ASGI scope, `receive` and `send` made here), on a fresh embedded
Redis; what is timed is the process's CPU over all requests (`time.process_time`), so the figure is the
gateway's own work per request: the handler, the envelope, the batch's Redis script and the answer. With
64 the ingestor stores batches of ~30; with 1 every request is a batch of its own. `--profile`: cProfile of
the first concurrency, the top functions by own time. Loopback only; nothing is written but the temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest.apps import bench_config
from bench.ingest.orders import deliveries
from gateway.app import create_app
from gateway.redisserver import EmbeddedRedis, free_port

PATH = "/webhooks/shop"


async def _one(receiver: Any, signature: str, body: bytes) -> None:
    scope = {
        "type": "http", "method": "POST", "path": PATH, "query_string": b"", "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), (b"x-wc-webhook-signature", signature.encode()),
            (b"x-wc-webhook-topic", b"order.created"), (b"x-wc-webhook-id", b"7"),
            (b"x-wc-webhook-delivery-id", b"5f0e2c1b8a7d6e5f4a3b2c1d0e9f8a7b"),
            (b"x-wc-webhook-source", b"https://shop.example/"),
            (b"user-agent", b"WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)"),
        ],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await receiver.handle("shop", scope, receive, send)
    if sent[0]["status"] != 202:
        raise RuntimeError(f"answered {sent[0]['status']}: {sent[-1].get('body')!r}")


async def measure(redis_url: str, requests: list[tuple[str, bytes]], concurrency: int, profile: bool) -> float:
    """CPU µs per request with `concurrency` senders, on a gateway app made for this run."""
    app = create_app(bench_config(), redis_url)
    ingestor = app.state.ingestor
    await ingestor.start()
    try:
        chunks = [requests[i::concurrency] for i in range(concurrency)]

        async def sender(chunk: list[tuple[str, bytes]]) -> None:
            for signature, body in chunk:
                await _one(app.receiver, signature, body)

        gc.collect()
        gc.freeze()  # as the gateway's lifespan does
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        if profiler is not None:
            profiler.enable()
        await asyncio.gather(*(sender(chunk) for chunk in chunks))
        if profiler is not None:
            profiler.disable()
        used = time.process_time() - started
        if profiler is not None:
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return used / len(requests) * 1e6
    finally:
        await ingestor.stop()
        await app.state.ingestor.async_connection.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="deliveries per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 1], help="senders at once")
    parser.add_argument("--profile", action="store_true", help="cProfile the first concurrency")
    args = parser.parse_args(argv)
    if args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--requests and --concurrency must be at least 1")
    import uvloop

    with tempfile.TemporaryDirectory(prefix="koppel-bench-inproc-") as workdir:
        embedded = EmbeddedRedis(data_dir=Path(workdir) / "redis", port=free_port())
        url = embedded.start()
        try:
            first = 60_000_000
            for n, concurrency in enumerate(args.concurrency):
                requests = list(deliveries(first, args.requests))  # distinct ids: none is a duplicate
                first += args.requests
                cpu = uvloop.run(measure(url, requests, concurrency, args.profile and n == 0))
                print(f"concurrency {concurrency:>3}: {cpu:7.1f} µs CPU per request ({args.requests} requests)")
        finally:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
