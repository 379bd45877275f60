"""bench/limits: what huge and slow requests cost the gateway, with uvicorn's stock httptools protocol (Koppel
before gateway/limits.py) and with Koppel's limited protocol (`koppel serve` now).

For each protocol, a fresh gateway (bench/ingest's `koppel_app`: the tests' sample config, an embedded Redis)
in its own uvicorn process per experiment, so its peak memory (VmHWM) is the experiment's:

* `huge x N`: N clients at once each send a request whose one header is `--header-mb` MB, until the server
  answers (or all of it was sent, then the end of the head); figures: the server's peak RSS growth, each
  client's answer, the bytes it had sent by then, and the seconds to the answer.
* `slow`: a slowloris client (a header line every second) and a slow-body client (10 bytes of a 200-byte
  body, then nothing); figures: the answer each got within `--slow-wait` seconds, or "still open".

    .venv/bin/python -m bench.limits.run [--header-mb 64] [--parallel 1 4] [--slow-wait 15]

Results: a table, and bench/results/limits-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest.apps import REDIS_URL_ENV
from bench.ingest.run import ROOT, own_group_dying_with_us, stop_group
from gateway.redisserver import EmbeddedRedis, free_port

RESULTS = ROOT / "bench" / "results"
PROTOCOLS = {"stock": "httptools", "koppel": "gateway.limits:LimitedHttpToolsProtocol"}


def start(protocol: str, redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.ingest.apps:koppel_app", "--host", "127.0.0.1",
               "--port", str(port), "--http", PROTOCOLS[protocol], "--ws", "none", "--lifespan", "on",
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, REDIS_URL_ENV: redis_url}, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=own_group_dying_with_us)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {protocol} server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def status_of(sock: socket.socket, wait: float) -> str:
    """The answer's status code, "closed" (EOF or reset without one) or "still open" after `wait` seconds."""
    sock.settimeout(wait)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return "still open"
    except OSError:
        return "closed"
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"


def huge(port: int, megabytes: int, out: dict[str, Any]) -> None:
    started = time.monotonic()
    total, sent = megabytes * 1024 * 1024, 0
    chunk = b"a" * 262_144
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: bench\r\nx-huge: ")
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
            if sent >= total:
                sock.sendall(b"\r\ncontent-length: 0\r\n\r\n")
        except OSError:
            pass
        out["status"] = status_of(sock, 120)
    out["sent_bytes"] = sent
    out["seconds"] = round(time.monotonic() - started, 2)


def slowloris(port: int, wait: float, out: dict[str, Any]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\n")
        status, line = "still open", 0
        while time.monotonic() - started < wait:
            if select.select([sock], [], [], 1.0)[0]:
                status = status_of(sock, 1)
                break
            try:
                sock.sendall(b"x-slow-%d: 1\r\n" % line)
            except OSError:
                status = "closed"
                break
            line += 1
    out.update(status=status, seconds=round(time.monotonic() - started, 1))


def slow_body(port: int, wait: float, out: dict[str, Any]) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nhost: bench\r\ncontent-length: 200\r\n\r\n" + b"{" * 10)
        out["status"] = status_of(sock, wait)
    out["seconds"] = round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/limits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-mb", type=int, default=64)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--slow-wait", type=float, default=35.0, help="seconds (default 35: above the 30 s body limit)")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = RESULTS / f"limits-{stamp}.log"
    redis = EmbeddedRedis(data_dir=Path(f"/tmp/koppel-bench-limits-{stamp}"), port=free_port())
    rows: list[dict[str, Any]] = []
    try:
        url = redis.start()
        for protocol in args.protocols:
            for n in args.parallel:
                outs: list[dict[str, Any]] = [{} for _ in range(n)]
                process, port = start(protocol, url, log)
                try:
                    time.sleep(1)
                    before = rss_kib(process.pid, "VmHWM")
                    threads = [threading.Thread(target=huge, args=(port, args.header_mb, out)) for out in outs]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    after = rss_kib(process.pid, "VmHWM")
                finally:
                    stop_group(process, f"{protocol} server")
                rows.append({"protocol": protocol, "experiment": f"{args.header_mb} MB header x {n}",
                             "peak_rss_before_mib": round(before / 1024, 1),
                             "peak_rss_growth_mib": round((after - before) / 1024, 1), "clients": outs})  # fmt: skip
            loris: dict[str, Any] = {}
            body: dict[str, Any] = {}
            process, port = start(protocol, url, log)
            try:
                clients = [threading.Thread(target=slowloris, args=(port, args.slow_wait, loris)),
                           threading.Thread(target=slow_body, args=(port, args.slow_wait, body))]  # fmt: skip
                for client in clients:
                    client.start()
                for client in clients:
                    client.join()
            finally:
                stop_group(process, f"{protocol} server")
            rows.append({"protocol": protocol, "experiment": "slowloris / slow body", "slowloris": loris,
                         "slow_body": body})  # fmt: skip
    finally:
        redis.stop()
    print(f"{'protocol':9}{'experiment':24}{'peak RSS +MiB':>14}  answers (status, MB sent, seconds)")
    for row in rows:
        if "clients" in row:
            answers = "; ".join(f"{c.get('status')}, {c.get('sent_bytes', 0) / 1048576:.2f}, {c.get('seconds')}"
                                for c in row["clients"])  # fmt: skip
            print(f"{row['protocol']:9}{row['experiment']:24}{row['peak_rss_growth_mib']:>14}  {answers}")
        else:
            print(f"{row['protocol']:9}{row['experiment']:24}{'':>14}  slowloris {row['slowloris']['status']} after "
                  f"{row['slowloris']['seconds']} s; slow body {row['slow_body']['status']} after "
                  f"{row['slow_body']['seconds']} s")  # fmt: skip
    path = RESULTS / f"limits-{stamp}.json"
    path.write_text(json.dumps({"timestamp": stamp, "header_mb": args.header_mb, "rows": rows}, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
