"""Batched writes into WooCommerce: the client's `POST …/batch` (respx: 100 a request, per-item errors on the
right record) and `batch_function` on many stock and product events at once against the WooCommerce sandbox
over real HTTP and real Redis (calls per product, one record's failure isolated, versions seen once; product
creations in one batch, exactly once when the worker dies before the answer, a taken SKU updated)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import respx

from connectors.contract import Context, FlowResult
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.connector import WooCommerceTarget
from connectors.woocommerce.errors import (
    SkuTaken,
    WooCommerceNotFound,
    WooCommerceRequestError,
    WooCommerceUnavailable,
)
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from gateway import keys
from gateway.activity import ActivityLog
from gateway.config import parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, Taken, TransientError
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.flows import Work, batch_function
from workers.jobs import process_event
from workers.ledger import EARLIER_ATTEMPT

BASE = "https://shop.example"
API = f"{BASE}/wp-json/wc/v3"
KEY, SECRET = "ck_batch", "cs_batch"
ENV = pairs.ENV | {"WC_KEY": KEY, "WC_CONSUMER_SECRET": SECRET}


def shop_system(url: str) -> dict[str, Any]:
    return {"id": "shop", "kind": "woocommerce", "base_url": url,
            "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_CONSUMER_SECRET"}}  # fmt: skip


# -- the client and the target, against respx ------------------------------------------------------------------


@pytest.fixture
def target(rconn: redis.Redis) -> Iterator[WooCommerceTarget]:
    config = parse_config({"systems": [shop_system(BASE)]}, environ=ENV)
    with httpx.Client() as http:
        yield WooCommerceTarget(config.systems[0], Context(http, rconn))


def answered(request: httpx.Request, refuse: dict[int, tuple[int, str]] | None = None) -> httpx.Response:
    """WooCommerce's answer to a batch of updates: each item back, or its error (id → (status, code))."""
    updates = json.loads(request.content)["update"]
    out = []
    for item in updates:
        if item["id"] in (refuse or {}):
            status, code = (refuse or {})[item["id"]]
            error = {"code": code, "message": f"<b>{code}</b>", "data": {"status": status}}
            out.append({"id": item["id"], "error": error})
        else:
            out.append({"id": item["id"], "sku": f"S{item['id']}", "stock_quantity": item.get("stock_quantity")})
    return httpx.Response(200, json={"update": out})


def test_updates_go_a_hundred_a_request_each_answer_on_its_own_update():
    refuse = {7: (404, "woocommerce_rest_product_invalid_id"), 150: (400, "rest_invalid_param")}
    with respx.mock(base_url=API, assert_all_called=True) as woo, httpx.Client() as http:
        route = woo.post("/products/batch").mock(side_effect=lambda request: answered(request, refuse))
        client = WooCommerceClient(http, base_url=BASE, consumer_key=KEY, consumer_secret=SECRET)
        results = client.update_many("products", [{"id": n, "stock_quantity": n} for n in range(250)])
    assert [len(json.loads(call.request.content)["update"]) for call in route.calls] == [100, 100, 50]
    assert client.calls == 3
    assert isinstance(results[7], WooCommerceNotFound) and isinstance(results[150], WooCommerceRequestError)
    assert not isinstance(results[150], WooCommerceNotFound)
    assert str(results[7]) == ("PUT products/{id} (in a batch): WooCommerce answered 404 "
                               "woocommerce_rest_product_invalid_id: woocommerce_rest_product_invalid_id")  # fmt: skip
    assert [r["stock_quantity"] for r in results if isinstance(r, dict)] == [n for n in range(250) if n not in refuse]


