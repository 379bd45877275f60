"""Exact Online → WooCommerce: order status written back and stock, against both sandboxes over real
HTTP (uvicorn), with real Redis; the flows called directly and through the real poller."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.sandbox import ExactSandbox
from connectors.woocommerce.client import Stock, WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from gateway.activity import ActivityLog
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, TransientError
from gateway.stack import LiveServer, serve
from handlers.base import Incoming
from handlers.exactonline import handle as handle_exact
from tests import pairs_support as pairs
from workers import runtime
from workers.jobs import process_event, run_event
from workers.ledger import Ledger

pytestmark = pytest.mark.integration

DIVISION = 1234567
WOO_KEY, WOO_SECRET = "ck_flows", "cs_flows"
ENV = pairs.ENV | {"WC_SECRET": "s", "WC_KEY": WOO_KEY, "WC_CONSUMER_SECRET": WOO_SECRET,
                  "EXACT_HOOK_SECRET": "hook-secret"}  # fmt: skip


def make_config(exact_url: str, woo_url: str, settings: dict[str, Any], tables: dict[str, Any]) -> Config:
    return parse_config(
        {
            "endpoints": [
                {"id": "webhooks", "kind": "woocommerce", "secret": "env:WC_SECRET"},
                {"id": "exact-hooks", "kind": "exactonline", "secret": "env:EXACT_HOOK_SECRET", "system": "exact"},
            ],
            "systems": [
                pairs.exact_system(exact_url),
                {
                    "id": "shop",
                    "kind": "woocommerce",
                    "base_url": woo_url,
                    "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_CONSUMER_SECRET"},
                },
            ],
            "integrations": [
                {"id": "shop-to-exact", "source": "webhooks", "target": "exact", "flows": ["orders"]},
                {
                    "id": "exact-to-shop",
                    "source": "exact",
                    "target": "shop",
                    "flows": ["orders", "stock"],
                    "settings": settings,
                    "tables": tables,
                },
            ],
        },
        environ=ENV,
    )


@dataclass
class Env:
    exact: LiveServer
    woo: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime
    shop: WooCommerceClient
    """A client of the test's own, to look at the shop (its calls are not the flow's)."""

    @property
    def integration(self) -> Any:
        return self.rt.config.integrations[1]

    def flow_client(self) -> WooCommerceClient:
        client = self.rt.target("shop").shop
        client.sleep = lambda seconds: None  # the client's in-place retries, without the waiting
        return client

    # -- orders --

    def place_order(self) -> str:
        """A paid order placed in the shop; its number (= its id in WooCommerce)."""
        body = {"count": 1, "status": "processing", "seed": 7}
        order_id = self.http.post(f"{self.woo.url}/sandbox/orders", json=body).raise_for_status().json()["orders"][0]
        return str(order_id)

    def shop_status(self, number: str) -> str:
        return str(self.shop.get_order(int(number))["status"])

    def order_status(self, your_ref: str | None, status: int, order_id: str | None = None) -> dict[str, Any]:
        """The flow on a polled SalesOrderHeaders record (what the Sync API returns)."""
        record = {"Timestamp": 1, "ID": order_id or str(uuid.uuid4()), "OrderNumber": 42, "YourRef": your_ref,
                  "Status": status, "Currency": "EUR"}  # fmt: skip
        record["OrderID"] = record["ID"]
        event = Event("SalesOrderHeaders.sync", "SalesOrderHeaders", record["ID"], f"k{uuid.uuid4()}", record)
        return run_event(
            self.rt, self.integration, Envelope.wrap(event, source="exactonline", endpoint="exact")
        ).as_dict()

    def exact_order(self, your_ref: str) -> str:
        """A sales order entered in Exact (as Koppel books them: YourRef = the shop's order number)."""
        item = self.control("seed/items", {"skus": ["KOP-1"]})["items"]["KOP-1"]
        account = self.control("seed", {"entity": "crm/Accounts", "records": [{"Name": "Jörg"}]})["ids"][0]
        order = {"OrderedBy": account, "YourRef": your_ref, "SalesOrderLines": [{"Item": item, "Quantity": 2}]}
        return str(self.control("seed", {"entity": "salesorder/SalesOrders", "records": [order]})["ids"][0])

    def control(self, action: str, body: dict) -> dict:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    # -- stock --

    def stock(self, sku: str, current: str, reserved: str = "0", warehouse: str = "1") -> dict[str, Any]:
        """The flow on a polled StockPositions record."""
        record = {"Timestamp": 1, "ID": str(uuid.uuid4()), "ItemId": str(uuid.uuid4()), "ItemCode": sku,
                  "CurrentStock": float(current), "ReservedStock": float(reserved), "PlanningOut": 0.0,
                  "WarehouseCode": warehouse}  # fmt: skip
        event = Event("StockPositions.sync", "StockPositions", record["ID"], f"k{uuid.uuid4()}", record)
        return run_event(
            self.rt, self.integration, Envelope.wrap(event, source="exactonline", endpoint="exact")
        ).as_dict()

    def shop_stock(self, sku: str) -> Stock:
        found = self.shop.stock_by_sku(sku)
        assert found is not None
        return found

    def webhook(self, order_id: str, action: str = "Update") -> dict[str, Any]:
        """Exact's thin webhook notification for a sales order, signed as Exact signs it, through the
        handler and the worker's `process_event` (the record is read through the REST API)."""
        content = json.dumps({"Topic": "SalesOrders", "Action": action, "Division": DIVISION, "Key": order_id,
                              "EventCreatedOn": f"2026-12-02T10:00:{uuid.uuid4().int % 60:02d}"})  # fmt: skip
        code = hmac.new(b"hook-secret", content.encode(), hashlib.sha256).hexdigest().upper()
        body = ('{"Content":' + content + ',"HashCode":"' + code + '"}').encode()
        endpoint = self.rt.config.endpoint("exact-hooks")
        assert endpoint is not None
        outcome = handle_exact(Incoming("POST", {}, {}, body), endpoint)
        [event] = outcome.events
        envelope = Envelope.wrap(event, source="exactonline", endpoint="exact-hooks")
        return process_event(envelope.model_dump(mode="json"))

    def process_polled(self, entity: str) -> list[dict[str, Any]]:
        """Poll Exact (the real poller job), then run every queued `process_event` job."""
        return pairs.run_polled(self.conn, self.rt, "exact", entity)


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    given = getattr(request, "param", {})
    with pairs.exact_served() as (exact, sandbox):
        woo = serve(woo_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET, seed_products=True), name="shop")
        try:
            with httpx.Client(timeout=10) as http:
                config = make_config(exact.url, woo.url, given.get("settings", {}), given.get("tables", {}))
                with pairs.installed(config, rconn, monkeypatch) as rt:  # what `koppel worker` installs
                    pairs.authorise_exact(http, exact, rconn)
                    shop = WooCommerceClient(http, base_url=woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
                    yield Env(exact, woo, sandbox, http, rconn, rt, shop)
        finally:
            woo.stop()


# -- order status ----------------------------------------------------------------------------------------


def test_a_completed_exact_order_completes_the_shop_order_once(env):
    number = env.place_order()
    first = env.order_status(number, 21)
    assert (first["outcome"], first["target_id"], first["calls"]) == ("updated", number, 2)  # GET + PUT
    assert env.shop_status(number) == "completed"
    again = env.order_status(number, 21)
    assert (again["outcome"], again["calls"]) == ("skipped", 1)
    assert again["reason"] == f"WooCommerce order {number} already completed"


def test_a_cancelled_exact_order_cancels_the_shop_order(env):
    number = env.place_order()
    assert env.order_status(number, 45)["outcome"] == "updated"
    assert env.shop_status(number) == "cancelled"


def test_open_and_partial_exact_orders_change_nothing_and_cost_no_call(env):
    number = env.place_order()
    for status in (12, 20):
        result = env.order_status(number, status)
        assert (result["outcome"], result["calls"]) == ("skipped", 0)
        assert "changes nothing" in result["reason"]
    assert env.shop_status(number) == "processing"


@pytest.mark.parametrize(
    "env",
    [{"tables": {"order_statuses": {"entries": {"partial": "on-hold", "21": "", "cancelled": "failed"}}}}],
    indirect=True,
)
def test_the_order_statuses_table_overrides_the_defaults(env):
    number = env.place_order()
    assert env.order_status(number, 20)["outcome"] == "updated"  # by Koppel's name
    assert env.shop_status(number) == "on-hold"
    assert env.order_status(number, 21)["outcome"] == "skipped"  # by Exact's code; empty = no change
    assert env.shop_status(number) == "on-hold"
    env.order_status(number, 45)
    assert env.shop_status(number) == "failed"


def test_an_exact_order_that_is_not_from_the_shop_is_skipped_not_failed(env):
    for ref, why in ((None, "no reference"), ("PO-2231", "WooCommerce has no order PO-2231"),
                     ("99999", "WooCommerce has no order 99999")):  # fmt: skip
        result = env.order_status(ref, 21)
        assert result["outcome"] == "skipped"
        assert result["reason"].startswith("not a WooCommerce order") and why in result["reason"]
    assert env.order_status("99999", 21)["calls"] == 0  # the shop's "no" is remembered


def test_an_exact_order_whose_ref_the_ledger_gives_to_another_order_is_not_written_back(env):
    number = env.place_order()
    booked = str(uuid.uuid4())
    Ledger(env.conn, "shop-to-exact", "orders").record(number, booked)
    copy = env.order_status(number, 21)  # e.g. a copy of the booked order, made by hand in Exact
    assert copy["outcome"] == "skipped" and booked in copy["reason"]
    assert env.shop_status(number) == "processing"
    assert env.order_status(number, 21, order_id=booked)["outcome"] == "updated"


def test_woocommerce_unavailable_is_transient_and_the_retry_writes_the_status(env):
    number = env.place_order()
    env.flow_client()
    env.http.post(f"{env.woo.url}/sandbox/fail", json={"status": 503, "times": 4}).raise_for_status()
    with pytest.raises(TransientError, match="503"):
        env.order_status(number, 21)
    assert env.shop_status(number) == "processing"
    assert env.order_status(number, 21)["outcome"] == "updated"


@pytest.mark.parametrize("env", [{"tables": {"order_statuses": {"entries": {"complete": "shipped"}}}}], indirect=True)
def test_a_status_woocommerce_refuses_fails_permanently_naming_the_order(env):
    number = env.place_order()
    with pytest.raises(PermanentError, match=rf"Exact Online order 42 → WooCommerce order {number} \(shipped\).*400"):
        env.order_status(number, 21)


def test_a_completed_order_polled_from_exact_completes_the_shop_order(env):
    number = env.place_order()
    order_id = env.exact_order(number)
    summaries = env.process_polled("SalesOrderHeaders")
    assert summaries[0]["integrations"]["exact-to-shop"]["outcome"] == "skipped"  # entered: status 12, open
    env.sandbox.store.update(DIVISION, "salesorder/SalesOrders", order_id, {"Status": 21})  # delivered in Exact
    summaries = env.process_polled("SalesOrderHeaders")
    assert [s["integrations"]["exact-to-shop"]["outcome"] for s in summaries] == ["updated"]
    assert env.shop_status(number) == "completed"
    assert env.process_polled("SalesOrderHeaders") == []  # nothing changed since: nothing to do
    logged = ActivityLog(env.conn).entries("exact-to-shop", since=0)
    assert [(e.outcome, e.target_id) for e in logged][-1] == ("updated", number)


# -- stock -----------------------------------------------------------------------------------------------


def test_stock_of_a_simple_product_is_set_to_what_is_available(env):
    result = env.stock("KOP-TASSE-BL", current="31", reserved="4")
    assert (result["outcome"], result["calls"]) == ("updated", 2)  # lookup by SKU + PUT
    stock = env.shop_stock("KOP-TASSE-BL")
    assert (stock.stock_quantity, stock.manage_stock, stock.variation_id) == (27, True, None)
    assert result["target_id"] == str(stock.product_id)


def test_stock_of_a_variation_is_set_on_the_variation(env):
    result = env.stock("KOP-TS-M", current="8")
    assert result["outcome"] == "updated"
    stock = env.shop_stock("KOP-TS-M")
    assert stock.variation_id is not None and stock.stock_quantity == 8
    assert result["target_id"] == f"{stock.product_id}/{stock.variation_id}"
    assert env.shop_stock("KOP-TS-L").stock_quantity == 15  # its sibling keeps its own


def test_a_sku_the_shop_lacks_is_skipped_naming_it(env):
    result = env.stock("EXACT-ONLY-9", current="5")
    assert result["outcome"] == "skipped"
    assert result["reason"] == "SKU EXACT-ONLY-9 does not exist in WooCommerce"
    assert env.stock("EXACT-ONLY-9", current="6")["calls"] == 0  # the miss is remembered


def test_an_unchanged_quantity_is_not_written(env):
    env.stock("KOP-ONDZ-4", current="50")
    client = env.flow_client()
    puts = sum(n for call, n in client.calls_by_endpoint.items() if call.startswith("PUT"))
    again = env.stock("KOP-ONDZ-4", current="52", reserved="2")
    assert (again["outcome"], again["calls"]) == ("skipped", 1)  # one GET by the cached id
    assert again["reason"] == "WooCommerce already has 50"
    assert sum(n for call, n in client.calls_by_endpoint.items() if call.startswith("PUT")) == puts


def test_a_cached_product_id_the_shop_no_longer_knows_is_looked_up_again(env):
    env.stock("KOP-DOEK-DB", current="10")
    old = env.shop_stock("KOP-DOEK-DB").product_id
    env.shop._object("DELETE", f"products/{old}", params={"force": True})
    new = env.shop.create_product({"name": "Theedoek", "sku": "KOP-DOEK-DB", "manage_stock": True,
                                   "stock_quantity": 1})["id"]  # fmt: skip
    result = env.stock("KOP-DOEK-DB", current="12")
    assert (result["outcome"], result["target_id"]) == ("updated", str(new))
    assert env.shop_stock("KOP-DOEK-DB").stock_quantity == 12


def test_a_product_deleted_from_the_shop_is_forgotten(env):
    env.stock("KOP-DOEK-DB", current="10")
    env.shop._object("DELETE", f"products/{env.shop_stock('KOP-DOEK-DB').product_id}", params={"force": True})
    gone = env.stock("KOP-DOEK-DB", current="9")
    assert (gone["outcome"], gone["calls"]) == ("skipped", 2)  # GET by the cached id (404) + lookup by SKU
    assert env.stock("KOP-DOEK-DB", current="8")["calls"] == 0  # neither the stale id nor the miss costs again


@pytest.mark.parametrize("env", [{"settings": {"stock_warehouse": "1"}}], indirect=True)
def test_positions_of_other_warehouses_are_skipped(env):
    result = env.stock("KOP-KOF-1KG", current="3", warehouse="2")
    assert result["outcome"] == "skipped" and "warehouse 2" in result["reason"]
    assert env.shop_stock("KOP-KOF-1KG").stock_quantity == 60


def test_stock_polled_from_exact_reaches_the_shop(env):
    env.control("seed/items", {"skus": ["KOP-BOEK-ST", "EXACT-ONLY-1"], "stock": 17})
    summaries = env.process_polled("StockPositions")
    outcomes = sorted(s["integrations"]["exact-to-shop"]["outcome"] for s in summaries)
    assert outcomes == ["skipped", "updated"]
    assert env.shop_stock("KOP-BOEK-ST").stock_quantity == 17


# -- Exact webhooks ------------------------------------------------------------------------------------


def test_an_exact_webhook_is_read_through_the_api_and_writes_the_status_back(env):
    number = env.place_order()
    order_id = env.exact_order(number)
    env.control("update", {"entity": "salesorder/SalesOrders", "id": order_id, "fields": {"Status": 21}})
    result = env.webhook(order_id)["integrations"]["exact-to-shop"]
    assert (result["outcome"], result["target_id"]) == ("updated", number)
    assert env.shop_status(number) == "completed"


def test_a_change_seen_by_the_webhook_and_the_poller_is_processed_once(env):
    number = env.place_order()
    order_id = env.exact_order(number)
    env.control("update", {"entity": "salesorder/SalesOrders", "id": order_id, "fields": {"Status": 21}})
    assert env.webhook(order_id)["integrations"]["exact-to-shop"]["outcome"] == "updated"
    polled = [r["integrations"]["exact-to-shop"] for r in env.process_polled("SalesOrderHeaders")]
    assert [(r["outcome"], r["reason"]) for r in polled] == [
        ("skipped", "this version of the record was processed already")
    ]
    again = env.webhook(order_id)["integrations"]["exact-to-shop"]  # a repeated notification, same version
    assert again["outcome"] == "skipped"
    outcomes = [e.outcome for e in ActivityLog(env.conn).entries("exact-to-shop")]
    assert outcomes == ["updated", "skipped", "skipped"]


def test_a_webhook_for_a_deleted_order_is_skipped_naming_it(env):
    order_id = str(uuid.uuid4())
    result = env.webhook(order_id, "Delete")["integrations"]["exact-to-shop"]
    assert (result["outcome"], result["reason"]) == ("skipped", f"Exact Online SalesOrders {order_id} was deleted")
    gone = env.webhook(str(uuid.uuid4()))["integrations"]["exact-to-shop"]  # deleted before it was read
    assert gone["outcome"] == "skipped" and "no longer exists" in gone["reason"]
