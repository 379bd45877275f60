"""A burst of stock changes end to end (issue #14): Exact Online's polled stock positions through the real
poller, the inbox, the pump's batch jobs and a real RQ worker (`run_worker`, burst) into the WooCommerce
sandbox over HTTP. The shop's own counters: at most a twentieth of a call a product, lookups included. The
same for a burst of Exact items, most of them new to the shop: created in batches, each once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from bench.stockburst.run import polled
from connectors.exactonline.sandbox import ExactSandbox
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from gateway.activity import ActivityLog
from gateway.config import Config, parse_config
from gateway.ingest import make_queue, merged_into, resolve_job_id
from gateway.replay import failed_job_ids, replay
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.pollers import poll
from workers.worker import run_worker

pytestmark = pytest.mark.integration

DIVISION = 1234567
KEY, SECRET = "ck_burst", "cs_burst"
ENV = pairs.ENV | {"WC_KEY": KEY, "WC_SECRET": SECRET}
PARENT_VARIATIONS = [f"BURST-V-{n}" for n in range(5)]
SKUS = PARENT_VARIATIONS + [f"BURST-{n:03d}" for n in range(295)]  # 300 products: 5 variations, 295 simple
REFUSED_SKU = "BURST-123"
REFUSING = {"stock": {"woocommerce": {"stock_quantity": {
    "_expr": f"sku = '{REFUSED_SKU}' ? 'lots' : $round(available, 0)", "_type": "any"}}}}  # fmt: skip
"""A stock mapping that sends a word for one SKU's quantity: the shop refuses that item of its batch (400)."""


def config(exact_url: str, shop_url: str, mappings: dict[str, Any] | None = None, flows: tuple[str, ...] = ("stock",)
           ) -> Config:  # fmt: skip
    return parse_config({
        "systems": [pairs.exact_system(exact_url),
                    {"id": "shop", "kind": "woocommerce", "base_url": shop_url,
                     "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_SECRET"}}],
        "integrations": [{"id": "exact-to-shop", "source": "exact", "target": "shop", "flows": list(flows),
                          "mappings": mappings or {}}],
    }, environ=ENV)  # fmt: skip


@dataclass
class Env:
    exact: LiveServer
    sandbox: ExactSandbox
    shop_live: LiveServer
    http: httpx.Client
    shop: WooCommerceClient
    conn: redis.Redis
    redis_url: str

    def config(self, mappings: dict[str, Any] | None = None, flows: tuple[str, ...] = ("stock",)) -> Config:
        return config(self.exact.url, self.shop_live.url, mappings, flows)

    def shop_calls(self) -> int:
        return int(self.http.get(f"{self.shop_live.url}/sandbox/counters").raise_for_status().json()["total"])

    def count_stock(self, quantities: dict[str, int]) -> None:
        """A stock count in Exact: each SKU's position holds its quantity now (a new version of each)."""
        for sku, quantity in quantities.items():
            self.sandbox.store.count_stock(DIVISION, sku, float(quantity))

    def shop_quantities(self) -> dict[str, Any]:
        found = self.shop.find_products_by_skus(SKUS, chunk=100)
        return {sku: found[sku]["stock_quantity"] for sku in SKUS if sku in found}

    def poll_and_work(self, config: Config) -> int:
        """The real poller job, then a real worker (burst: the pump drains the inbox, the queue is worked);
        the shop's calls meanwhile (its own counter)."""
        before = self.shop_calls()
        summary = polled(config, self.conn)
        assert "error" not in summary and summary.get("queued", 0) > 0, summary
        run_worker(config, self.redis_url, burst=True)
        return self.shop_calls() - before