def test_the_target_sends_variations_to_their_parents_batch_and_maps_errors_to_their_records(target):
    with respx.mock(base_url=API, assert_all_called=True) as woo:
        products = woo.post("/products/batch").mock(side_effect=lambda r: answered(r, {2: (404, "x")}))
        variations = woo.post("/products/10/variations/batch").mock(side_effect=answered)
        gone = woo.post("/products/20/variations/batch").mock(return_value=httpx.Response(503))
        errors = target.update_products([("1", {"stock_quantity": 1}), ("10/11", {"stock_quantity": 2}),
                                         ("2", {"stock_quantity": 3}), ("20:21", {"stock_quantity": 4}),
                                         ("10/12", {"stock_quantity": 5})])  # fmt: skip
    assert [type(e).__name__ if e else None for e in errors] == [
        None, None, "WooCommerceNotFound", "WooCommerceUnavailable", None]  # fmt: skip
    assert isinstance(errors[3], WooCommerceUnavailable)  # a request that failed whole fails each of its updates
    assert json.loads(variations.calls[0].request.content) == {
        "update": [{"stock_quantity": 2, "id": 11}, {"stock_quantity": 5, "id": 12}]}  # fmt: skip
    assert products.call_count == 1 and gone.call_count >= 1


def made(request: httpx.Request, refuse: dict[str, tuple[int, str]]) -> httpx.Response:
    """WooCommerce's answer to a batch of creations: each product made, or `{"id": 0, "error"}` (sku → refusal)."""
    out: list[dict[str, Any]] = []
    for item in json.loads(request.content)["create"]:
        if item["sku"] in refuse:
            status, code = refuse[item["sku"]]
            data = {"status": status, "resource_id": 77, "unique_sku": f"{item['sku']}-1"}
            out.append({"id": 0, "error": {"code": code, "message": "Invalid or duplicated SKU.", "data": data}})
        else:
            out.append({"id": 5000 + int(item["sku"].split("-")[1]), "sku": item["sku"], "type": "simple"})
    return httpx.Response(200, json={"create": out})


def test_creations_go_a_hundred_a_request_each_answer_its_own_a_taken_sku_a_taken(target):
    refuse = {"NEW-7": (400, "product_invalid_sku"), "NEW-120": (400, "rest_invalid_param")}
    with respx.mock(base_url=API, assert_all_called=True) as woo:
        answer = lambda request: made(request, refuse)  # noqa: E731
        route = woo.post("/products/batch").mock(side_effect=[answer, answer, httpx.Response(503)])
        results = target.create_products([{"name": f"N{n}", "sku": f"NEW-{n}"} for n in range(250)])
    assert [len(json.loads(call.request.content)["create"]) for call in route.calls] == [100, 100, 50]
    assert results[0] == "5000" and results[199] == "5199"
    taken = results[7]
    assert isinstance(taken, SkuTaken) and isinstance(taken, Taken) and taken.code == "product_invalid_sku"
    assert str(taken).startswith("POST products (in a batch): WooCommerce answered 400 product_invalid_sku")
    assert isinstance(results[120], WooCommerceRequestError) and not isinstance(results[120], Taken)
    # the third request failed whole (a 5xx: the shop may have made them): each of its creations fails with it
    assert all(isinstance(r, WooCommerceUnavailable) for r in results[200:])


def test_a_duplicate_sku_from_a_single_create_is_a_taken_too(target):
    with respx.mock(base_url=API, assert_all_called=True) as woo:
        refusal = {"code": "product_invalid_sku", "message": "Invalid or duplicated SKU.", "data": {"status": 400}}
        woo.post("/products").mock(return_value=httpx.Response(400, json=refusal))
        with pytest.raises(SkuTaken):
            target.shop.create_product({"name": "N", "sku": "NEW-1"})


def test_many_skus_are_looked_up_a_hundred_a_request(target):
    skus = [f"SKU-{n}" for n in range(150)]
    with respx.mock(base_url=API, assert_all_called=True) as woo:
        def found(request: httpx.Request) -> httpx.Response:
            asked = request.url.params["sku"].split(",")
            assert request.url.params["per_page"] == "100"
            return httpx.Response(200, json=[{"id": 1000 + int(s.split("-")[1]), "sku": s.lower(), "type": "simple",
                                              "manage_stock": True, "stock_quantity": 3}
                                             for s in asked if s != "SKU-5"])
        route = woo.get("/products").mock(side_effect=found)
        stocks = target.find_stocks(skus)
    assert route.call_count == 2
    assert len(stocks) == 149 and "SKU-5" not in stocks
    assert (stocks["SKU-7"].target_id, stocks["SKU-7"].quantity) == ("1007", 3)


