"""bench/stockburst driver: what a burst of stock changes costs WooCommerce, one event at a time and batched,
called directly and end to end through the poller, the inbox and a worker.

    .venv/bin/python -m bench.stockburst [--products 250] [--variable 10] [--group 250] [--through direct,workers]
                                         [--creations 250]

1. A fresh embedded Redis, the WooCommerce sandbox and the Exact Online sandbox over real HTTP (uvicorn). The shop
   holds `--products` SKUs: simple products, and `--variable` variable products of five variations each among
   them (a variation is written through its parent's batch). Exact holds an item for each SKU. The source is
   Exact's polled stock positions (the record is in the event: reading it costs no call), the target the shop.
2. `--through direct` (phases, each a new quantity for every SKU, a new version of every record):
   `one-by-one` — each event through `workers.jobs.run_event` (the seen check, then the stock flow: a lookup
   by SKU and a PUT); `batched` — the same number of events through `batch_function("stock", "woocommerce")`
   in groups of `--group` (the SKUs' ids are cached by then in both); `batched-unchanged` — the quantities
   the shop holds already (lookups only, nothing written).
3. `--through workers` (phase `workers`): a stock count in Exact of every SKU, then the real poller job
   (`workers.pollers.poll`: the Sync API read, the events stored in the inbox) and a real worker
   (`workers.worker.run_worker`, burst: its pump makes the batch jobs, RQ runs them); timed apart (poll,
   worker) and whole (records/s), with the Redis commands the worker sent per record. Exact's seeded
   positions are polled and worked once before any phase (the shop holds them already: lookups only), so the
   ids are cached as in the direct phases.
4. `--creations N` (direct, default 250; 0: none): a burst of N products new to the shop (polled Exact items, the
   record in the event), `create-one-by-one` through `run_event` and `create-batched` (N other new SKUs) through
   `batch_function("products", "woocommerce")` in groups of `--group`: each SKU must end in the shop once.
5. Per phase: the shop's calls (the sandbox's own counter; in the direct phases also the client's, checked
   against it), calls per product, the sum of the activity's or records' `calls` (the batch's calls spread
   over its records: they must add up), wall time. The ratio one-by-one ÷ batched. Writes
   bench/results/stockburst-<UTC timestamp>.json; exit status 1 when a record did not end as expected.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import RESULTS, run_bench
from connectors.contract import FlowResult
from connectors.exactonline.auth import OAuthApp
from connectors.exactonline.sandbox import ExactSandbox, connect_sandbox
from connectors.exactonline.sandbox import create_sandbox as exact_sandbox
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox
from gateway.activity import ActivityLog
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.ingest import make_queue
from gateway.redisserver import EmbeddedRedis, free_port
from gateway.stack import LiveServer, serve
from gateway.vault import KEY_VAR, new_key
from workers import runtime
from workers.flows import Work, batch_function
from workers.jobs import run_event
from workers.pollers import poll
from workers.worker import run_worker

KEY, SECRET = "ck_bench", "cs_bench"
EXACT_ID, EXACT_SECRET = "koppel-sandbox", "sandbox-secret"  # the Exact sandbox's app (its defaults)
REDIRECT = "https://koppel.example/oauth/exact/callback"
DIVISION = 1234567  # the Exact sandbox's division
ENV = {"WC_KEY": KEY, "WC_SECRET": SECRET, "EXACT_SECRET": EXACT_SECRET}
VARIATIONS = 5
MODES = ("direct", "workers")


def say(message: str) -> None:
    print(f"bench/stockburst: {message}", file=sys.stderr, flush=True)


def config(shop_url: str, exact_url: str) -> Config:
    return parse_config({
        "systems": [
            {"id": "exact", "kind": "exactonline", "base_url": exact_url,  # called by the poller only
             "credentials": {"client_secret": "env:EXACT_SECRET"},
             "settings": {"client_id": EXACT_ID, "redirect_uri": REDIRECT}},
            {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
             "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_SECRET"}},
        ],
        "integrations": [{"id": "exact-to-shop", "source": "exact", "target": "shop", "flows": ["stock"]},
                         {"id": "exact-items-to-shop", "source": "exact", "target": "shop", "flows": ["products"]}],
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


def item_envelope(sku: str, version: int) -> Envelope:
    """A polled Exact item (the record in the event): a product for the shop."""
    record = {"ID": f"id-{sku}", "Code": sku, "Description": f"Nieuw {sku}", "StandardSalesPrice": 12.5,
              "IsStockItem": True, "IsSalesItem": True, "Modified": f"2026-12-04T11:{version:02d}:00"}  # fmt: skip
    event = Event("Items.sync", "Items", record["ID"], f"k{uuid.uuid4()}", record)
    return Envelope.wrap(event, source="exactonline", endpoint="exact")


def phase(name: str, rt: runtime.Runtime, sandbox_calls: Any, quantities: dict[str, int], version: int,
          group: int | None, expected: str) -> dict[str, Any]:  # fmt: skip
    """One burst: every SKU's new quantity, one event at a time (`group` None) or batched in groups."""
    envelopes = [envelope(sku, quantity, version) for sku, quantity in quantities.items()]
    return burst(name, rt, "stock", sandbox_calls, envelopes, group, expected)


