"""bench/limits/overhead: the CPU the request limits add per request, against uvicorn's stock httptools protocol.

The no-op Starlette route (bench/ingest's `noop_app`, where the protocol's share of a request is largest) is
served by uvicorn in its own process with each protocol in turn; a client process sends `--requests` requests
over `--connections` kept-alive connections (each request waits for its answer); the server's CPU time
(/proc/PID/stat, user + system) per request is compared. Rounds alternate the protocols, so neighbours' load
falls on both alike; CPU time, not wall time, so waiting on a busy machine does not count.

    .venv/bin/python -m bench.limits.overhead [--requests 20000] [--connections 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench.ingest.run import ROOT, own_group_dying_with_us, stop_group
from gateway.redisserver import free_port

PROTOCOLS = {"stock": "gateway.limits:HttpToolsProtocol", "koppel": "gateway.limits:LimitedHttpToolsProtocol"}
"""`stock` is uvicorn's own class, named through gateway.limits so that both servers import the same modules
(Koppel's config models and their dependencies: a larger heap makes each garbage collection dearer)."""
BODY = b'{"id": 1, "status": "processing"}'
REQUEST = (b"POST /webhooks/shop HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
           b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY))  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / TICKS


def client(port: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            sock.sendall(REQUEST)
            data = b""
            while not data.endswith(b"}"):  # the no-op route's JSON answer
                data += sock.recv(4096)


def round_of(protocol: str, requests: int, connections: int) -> float:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.ingest.apps:noop_app", "--port", str(port),
               "--http", PROTOCOLS[protocol], "--ws", "none", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, preexec_fn=own_group_dying_with_us)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        client(port, 500)  # warm-up
        before = cpu_seconds(server.pid)
        threads = [threading.Thread(target=client, args=(port, requests // connections)) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return (cpu_seconds(server.pid) - before) / (requests // connections * connections) * 1e6
    finally:
        stop_group(server, f"{protocol} server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/limits/overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for n in range(args.rounds):
        order = list(PROTOCOLS) if n % 2 == 0 else list(reversed(PROTOCOLS))
        for protocol in order:
            results[protocol].append(round_of(protocol, args.requests, args.connections))
        print(f"round {n + 1}: " + ", ".join(f"{p} {results[p][-1]:.1f} µs" for p in PROTOCOLS), flush=True)
    stock, koppel = (statistics.median(results[p]) for p in ("stock", "koppel"))
    print(f"server CPU per request, medians of {args.rounds} rounds: stock {stock:.1f} µs, koppel {koppel:.1f} µs, "
          f"ratio {koppel / stock:.3f} (+{koppel - stock:.1f} µs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