# -- batch_function against the sandbox --------------------------------------------------------------------------


@dataclass
class Shop:
    live: LiveServer
    http: httpx.Client
    rt: runtime.Runtime
    shop: WooCommerceClient
    conn: redis.Redis

    def works(self, flow: str, records: list[dict[str, Any]]) -> list[Work]:
        """Works for polled Exact records (the record in the event: read without a call)."""
        integration = self.rt.config.integrations[0]
        stream = {"stock": "StockPositions", "products": "Items"}[flow]
        out = []
        for record in records:
            event = Event(f"{stream}.sync", stream, record["ID"], f"k{uuid.uuid4()}", record)
            envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
            out.append(Work(integration, envelope, self.rt.source("exact"), self.rt.target("shop"), self.rt))
        return out

    def stock_works(self, quantities: dict[str, float]) -> list[Work]:
        return self.works("stock", [
            {"Timestamp": 1, "ID": f"pos-{sku}", "ItemId": f"item-{sku}", "ItemCode": sku, "CurrentStock": quantity,
             "ReservedStock": 0.0, "PlanningOut": 0.0, "WarehouseCode": "1",
             "Modified": f"2026-12-04T10:00:{n % 60:02d}"}
            for n, (sku, quantity) in enumerate(quantities.items())])  # fmt: skip

    def seed(self, skus: list[str]) -> None:
        for start in range(0, len(skus), 100):
            self.shop.batch("products", create=[{"name": s, "sku": s, "regular_price": "1.00", "manage_stock": True,
                                                 "stock_quantity": 1} for s in skus[start : start + 100]])  # fmt: skip

    def quantities(self, skus: list[str]) -> dict[str, Any]:
        found = self.shop.find_products_by_skus(skus, chunk=100)
        return {sku: found[sku]["stock_quantity"] for sku in skus if sku in found}


@pytest.fixture
def shop(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Shop]:
    mappings = getattr(request, "param", {})
    live = serve(woo_sandbox(consumer_key=KEY, consumer_secret=SECRET), name="shop")
    try:
        config = parse_config({
            "systems": [pairs.exact_system("http://127.0.0.1:9"), shop_system(live.url)],
            "integrations": [{"id": "exact-to-shop", "source": "exact", "target": "shop",
                              "flows": ["stock", "products"], "mappings": mappings}],
        }, environ=ENV)  # fmt: skip
        with httpx.Client(timeout=10) as http, pairs.installed(config, rconn, monkeypatch) as rt:
            yield Shop(live, http, rt, WooCommerceClient(http, base_url=live.url, consumer_key=KEY,
                                                         consumer_secret=SECRET), rconn)  # fmt: skip
    finally:
        live.stop()


BURST = [f"BURST-{n:03d}" for n in range(250)]


def test_a_burst_of_250_stock_changes_costs_at_most_a_twentieth_of_a_call_a_product(shop):
    shop.seed(BURST)
    works = shop.stock_works({sku: 10 + n for n, sku in enumerate(BURST)} | {"NOT-IN-SHOP": 4})
    flow_calls = shop.rt.target("shop").calls
    outcomes = batch_function("stock", "woocommerce")(works)  # type: ignore[misc]
    assert all(isinstance(o, FlowResult) for o in outcomes)
    results = [o for o in outcomes if isinstance(o, FlowResult)]
    assert [r.outcome for r in results] == ["updated"] * 250 + ["skipped"]
    assert results[-1].reason == "SKU NOT-IN-SHOP does not exist in WooCommerce"
    calls = shop.rt.target("shop").calls - flow_calls
    assert calls == 6  # 3 lookups (100 SKUs each) + 3 batches of 100 updates
    assert sum(r.calls or 0 for r in results) == calls  # the batch's calls, spread over its records
    assert calls / 250 <= 0.05 and {r.batched for r in results} == {251}
    assert shop.quantities(BURST) == {sku: 10 + n for n, sku in enumerate(BURST)}
    again = batch_function("stock", "woocommerce")(works)  # type: ignore[misc]
    assert {(r.outcome, r.calls, r.reason) for r in again if isinstance(r, FlowResult)} == {
        ("skipped", 0, "this version of the record was processed already")}  # fmt: skip