def creations(name: str, rt: runtime.Runtime, sandbox_calls: Any, skus: list[str], group: int | None,
              held: Any) -> dict[str, Any]:  # fmt: skip
    """A burst of products new to the shop, one event at a time (`group` None) or batched in groups; each SKU
    must end in the shop once."""
    out = burst(name, rt, "products", sandbox_calls, [item_envelope(sku, 1) for sku in skus], group, "created")
    counts = held(skus)
    missing = [sku for sku, count in counts.items() if count != 1]
    out["unexpected"] += [f"{sku}: in the shop {counts[sku]} times" for sku in missing[:5]]
    out["unexpected_count"] += len(missing)
    return out


def burst(name: str, rt: runtime.Runtime, flow: str, sandbox_calls: Any, envelopes: list[Envelope],
          group: int | None, expected: str) -> dict[str, Any]:  # fmt: skip
    """The events through `flow`, one at a time (`group` None) or batched in groups; the calls they cost."""
    integration = next(i for i in rt.config.integrations if flow in i.flows)
    target = rt.target("shop")
    calls, served, started = target.calls, sandbox_calls(), time.perf_counter()
    outcomes: list[Any] = []
    if group is None:
        outcomes = [run_event(rt, integration, e) for e in envelopes]
    else:
        many = batch_function(flow, "woocommerce")
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


def polled(cfg: Config, conn: redis.Redis) -> dict[str, Any]:
    """The poller job of Exact's stock positions, under a runtime of its own (the worker closes the one it ran)."""
    rt = runtime.Runtime(config=cfg, connection=conn)
    runtime.install(rt)
    try:
        return poll("exact", "StockPositions")
    finally:
        rt.close()


