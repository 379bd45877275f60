"""The main job run as a benchmark: what the whole pair costs in Exact's API budget.

Per run: the main job's exit code, its wall time (for information: Exact's budget is counted in
minute windows, so the same calls take ~20 s or ~70 s depending on where the run falls), the Exact
sandbox's count of the calls it answered (total and by endpoint; the OAuth token call is not part of
the budget), calls per order placed, and each part's share of the calls: orders (the documents),
customers (crm/*), products (logistics/*), polls (sync/*, current/Me). Written to
`bench/results/pair-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from gateway.demo import MISSED, run_demo
from gateway.stack import Stack

PARTS = {"orders": ("salesorder/",), "customers": ("crm/",), "products": ("logistics/",),
         "polls": ("sync/", "current/")}  # fmt: skip


def _part(endpoint: str) -> str:
    path = endpoint.split(" ", 1)[-1]
    return next((part for part, prefixes in PARTS.items() if path.startswith(prefixes)), "other")


def _shares(by_endpoint: dict[str, int], calls: int) -> dict[str, float]:
    if not calls:
        return {}
    parts = [*PARTS, "other"]
    return {part: round(sum(v for k, v in by_endpoint.items() if _part(k) == part) / calls, 2) for part in parts}


def measure(orders: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def after(stack: Stack) -> None:
        found.update(stack.exact_calls())

    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="koppel-pair-") as data_dir:
        started = time.monotonic()
        code = run_demo(orders, Path(data_dir), Console(file=out, width=120, color_system=None), after=after)
        wall = time.monotonic() - started
    by_endpoint = {k: v for k, v in sorted(found.get("by_endpoint", {}).items()) if "oauth2" not in k}
    calls = sum(by_endpoint.values())
    placed = orders + MISSED
    return {
        "exit_code": code,
        "orders": placed,
        "wall_seconds": round(wall, 1),
        "exact_calls": calls,
        "exact_calls_per_order": round(calls / placed, 2),
        "order_posts": by_endpoint.get("POST salesorder/SalesOrders", 0),
        "share": _shares(by_endpoint, calls),
        "by_endpoint": by_endpoint,
        "output_tail": out.getvalue().strip().splitlines()[-1:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/pair/run.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=25, help="orders of the main job's batch (default 25)")
    parser.add_argument("--runs", type=int, default=1, help="runs, one after the other (default 1)")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    runs = [measure(args.orders) for _ in range(args.runs)]
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"pair-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"orders": args.orders, "runs": runs}, indent=2), encoding="utf-8")
    for number, run in enumerate(runs, start=1):
        print(f"run {number}: exit {run['exit_code']}, {run['wall_seconds']} s, {run['exact_calls']} Exact calls "
              f"({run['exact_calls_per_order']} per order, {run['order_posts']} order POSTs), "
              "shares " + ", ".join(f"{k} {v}" for k, v in run["share"].items() if v))
        print("  " + ", ".join(f"{k} {v}" for k, v in run["by_endpoint"].items()))
    print(f"written to {path}")
    return 0 if all(run["exit_code"] == 0 for run in runs) else 1