REFUSED = {"stock": {"woocommerce": {"stock_quantity": {"_expr": "sku = 'BURST-050' ? 'lots' : $round(available, 0)",
                                                       "_type": "any"}}}}  # fmt: skip
"""A mapping that sends a word for the quantity of BURST-050: WooCommerce refuses it (not an integer)."""


@pytest.mark.parametrize("shop", [REFUSED], indirect=True)
def test_a_record_the_shop_refuses_fails_alone_and_a_deleted_one_is_looked_up_again(shop):
    skus = BURST[:120]
    shop.seed(skus)
    quantities = {sku: float(n) for n, sku in enumerate(skus)}
    works = shop.stock_works(quantities)
    target = shop.rt.target("shop")
    gone = shop.shop.find_product_by_sku(skus[70])
    assert gone is not None
    write_stocks = target.write_stocks

    def deleted_meanwhile(writes: Any) -> Any:  # the product deleted in the shop between lookup and write
        shop.shop._object("DELETE", f"products/{gone['id']}", params={"force": True})
        return write_stocks(writes)

    target.write_stocks = deleted_meanwhile  # type: ignore[method-assign]
    outcomes = batch_function("stock", "woocommerce")(works)  # type: ignore[misc]
    failed = outcomes[50]
    assert isinstance(failed, PermanentError) and "stock_quantity" in str(failed) and "400" in str(failed)
    assert isinstance(outcomes[70], FlowResult) and outcomes[70].outcome == "skipped"
    assert outcomes[70].reason == f"SKU {skus[70]} does not exist in WooCommerce"
    others = [o for n, o in enumerate(outcomes) if n not in (50, 70)]
    assert [o for o in others if not (isinstance(o, FlowResult) and o.outcome in ("updated", "skipped"))] == []
    held = shop.quantities(skus)
    assert held[skus[50]] == 1 and skus[70] not in held
    assert all(held[sku] == n for n, sku in enumerate(skus) if n not in (1, 50, 70))  # n = 1: unchanged, skipped


def item(sku: str, name: str, minute: int) -> dict[str, Any]:
    """A polled Exact item (the record in the event)."""
    return {"ID": f"id-{sku}", "Code": sku, "Description": name, "StandardSalesPrice": 12.5, "IsStockItem": True,
            "IsSalesItem": True, "Modified": f"2026-12-04T11:{minute:02d}:00"}  # fmt: skip


def test_a_burst_of_product_updates_goes_in_batches_and_an_unchanged_one_costs_nothing(shop):
    skus = BURST[:130]
    shop.seed(skus)
    target = shop.rt.target("shop")
    many = batch_function("products", "woocommerce")
    assert many is not None
    before = target.calls
    results = many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in skus]))
    calls = target.calls - before
    assert [r.outcome for r in results if isinstance(r, FlowResult)] == ["updated"] * 130
    assert calls == 4  # the 130 SKUs' ids in 2 lookups (100 a request), their updates in 2 batches
    assert sum(r.calls or 0 for r in results if isinstance(r, FlowResult)) == calls
    names = {r["sku"]: r["name"] for r in shop.shop.products(sku=",".join(skus[:100]))}
    assert names == {sku: f"Nieuw {sku}" for sku in skus[:100]}
    before = target.calls
    again = many(shop.works("products", [item(sku, f"Nieuw {sku}", 2) for sku in skus]))  # a new version, same fields
    assert {(r.outcome, r.reason) for r in again if isinstance(r, FlowResult)} == {
        ("skipped", "unchanged since Koppel last sent it")}  # fmt: skip
    assert target.calls == before


