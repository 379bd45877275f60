"""Latency at a fixed offered rate (wrk2-style, open loop) for bench/ingest's `--rate`.

Debian's wrk has no `-R`, so this is a small asyncio generator on raw sockets (HTTP/1.1 keep-alive,
pre-encoded requests, uvloop when installed): request i is *due* at start + i / rate, whatever happened
to the requests before it. A dispatcher hands each due request to a pool of `connections` persistent
connections; when none is free the request waits in line, and its latency is measured from the time it was
due, not from when it was sent — so a stall of the server shows as the latency every request due during the
stall really saw (coordinated omission corrected, as wrk2 does). `lag_ms` reports how late the generator
itself sent requests (its own limit): when its p99 is near the server's latency, read the figures as the
generator's, not the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.common import percentile


def schedule(rate: float, duration: float) -> list[float]:
    """Offsets (s from the start) at which each request is due: evenly spaced at `rate`/s over `duration` s."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    return [i / rate for i in range(int(rate * duration))]


@dataclass
class PacedResult:
    rate: float
    duration_s: float
    connections: int
    sent: int
    achieved_rps: float
    latency_ms: dict[str, float]
    """Due → response read: p50, p90, p99, p99.9, max."""
    lag_ms: dict[str, float]
    """Due → written on a connection (the generator's own lateness, queueing for a free connection included)."""
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of durations in s, in ms (3 decimals)."""
    points = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
    result = {name: round(1000 * percentile(values, q), 3) for name, q in points.items()}
    result["max"] = round(1000 * max(values, default=0.0), 3)
    return result


def encode(host: str, path: str, signature: str, body: bytes) -> bytes:
    """One WooCommerce delivery as bench/ingest/load.lua sends it, as raw HTTP/1.1 bytes."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "User-Agent: WooCommerce/9.4.2 Hookshot (WordPress/6.7)\r\nX-WC-Webhook-Source: https://shop.example/\r\n"
        "X-WC-Webhook-Topic: order.created\r\nX-WC-Webhook-Resource: order\r\nX-WC-Webhook-Event: created\r\n"
        "X-WC-Webhook-ID: 7\r\nX-WC-Webhook-Delivery-ID: 0f0e0d0c0b0a09080706050403020100\r\n"
        f"X-WC-Webhook-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _paced(host: str, port: int, requests: Sequence[bytes], rate: float, duration: float,
                 connections: int) -> PacedResult:  # fmt: skip
    due = schedule(rate, duration)
    line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    lags: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await line.get()) is not None:
                at, request = item
                lags.append(time.perf_counter() - at)
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head[9:12].decode()
                    length = 0
                    for header in head.split(b"\r\n"):
                        if header.lower().startswith(b"content-length:"):
                            length = int(header.split(b":", 1)[1])
                    await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - at)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    pool = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter()
    for i, offset in enumerate(due):
        at = start + offset
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        line.put_nowait((at, requests[i % len(requests)]))
    for _ in pool:
        line.put_nowait(None)
    await asyncio.gather(*pool)
    elapsed = time.perf_counter() - start
    return PacedResult(
        rate=rate, duration_s=duration, connections=connections, sent=len(due),
        achieved_rps=round(len(latencies) / elapsed, 1), latency_ms=spread(latencies), lag_ms=spread(lags),
        statuses=statuses, errors=errors,
    )  # fmt: skip


def run_paced(url: str, requests: Sequence[bytes], rate: float, duration: float, connections: int) -> PacedResult:
    """Offer `rate` requests/s for `duration` s to `url` (http://host:port) from `requests` (raw bytes, reused
    round-robin when fewer than needed) over `connections` keep-alive connections."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_paced(host, int(port), requests, rate, duration, connections))
    finally:
        loop.close()
