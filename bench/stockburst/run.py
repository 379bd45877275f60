"""bench/stockburst driver: what a burst of stock changes costs WooCommerce, one event at a time and batched.

    .venv/bin/python -m bench.stockburst [--products 250] [--variable 10] [--group 250]

1. A fresh embedded Redis and the WooCommerce sandbox over real HTTP (uvicorn), holding `--products` SKUs:
   simple products, and `--variable` variable products of five variations each among them (a variation is
   written through its parent's batch). The source is Exact Online's polled stock positions (the record is
   in the event: reading it costs no call), the target the shop.
2. Phases, each a new quantity for every SKU (a new version of every record):
   `one-by-one` — each event through `workers.jobs.run_event` (the seen check, then the stock flow: a lookup
   by SKU and a PUT); `batched` — the same number of events through `batch_function("stock", "woocommerce")`
   in groups of `--group` (the SKUs' ids are cached by then in both); `batched-unchanged` — the quantities
   the shop holds already (lookups only, nothing written).
3. Per phase: the shop's calls (the client's counter, checked against the sandbox's own), calls per product,
   the sum of the records' `calls` (the batch's calls spread over its records: they must add up), wall time.
   The ratio one-by-one ÷ batched. Writes bench/results/stockburst-<UTC timestamp>.json; exit status 1 when a
   record did not end as expected.

Not measured here: a burst taken off the inbox by the worker's pump as one group (another change brings the
grouping; this bench calls `batch_function` directly, as that grouping will).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import RESULTS, run_bench
from connectors.contract import FlowResult
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import LiveServer, serve
from workers import runtime
from workers.flows import Work, batch_function
from workers.jobs import run_event

KEY, SECRET = "ck_bench", "cs_bench"
ENV = {"WC_KEY": KEY, "WC_SECRET": SECRET, "EXACT_SECRET": "bench"}
VARIATIONS = 5


def say(message: str) -> None:
    print(f"bench/stockburst: {message}", file=sys.stderr, flush=True)


def config(shop_url: str) -> Config:
    return parse_config({
        "systems": [
            {"id": "exact", "kind": "exactonline", "base_url": "http://127.0.0.1:9",  # never called: polled records
             "credentials": {"client_secret": "env:EXACT_SECRET"},
             "settings": {"client_id": "bench", "redirect_uri": "https://koppel.example/oauth/exact/callback"}},
            {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_SECRET"}},
        ],
        "integrations": [{"id": "exact-to-shop", "source": "exact", "target": "shop", "flows": ["stock"]}],
    }, environ=ENV)  # fmt: skip


def seed(shop: WooCommerceClient, products: int, variable: int) -> list[str]:
    """The shop's SKUs: `variable` variable products of VARIATIONS variations, the rest simple products."""
    skus: list[str] = []
    for n in range(variable):
        parent = shop.create_product({"name": f"Variabel {n}", "type": "variable", "sku": f"VAR-{n:03d}"})
        made = [f"VAR-{n:03d}-{v}" for v in range(VARIATIONS)]
        fields = {"regular_price": "1.00", "manage_stock": True, "stock_quantity": 0}
        shop.batch(f"products/{parent['id']}/variations", create=[{"sku": sku, **fields} for sku in made])
        skus += made
    simple = [f"SIMPLE-{n:04d}" for n in range(products - len(skus))]
    for start in range(0, len(simple), 100):
        shop.batch("products", create=[{"name": sku, "sku": sku, "regular_price": "1.00", "manage_stock": True,
                                        "stock_quantity": 0} for sku in simple[start : start + 100]])  # fmt: skip
    return skus + simple


def envelope(sku: str, quantity: int, version: int) -> Envelope:
    record = {"Timestamp": version, "ID": f"pos-{sku}", "ItemId": f"item-{sku}", "ItemCode": sku,
              "CurrentStock": float(quantity), "ReservedStock": 0.0, "PlanningOut": 0.0, "WarehouseCode": "1",
              "Modified": f"2026-12-04T10:{version:02d}:00"}  # fmt: skip
    event = Event("StockPositions.sync", "StockPositions", record["ID"], f"k{uuid.uuid4()}", record)
    return Envelope.wrap(event, source="exactonline", endpoint="exact")