def test_a_lookup_that_fails_fails_the_records_that_needed_it_and_only_those(shop):
    skus = BURST[:3]
    shop.seed(skus)
    many = batch_function("stock", "woocommerce")
    assert many is not None
    many(shop.stock_works({"NOT-IN-SHOP": 1}))  # the miss is remembered: no lookup for an hour
    shop.rt.target("shop").shop.sleep = lambda seconds: None  # the client's in-place retries, without the waiting
    shop.http.post(f"{shop.live.url}/sandbox/fail", json={"status": 503, "times": 20}).raise_for_status()
    works = shop.stock_works({"NOT-IN-SHOP": 2} | {sku: 5 for sku in skus})
    for work in works:
        work.envelope.payload["Modified"] = "2026-12-04T12:00:00"  # a new version of each
    outcomes = many(works)
    assert isinstance(outcomes[0], FlowResult) and (outcomes[0].outcome, outcomes[0].calls) == ("skipped", 0)
    assert all(isinstance(o, TransientError) and "503" in str(o) for o in outcomes[1:])


# -- product creations in batches --------------------------------------------------------------------------------

NEW = [f"NEW-{n:03d}" for n in range(100)]


def flying(shop: Shop) -> dict[bytes, bytes]:
    return shop.conn.hgetall(keys.in_flight("exact-to-shop", "products"))


def test_a_hundred_new_products_arriving_together_are_created_in_one_call(shop):
    many = batch_function("products", "woocommerce")
    assert many is not None
    target = shop.rt.target("shop")
    before = target.calls
    results = many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in NEW]))
    assert [r.outcome for r in results if isinstance(r, FlowResult)] == ["created"] * 100
    assert target.calls - before == 2  # one lookup of the 100 SKUs, one products/batch of 100 creations
    assert sum(r.calls or 0 for r in results if isinstance(r, FlowResult)) == 2  # spread: they add up
    assert {r.batched for r in results if isinstance(r, FlowResult)} == {100}
    held = shop.shop.find_products_by_skus(NEW, chunk=100)
    assert {sku: (record["name"], str(record["id"])) for sku, record in held.items()} == {
        sku: (f"Nieuw {sku}", r.target_id) for sku, r in zip(NEW, results, strict=True) if isinstance(r, FlowResult)}
    assert len(list(shop.shop.products())) == 100
    assert flying(shop) == {}  # noted with the item cache in one round trip
    assert shop.conn.hget("koppel:cache:shop:items", NEW[5]) == str(held[NEW[5]]["id"]).encode()
    before = target.calls  # the next save of the same products sends what the creation sent: nothing
    again = many(shop.works("products", [item(sku, f"Nieuw {sku}", 2) for sku in NEW]))
    assert {(r.outcome, r.reason) for r in again if isinstance(r, FlowResult)} == {
        ("skipped", "unchanged since Koppel last sent it")}  # fmt: skip
    assert target.calls == before


class Killed(BaseException):
    """The worker process dying: no Koppel error, nothing after it runs."""