@pytest.fixture
def env(rconn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with pairs.exact_served() as (exact, sandbox):
        shop_live = serve(woo_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop")
        try:
            with httpx.Client(timeout=30) as http:
                shop = WooCommerceClient(http, base_url=shop_live.url, consumer_key=KEY, consumer_secret=SECRET)
                parent = shop.create_product({"name": "Burst variabel", "type": "variable", "sku": "BURST-V"})
                fields = {"regular_price": "1.00", "manage_stock": True, "stock_quantity": 0}
                shop.batch(f"products/{parent['id']}/variations",
                           create=[{"sku": sku, **fields} for sku in PARENT_VARIATIONS])  # fmt: skip
                simple = SKUS[len(PARENT_VARIATIONS) :]
                for start in range(0, len(simple), 100):
                    made = [{"name": sku, "sku": sku, **fields} for sku in simple[start : start + 100]]
                    shop.batch("products", create=made)
                sandbox.store.seed_items(DIVISION, SKUS, stock=0.0)
                env = Env(exact, sandbox, shop_live, http, shop, rconn, redis_url)
                monkeypatch.setattr(runtime, "_runtime", None)  # restored afterwards
                pairs.authorise_exact(http, exact, rconn)
                polled(env.config(), rconn)  # the seeded positions (0, as the shop holds) read once
                run_worker(env.config(), redis_url, burst=True)
                yield env
        finally:
            shop_live.stop()


def test_a_burst_of_300_polled_stock_changes_costs_the_shop_at_most_a_twentieth_of_a_call_a_product(env):
    wanted = {sku: 10 + n for n, sku in enumerate(SKUS)}
    env.count_stock(wanted)
    since = ActivityLog(env.conn).latest("exact-to-shop")
    calls = env.poll_and_work(env.config())
    # three batch jobs of 100 records: a lookup and a products batch each, and the variations' parent batch
    assert calls == 3 + 3 + 1 and calls / len(SKUS) <= 0.05
    assert env.shop_quantities() == wanted
    lines = [line for line in ActivityLog(env.conn).entries("exact-to-shop")
             if since is None or line.done_at > since.done_at]  # fmt: skip
    assert sorted(line.number for line in lines) == sorted(SKUS)  # one line a record
    assert {line.outcome for line in lines} == {"updated"}
    assert sum(line.calls for line in lines) == calls  # the batches' calls, spread over their records
    queue = make_queue(env.conn, "koppel")
    assert queue.failed_job_registry.get_job_ids() == [] and len(queue) == 0


def test_an_item_the_shop_refuses_in_the_batch_fails_as_its_own_job_and_replays(env):
    wanted = {sku: 50 + n for n, sku in enumerate(SKUS)}
    env.count_stock(wanted)
    since = ActivityLog(env.conn).latest("exact-to-shop")
    refusing = env.config(REFUSING)
    calls = env.poll_and_work(refusing)
    # the batch jobs' 7 calls, then the refused record's own job: a GET by its cached id and the refused PUT
    assert calls == 7 + 2 and calls / len(SKUS) <= 0.05
    held = env.shop_quantities()
    assert {sku: q for sku, q in held.items() if sku != REFUSED_SKU} == {
        sku: q for sku, q in wanted.items() if sku != REFUSED_SKU}  # fmt: skip
    assert held[REFUSED_SKU] != wanted[REFUSED_SKU]
    lines = [line for line in ActivityLog(env.conn).entries("exact-to-shop")
             if since is None or line.done_at > since.done_at]  # fmt: skip
    # one line a record; the failed line carries the calls its own job made (they add up)
    assert len(lines) == len(SKUS) and sum(line.calls for line in lines) == calls
    [failed] = failed_job_ids(env.conn, refusing)
    [refused] = [line for line in lines if line.job_id == failed]
    assert refused.outcome == "failed" and "400" in refused.reason and "stock_quantity" in refused.reason
    assert refused.calls == 2
    assert {line.outcome for line in lines if line is not refused} == {"updated"}
    assert not failed.startswith("batch-")  # the record's own job, under its own event's id
    job = make_queue(env.conn, "koppel").fetch_job(failed)
    assert job is not None and job.args[0]["payload"]["ItemCode"] == REFUSED_SKU
    assert resolve_job_id(env.conn, failed) == failed and merged_into(env.conn, failed) is None
    fixed = env.config()  # the mapping fixed, then the failed job replayed by its id
    assert replay(env.conn, fixed, [failed]).requeued == [failed]
    run_worker(fixed, env.redis_url, burst=True)
    assert env.shop_quantities()[REFUSED_SKU] == wanted[REFUSED_SKU]
    assert failed_job_ids(env.conn, fixed) == []
    replayed = [line for line in ActivityLog(env.conn).entries("exact-to-shop") if line.job_id == failed]
    assert [(line.outcome, line.number) for line in replayed] == [("failed", ""), ("updated", REFUSED_SKU)]


NEW_SKUS = [f"NEW-{n:03d}" for n in range(250)]


def test_a_burst_of_polled_items_new_to_the_shop_is_created_in_batches_each_once(env):
    products = env.config(flows=("products",))
    env.sandbox.store.seed_items(DIVISION, NEW_SKUS, stock=0.0)
    since = ActivityLog(env.conn).latest("exact-to-shop")
    before = env.shop_calls()
    rt = runtime.Runtime(config=products, connection=env.conn)
    runtime.install(rt)
    try:
        summary = poll("exact", "Items")  # Exact's 550 items: the shop has 300 of them, 250 are new
    finally:
        rt.close()
    assert summary.get("queued") == len(SKUS) + len(NEW_SKUS), summary
    run_worker(products, env.redis_url, burst=True)
    calls = env.shop_calls() - before
    assert calls / (len(SKUS) + len(NEW_SKUS)) <= 0.05, calls
    held = env.shop.find_products_by_skus(NEW_SKUS, chunk=100)
    assert sorted(held) == NEW_SKUS and {held[sku]["name"] for sku in NEW_SKUS[:3]} == {
        f"Item {sku}" for sku in NEW_SKUS[:3]}  # fmt: skip
    assert len(list(env.shop.products())) == 1 + (len(SKUS) - len(PARENT_VARIATIONS)) + len(NEW_SKUS)  # each once
    lines = [line for line in ActivityLog(env.conn).entries("exact-to-shop")
             if since is None or line.done_at > since.done_at]  # fmt: skip
    outcomes = {line.number: line.outcome for line in lines}
    assert {outcomes[sku] for sku in NEW_SKUS} == {"created"} and {outcomes[sku] for sku in SKUS} == {"updated"}
    assert len(lines) == len(SKUS) + len(NEW_SKUS)
    assert sum(line.calls for line in lines) == calls  # the batches' calls, creations included, spread
    assert env.conn.hlen("koppel:inflight:exact-to-shop:products") == 0
    queue = make_queue(env.conn, "koppel")
    assert queue.failed_job_registry.get_job_ids() == [] and len(queue) == 0