def phase(name: str, rt: runtime.Runtime, sandbox_calls: Any, quantities: dict[str, int], version: int,
          group: int | None, expected: str) -> dict[str, Any]:  # fmt: skip
    """One burst: every SKU's new quantity, one event at a time (`group` None) or batched in groups."""
    integration = rt.config.integrations[0]
    envelopes = [envelope(sku, quantity, version) for sku, quantity in quantities.items()]
    target = rt.target("shop")
    calls, served, started = target.calls, sandbox_calls(), time.perf_counter()
    outcomes: list[Any] = []
    if group is None:
        outcomes = [run_event(rt, integration, e) for e in envelopes]
    else:
        many = batch_function("stock", "woocommerce")
        assert many is not None
        for start in range(0, len(envelopes), group):
            works = [Work(integration, e, rt.source("exact"), target, rt) for e in envelopes[start : start + group]]
            outcomes += many(works)
    wall = time.perf_counter() - started
    calls, served = target.calls - calls, sandbox_calls() - served
    results = [o for o in outcomes if isinstance(o, FlowResult)]
    wrong = [o for o in outcomes if not isinstance(o, FlowResult) or o.outcome != expected]
    products = len(envelopes)
    out = {"phase": name, "products": products, "group": group, "calls": calls, "sandbox_calls": served,
           "calls_per_product": round(calls / products, 4), "records_calls_sum": sum(r.calls or 0 for r in results),
           "wall_s": round(wall, 3), "ms_per_product": round(1000 * wall / products, 3),
           "unexpected": [repr(o)[:200] for o in wrong[:5]], "unexpected_count": len(wrong)}  # fmt: skip
    say(f"{name}: {products} products, {calls} calls ({out['calls_per_product']} a product), {out['wall_s']} s"
        + (f", {len(wrong)} not {expected}" if wrong else ""))  # fmt: skip
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = EmbeddedRedis(data_dir=workdir / "redis", port=free_port())
    server.start()
    live: LiveServer | None = None
    try:
        live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop")
        conn = redis.Redis.from_url(server.url)
        rt = runtime.Runtime(config=config(live.url), connection=conn)
        try:
            with httpx.Client(timeout=30) as http:
                shop = WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET)
                skus = seed(shop, args.products, args.variable)

                def sandbox_calls() -> int:
                    return int(http.get(f"{live.url}/sandbox/counters").raise_for_status().json()["total"])

                phases = [
                    phase("one-by-one", rt, sandbox_calls, {s: 10 + n for n, s in enumerate(skus)}, 1, None, "updated"),
                    phase("batched", rt, sandbox_calls, {s: 20 + n for n, s in enumerate(skus)}, 2, args.group,
                          "updated"),
                    phase("batched-unchanged", rt, sandbox_calls, {s: 20 + n for n, s in enumerate(skus)}, 3,
                          args.group, "skipped"),
                ]  # fmt: skip
        finally:
            rt.close()
    finally:
        if live is not None:
            live.stop()
        server.stop()
    one, batched = phases[0], phases[1]
    ratio = round(one["calls"] / batched["calls"], 1) if batched["calls"] else None
    ok = all(p["unexpected_count"] == 0 and p["records_calls_sum"] == p["calls"] for p in phases)
    say(f"calls per product: one by one {one['calls_per_product']}, batched {batched['calls_per_product']} "
        f"({ratio} times fewer); target ≤ 0.05")  # fmt: skip
    return {"products": args.products, "variable": args.variable, "variations_each": VARIATIONS, "group": args.group,
            "phases": phases, "one_by_one_over_batched_calls": ratio, "ok": ok,
            "target_calls_per_product": 0.05,
            "measured_through": "batch_function directly (the pump's grouping of events is not on main)"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/stockburst/run.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=250, help="SKUs in the burst (default 250)")
    parser.add_argument("--variable", type=int, default=10,
                        help=f"variable products among them, {VARIATIONS} variations each (default 10)")
    parser.add_argument("--group", type=int, default=250, help="events a batch_function call takes (default 250)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write stockburst-<timestamp>.json")
    args = parser.parse_args(argv)
    if args.products < 1 or args.group < 1 or args.variable < 0 or args.variable * VARIATIONS > args.products:
        parser.error("--products and --group must be at least 1, and --variable * 5 at most --products")

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        result = run(args, workdir)
        return result, 0 if result["ok"] else 1

    return run_bench("stockburst", body, results=args.results, keep=args.keep, say=say)