def through_workers(name: str, cfg: Config, redis_url: str, conn: redis.Redis, exact: ExactSandbox,
                    sandbox_calls: Any, quantities: dict[str, int], held: Any) -> dict[str, Any]:  # fmt: skip
    """A stock count in Exact of every SKU, polled and worked end to end (poller, inbox, pump, worker)."""
    for sku, quantity in quantities.items():
        exact.store.count_stock(DIVISION, sku, float(quantity))
    last = ActivityLog(conn).latest("exact-to-shop")
    served, started = sandbox_calls(), time.perf_counter()
    summary = polled(cfg, conn)
    polled_at = time.perf_counter()
    commands = int(conn.info("stats")["total_commands_processed"])
    run_worker(cfg, redis_url, burst=True)
    done = time.perf_counter()
    commands = int(conn.info("stats")["total_commands_processed"]) - commands - 1  # not the INFO itself
    served = sandbox_calls() - served
    lines = [line for line in ActivityLog(conn).entries("exact-to-shop")
             if last is None or (line.done_at, line.job_id) > (last.done_at, last.job_id)]  # fmt: skip
    queue = make_queue(conn, cfg.gateway.queue)
    wrong = [sku for sku, quantity in held(list(quantities)).items() if quantity != quantities[sku]]
    wrong += [f"{line.number}: {line.outcome}" for line in lines if line.outcome != "updated"]
    wrong += [f"{len(lines)} activity lines for {len(quantities)} records"] if len(lines) != len(quantities) else []
    wrong += [f"failed job {job_id}" for job_id in queue.failed_job_registry.get_job_ids()]
    products, wall = len(quantities), done - started
    out = {"phase": name, "products": products, "queued": summary.get("queued"), "calls": served,
           "sandbox_calls": served, "calls_per_product": round(served / products, 4),
           "records_calls_sum": sum(line.calls for line in lines), "poll_s": round(polled_at - started, 3),
           "worker_s": round(done - polled_at, 3), "wall_s": round(wall, 3),
           "ms_per_product": round(1000 * wall / products, 3), "records_per_s": round(products / wall, 1),
           "worker_redis_commands_per_record": round(commands / products, 1),
           "unexpected": wrong[:5], "unexpected_count": len(wrong)}  # fmt: skip
    say(f"{name}: {products} products, {served} calls ({out['calls_per_product']} a product), poll {out['poll_s']} s"
        f" + worker {out['worker_s']} s = {out['records_per_s']} records/s; the worker's Redis commands a record: "
        f"{out['worker_redis_commands_per_record']}"
        + (f", {len(wrong)} unexpected" if wrong else ""))  # fmt: skip
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    os.environ.setdefault(KEY_VAR, new_key())  # the Exact tokens are stored encrypted (gateway/vault.py)
    server = EmbeddedRedis(data_dir=workdir / "redis", port=free_port())
    server.start()
    live: LiveServer | None = None
    exact: LiveServer | None = None
    phases: list[dict[str, Any]] = []
    try:
        live = serve(create_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop")
        exact_app = exact_sandbox(redirect_uris=(REDIRECT,), rate_limits=False)
        exact = serve(exact_app, name="Exact Online sandbox")
        conn = redis.Redis.from_url(server.url)
        cfg = config(live.url, exact.url)
        rt = runtime.Runtime(config=cfg, connection=conn)
        try:
            with httpx.Client(timeout=30) as http:
                shop = WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET)
                skus = seed(shop, args.products, args.variable)

                def sandbox_calls() -> int:
                    return int(http.get(f"{live.url}/sandbox/counters").raise_for_status().json()["total"])

                def held(wanted: list[str]) -> dict[str, Any]:
                    found = shop.find_products_by_skus(wanted, chunk=100)
                    return {sku: found[sku]["stock_quantity"] if sku in found else None for sku in wanted}

                if "workers" in args.through:  # Exact's items, their positions polled and worked once
                    connect_sandbox(http, OAuthApp(exact.url, EXACT_ID, EXACT_SECRET, REDIRECT), conn, "exact")
                    exact_app.state.sandbox.store.seed_items(DIVISION, skus, stock=0.0)
                    polled(cfg, conn)
                    run_worker(cfg, server.url, burst=True)
                    runtime.install(rt)
                if "direct" in args.through:
                    phases += [
                        phase("one-by-one", rt, sandbox_calls, {s: 10 + n for n, s in enumerate(skus)}, 1, None,
                              "updated"),
                        phase("batched", rt, sandbox_calls, {s: 20 + n for n, s in enumerate(skus)}, 2, args.group,
                              "updated"),
                        phase("batched-unchanged", rt, sandbox_calls, {s: 20 + n for n, s in enumerate(skus)}, 3,
                              args.group, "skipped"),
                    ]  # fmt: skip
                if "direct" in args.through and args.creations:

                    def copies(wanted: list[str]) -> dict[str, int]:  # how many products hold each SKU
                        found = [r for start in range(0, len(wanted), 100)
                                 for r in shop.products(sku=",".join(wanted[start : start + 100]))]  # fmt: skip
                        return {sku: sum(str(r.get("sku")) == sku for r in found) for sku in wanted}

                    phases += [
                        creations("create-one-by-one", rt, sandbox_calls,
                                  [f"NEW-A-{n:04d}" for n in range(args.creations)], None, copies),
                        creations("create-batched", rt, sandbox_calls,
                                  [f"NEW-B-{n:04d}" for n in range(args.creations)], args.group, copies),
                    ]  # fmt: skip
                if "workers" in args.through:
                    counted = {s: 30 + n for n, s in enumerate(skus)}
                    phases.append(through_workers("workers", cfg, server.url, conn, exact_app.state.sandbox,
                                                  sandbox_calls, counted, held))  # fmt: skip
        finally:
            rt.close()
    finally:
        for server_live in (live, exact):
            if server_live is not None:
                server_live.stop()
        server.stop()
    by_name = {p["phase"]: p for p in phases}
    one, batched = by_name.get("one-by-one"), by_name.get("batched")
    ratio = round(one["calls"] / batched["calls"], 1) if one and batched and batched["calls"] else None
    ok = all(p["unexpected_count"] == 0 and p["records_calls_sum"] == p["calls"] for p in phases)
    if one and batched:
        say(f"calls per product: one by one {one['calls_per_product']}, batched {batched['calls_per_product']} "
            f"({ratio} times fewer); target ≤ 0.05")  # fmt: skip
    made_one, made_batched = by_name.get("create-one-by-one"), by_name.get("create-batched")
    made_ratio = (round(made_one["calls"] / made_batched["calls"], 1)
                  if made_one and made_batched and made_batched["calls"] else None)  # fmt: skip
    if made_one and made_batched:
        say(f"calls per created product: one by one {made_one['calls_per_product']}, batched "
            f"{made_batched['calls_per_product']} ({made_ratio} times fewer); target ≤ 0.05")  # fmt: skip
    return {"products": args.products, "variable": args.variable, "variations_each": VARIATIONS, "group": args.group,
            "through": list(args.through), "creations": args.creations, "phases": phases,
            "one_by_one_over_batched_calls": ratio, "created_one_by_one_over_batched_calls": made_ratio, "ok": ok,
            "target_calls_per_product": 0.05}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/stockburst/run.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=250, help="SKUs in the burst (default 250)")
    parser.add_argument("--variable", type=int, default=10,
                        help=f"variable products among them, {VARIATIONS} variations each (default 10)")
    parser.add_argument("--group", type=int, default=250, help="events a batch_function call takes (default 250)")
    parser.add_argument("--through", default="direct,workers",
                        help="direct (batch_function called), workers (poller, inbox, worker) or both, comma-separated "
                             "(default direct,workers)")  # fmt: skip
    parser.add_argument("--creations", type=int, default=250,
                        help="products new to the shop in each creation burst (direct only; 0: none; default 250)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (Redis data)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write stockburst-<timestamp>.json")
    args = parser.parse_args(argv)
    args.through = tuple(mode.strip() for mode in args.through.split(",") if mode.strip())
    if not args.through or any(mode not in MODES for mode in args.through):
        parser.error(f"--through takes {' or '.join(MODES)}, comma-separated")
    if args.products < 1 or args.group < 1 or args.variable < 0 or args.variable * VARIATIONS > args.products:
        parser.error("--products and --group must be at least 1, and --variable * 5 at most --products")
    if args.creations < 0:
        parser.error("--creations must be 0 or more")

    def body(workdir: Path) -> tuple[dict[str, Any], int]:
        result = run(args, workdir)
        return result, 0 if result["ok"] else 1

    return run_bench("stockburst", body, results=args.results, keep=args.keep, say=say)