@pytest.mark.parametrize("reached", [True, False], ids=["after-the-shop-made-them", "before-the-request"])
def test_a_worker_killed_between_the_in_flight_marks_and_the_batch_answer_creates_nothing_twice(
    shop, monkeypatch, reached
):
    skus = NEW[:30]
    target = shop.rt.target("shop")
    real = target.create_products

    def killed(payloads: Any) -> Any:
        monkeypatch.setattr(target, "create_products", real)
        if reached:
            real(payloads)  # the shop made them all; the answer never reaches Koppel
        raise Killed

    monkeypatch.setattr(target, "create_products", killed)
    many = batch_function("products", "woocommerce")
    assert many is not None
    with pytest.raises(Killed):
        many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in skus]))
    assert sorted(flying(shop)) == [sku.encode() for sku in skus]  # marked before the call, kept by the crash
    creations: list[int] = []

    def counted(payloads: Any) -> Any:
        creations.append(len(payloads))
        return real(payloads)

    monkeypatch.setattr(target, "create_products", counted)
    retry = many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in skus]))  # the job run again
    results = [r for r in retry if isinstance(r, FlowResult)]
    assert [r.outcome for r in results] == ["created"] * 30
    assert {r.reason for r in results} == ({EARLIER_ATTEMPT} if reached else {""})
    assert creations == ([] if reached else [30])  # found by SKU: updated, not made again
    held = shop.shop.find_products_by_skus(skus, chunk=100)
    assert len(list(shop.shop.products())) == 30 and len(held) == 30
    assert [r.target_id for r in results] == [str(held[sku]["id"]) for sku in skus]
    assert flying(shop) == {}


def test_a_sku_the_shop_got_since_the_lookup_is_updated_instead_of_created(shop, monkeypatch):
    skus = NEW[:10]
    target = shop.rt.target("shop")
    real = target.create_products

    def another_writer_first(payloads: Any) -> Any:  # someone made NEW-003 between Koppel's lookup and its batch
        shop.shop.create_product({"name": "Iemand anders", "sku": skus[3], "regular_price": "2.00"})
        return real(payloads)

    monkeypatch.setattr(target, "create_products", another_writer_first)
    many = batch_function("products", "woocommerce")
    assert many is not None
    before = target.calls
    results = many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in skus]))
    assert [r.outcome for r in results if isinstance(r, FlowResult)] == ["created"] * 3 + ["updated"] + ["created"] * 6
    # a lookup, the batch of creations, the taken SKU looked up, its update in a batch
    assert target.calls - before == 4 == sum(r.calls or 0 for r in results if isinstance(r, FlowResult))
    held = shop.shop.find_products_by_skus(skus, chunk=100)
    assert held[skus[3]]["name"] == f"Nieuw {skus[3]}" and results[3].target_id == str(held[skus[3]]["id"])
    assert len(list(shop.shop.products())) == 10
    assert flying(shop) == {}


REFUSED_CREATE = {"products": {"woocommerce": {"stock_quantity": {
    "_expr": "sku = 'NEW-005' ? 'lots' : 1", "_type": "any"}}}}  # fmt: skip
"""A products mapping that sends a word for NEW-005's quantity: the shop refuses that creation (400)."""


@pytest.mark.parametrize("shop", [REFUSED_CREATE], indirect=True)
def test_a_creation_the_shop_refuses_fails_only_its_product(shop):
    many = batch_function("products", "woocommerce")
    assert many is not None
    results = many(shop.works("products", [item(sku, f"Nieuw {sku}", 1) for sku in NEW[:10]]))
    refused = results[5]
    assert isinstance(refused, PermanentError) and "400" in str(refused) and "stock_quantity" in str(refused)
    assert [r.outcome for n, r in enumerate(results) if n != 5 and isinstance(r, FlowResult)] == ["created"] * 9
    assert sorted(shop.shop.find_products_by_skus(NEW[:10], chunk=100)) == sorted(set(NEW[:10]) - {"NEW-005"})
    assert flying(shop) == {}  # refused: nothing was made, no lookup is owed


@pytest.mark.parametrize("shop", [REFUSED_CREATE], indirect=True)
def test_a_failed_events_activity_line_carries_the_calls_its_run_made(shop):
    [work] = shop.works("products", [item("NEW-005", "Nieuw", 1)])  # alone, as a record a batch sent back runs
    with pytest.raises(PermanentError, match="stock_quantity"):
        process_event(work.envelope.model_dump(mode="json"))
    [line] = ActivityLog(shop.conn).entries("exact-to-shop")
    assert (line.outcome, line.calls) == ("failed", 3)  # the flow's lookup, the client's by SKU, the refused POST
