"""bench/drain's floor: what booking an order physically needs, without Koppel's bookkeeping, as a child process.

    KOPPEL_BENCH_TOKEN=<bearer token> python -m bench.drain.floor <sales orders URL> <body JSON file> [--posts N]

One httpx client, reused, POSTs the same Exact sales-order body (one Koppel sent for a booked order) `--posts`
times to the Exact sandbox the stack's workers wrote to: the one call an order costs at Exact. Prints one JSON
line: posts, how many were answered 2xx, and the CPU and wall seconds of this process over the POSTs (imports,
reading the body and connecting left out, as for the no-op job and the Koppel workers). The token comes from
the environment, never the command line (ps shows that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx

TOKEN_VAR = "KOPPEL_BENCH_TOKEN"


def post_many(url: str, body: bytes, token: str, posts: int) -> dict[str, float | int]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    with httpx.Client(timeout=30) as client:
        client.post(url, content=body, headers=headers).raise_for_status()  # connected, warm: not counted
        ok = 0
        cpu, wall = time.process_time(), time.monotonic()
        for _ in range(posts):
            ok += client.post(url, content=body, headers=headers).is_success
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return {"posts": posts, "ok": ok, "cpu_s": cpu, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain.floor", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--posts", type=int, default=300)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_VAR)
    if not token:
        parser.error(f"set {TOKEN_VAR} to the Exact sandbox's access token")
    print(json.dumps(post_many(args.url, args.body.read_bytes(), token, args.posts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
