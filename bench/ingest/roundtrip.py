"""CPU per Redis round trip, the ways Koppel makes them, alternated in one process on a fresh redis-server.

    .venv/bin/python -m bench.ingest.roundtrip [--batch 1 3 30] [--calls 1000] [--rounds 10]

1. The gateway's batch script (gateway/ingest.py): `--batch` events of 3 KB each, stored through the client
   (`Script.__call__`: redis.asyncio's command path, as the ingestor did before #14's `ingest-lean`) and
   through `Ingestor._store_async(writer=True)` (the writer task's own connection, `_evalsha`), with the parser
   installed (hiredis, a dependency since #14; the figures were the same without it).
2. A worker's kind of round trips (sync client): an HGETALL of an 18-field hash (an RQ job), a pipeline of
   five commands, a GET and a SET, with redis-py's Python parser and packer and with hiredis's (skipped
   when hiredis is not installed).

What is timed is this process's CPU (`time.process_time`) per call, median of `--rounds` alternated rounds of
`--calls` calls each (so a busy machine shifts both sides alike). Loopback only; nothing is kept.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio
import uvloop
from redis._parsers import _HiredisParser, _RESP2Parser
from redis.connection import PythonRespSerializer
from redis.utils import HIREDIS_AVAILABLE

from gateway.ingest import Draft, Ingestor, new_job_id
from gateway.redisserver import free_port


def report(title: str, results: dict[str, list[float]]) -> None:
    print(title)
    for name, values in results.items():
        print(f"  {name:34s} {statistics.median(values):7.1f} µs (range {min(values):.1f} to {max(values):.1f})")


async def batches(url: str, batch: int, calls: int, rounds: int) -> dict[str, list[float]]:
    body = os.urandom(1500).hex().encode()  # 3 KB, as a WooCommerce order
    client = redis.asyncio.Redis.from_url(url)  # as the gateway makes it: hiredis's parser when installed
    ingestor = Ingestor(redis.Redis.from_url(url), async_connection=client, dedupe_ttl=60, linger=0)
    assert ingestor._ascript is not None
    script = ingestor._ascript
    await client.script_load(ingestor._lua)
    serial = iter(range(10**9))

    def drafts() -> list[Draft]:
        return [Draft("shop", f"bench:rt:{next(serial)}", body) for _ in range(batch)]

    async def through_client() -> None:
        made = drafts()
        keys, args = ingestor._script_call(made, [new_job_id() for _ in made], None)
        await script(keys=keys, args=args)

    async def held() -> None:
        made = drafts()
        await ingestor._store_async(made, [new_job_id() for _ in made], writer=True)

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "through the client (before)": through_client,
        "writer's own connection (after)": held,
    }
    results: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(rounds):
        order = list(ways.items()) if round_ % 2 else list(ways.items())[::-1]
        for name, call in order:
            started = time.process_time()
            for _ in range(calls):
                await call()
            results[name].append((time.process_time() - started) / calls * 1e6)
    await ingestor.stop()
    await client.aclose()
    ingestor.connection.close()
    return results


def worker_round_trips(url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    fast = redis.Redis.from_url(url, parser_class=_HiredisParser)
    slow = redis.Redis.from_url(url, parser_class=_RESP2Parser)
    connection = slow.connection_pool.get_connection()
    connection._command_packer = PythonRespSerializer(connection._buffer_cutoff, connection.encoder.encode)
    slow.connection_pool.release(connection)
    fields = {f"field{i}": os.urandom(20 + 10 * i).hex() for i in range(18)}
    fast.hset("bench:rt:job", mapping=fields)

    def unit(client: redis.Redis) -> None:
        client.hgetall("bench:rt:job")
        with client.pipeline() as pipe:
            pipe.hset("bench:rt:job2", mapping=fields)
            pipe.expire("bench:rt:job2", 100)
            pipe.zadd("bench:rt:registry", {"job": 1})
            pipe.lrem("bench:rt:queue", 0, "job")
            pipe.get("bench:rt:key")
            pipe.execute()
        client.get("bench:rt:missing")
        client.set("bench:rt:key", "v" * 100)

    ways = {"hiredis": fast, "Python parser and packer": slow}
    results: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(rounds):
        order = list(ways.items()) if round_ % 2 else list(ways.items())[::-1]
        for name, client in order:
            started = time.process_time()
            for _ in range(calls):
                unit(client)
            results[name].append((time.process_time() - started) / calls / 4 * 1e6)  # 4 round trips a unit
    fast.close()
    slow.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.roundtrip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 3, 30], help="events per batch script")
    parser.add_argument("--calls", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=10, help="alternated rounds")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="koppel-bench-roundtrip-") as workdir:
        port = free_port()
        server = subprocess.Popen(  # no persistence: the client's side is what is measured
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            for batch in args.batch:
                results = uvloop.run(batches(url, batch, args.calls, args.rounds))
                parser = "hiredis" if HIREDIS_AVAILABLE else "redis-py's Python parser"
                report(f"gateway batch script of {batch} event(s), CPU µs per batch ({parser}):", results)
            if HIREDIS_AVAILABLE:
                report(
                    "worker round trips (sync client), CPU µs per round trip:",
                    worker_round_trips(url, args.calls, args.rounds),
                )
            else:
                print("hiredis is not installed: the worker comparison is skipped")
        finally:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
