"""The Winstore connector against its sandbox over uvicorn: articles and stock polled by date (overlap,
cursor, per warehouse), XML and JSON answers, orders posted and refused, and the sandbox's own rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from connectors.contract import Context
from connectors.winstore.client import WinstoreClient
from connectors.winstore.connector import WinstoreSource, WinstoreTarget
from connectors.winstore.errors import WinstoreRequestError
from connectors.winstore.sandbox import create_sandbox
from connectors.winstore.sandbox.app import PREFIX
from connectors.winstore.wire import records
from gateway.config import System
from gateway.errors import NotFound, PermanentError
from gateway.model import Product, StockLevel
from gateway.stack import LiveServer, serve

pytestmark = pytest.mark.integration

USER, PASSWORD = "koppel", "sandbox-secret"


@dataclass
class Winstore:
    live: LiveServer
    http: httpx.Client
    conn: redis.Redis

    @property
    def api_root(self) -> str:
        return self.live.url + PREFIX

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(f"{self.live.url}/sandbox/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    def seed(self, *articles: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.control("articles", {"articles": list(articles)})["articles"])

    def system(self, **settings: Any) -> System:
        return System.model_validate(
            {"id": "ws", "kind": "winstore", "base_url": self.api_root,
             "credentials": {"username": "env:U", "password": "env:P"}, "settings": {"branch": 1, **settings}},
            context={"environ": {"U": USER, "P": PASSWORD}},
        )  # fmt: skip

    def context(self) -> Context:
        built: dict[str, Any] = {}

        def cached(key: str, build: Any) -> Any:
            if key not in built:
                built[key] = build()
            return built[key]

        return Context(http=self.http, redis=self.conn, cached=cached)

    def source(self, **settings: Any) -> WinstoreSource:
        return WinstoreSource(self.system(**settings), self.context())

    def target(self, **settings: Any) -> WinstoreTarget:
        return WinstoreTarget(self.system(**settings), self.context())

    def client(self) -> WinstoreClient:
        return WinstoreClient(self.http, base_url=self.api_root, username=USER, password=PASSWORD)


@pytest.fixture
def ws(rconn: redis.Redis) -> Iterator[Winstore]:
    live = serve(create_sandbox(username=USER, password=PASSWORD), name="winstore sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            yield Winstore(live, http, rconn)
    finally:
        live.stop()


def poll(source: WinstoreSource, stream: str, cursor: str | None) -> tuple[list[Any], str]:
    pages = list(source.changes(stream, cursor))
    return [change for changes, _ in pages for change in changes], pages[-1][1]


def later_cursor(ws: Winstore, source: WinstoreSource, stream: str, cursor: str | None) -> str:
    """Time passes beyond the overlap and something else changes: the cursor moves past what was read."""
    ws.control("clock", {"advance": 3600})
    ws.seed({"ArtNr": "MARKER", "Description": "elsewhere", "stock": {"1": 1, "2": 1}})
    return poll(source, stream, cursor)[1]


JEANS = {"ArtNr": "WS-JEANS", "Description": "Jeans", "SalesPrice": "89.95", "Gtin": "8712345678906",
         "VatPercentage": "21", "stock": {"1": 5, "2": 3}}  # fmt: skip
SHIRT = {"ArtNr": "WS-SHIRT", "Description": "Shirt", "SalesPrice": "29.95", "stock": {"1": 10}}


# -- articles -------------------------------------------------------------------------------------------------


def test_articles_are_polled_from_a_cursor_with_overlap_and_a_user_change_is_seen(ws):
    ws.seed(JEANS, SHIRT)
    source = ws.source()
    first, cursor = poll(source, "articles", None)
    assert sorted(c.record["ArtNr"] for c in first) == ["WS-JEANS", "WS-SHIRT"]
    again, same = poll(source, "articles", cursor)
    assert {c.delivery_key for c in again} == {c.delivery_key for c in first} and same == cursor  # the overlap
    ws.control("clock", {"advance": 3600})
    ws.seed({"ArtNr": "WS-JEANS", "SalesPrice": "79.95"})  # a user lowers the price in Winstore
    read, later = poll(source, "articles", cursor)
    seen = {c.delivery_key for c in first}
    changed = [c for c in read if c.delivery_key not in seen]  # the shirt is read again by the overlap: known
    assert [c.record["ArtNr"] for c in changed] == ["WS-JEANS"] and later > cursor
    product = source.normalise("products", changed[0].record)
    assert isinstance(product, Product) and product.sku == "WS-JEANS" and str(product.price_incl) == "79.95"
    assert product.type == "simple" and product.ean == "8712345678906" and str(product.tax_rate) == "21"
    assert source.version("products", changed[0].record) != source.version("products", first[0].record)


def test_the_sandbox_answers_xml_when_asked_and_both_read_the_same(ws):
    ws.seed(JEANS)
    api = ws.client()
    as_json = api.get_records("GetArticleDataChangesByDate", {"date": "2000-01-01T00:00:00+00:00"})
    raw = ws.http.get(f"{ws.api_root}/GetArticleDataChangesByDate", params={"date": "2000-01-01T00:00:00+00:00"},
                      headers={"Accept": "application/xml"}, auth=(USER, PASSWORD))  # fmt: skip
    assert raw.headers["content-type"].startswith("application/xml") and raw.text.startswith("<ArrayOfArticle")
    as_xml = records(api.decode(raw, "GET GetArticleDataChangesByDate"))
    source = ws.source()
    assert source.normalise("products", as_json[0]) == source.normalise("products", as_xml[0])


def test_a_query_joined_with_question_marks_is_refused_by_the_sandbox(ws):
    url = f"{ws.api_root}/GetChangedStockWithWarehouse?date=2026-01-01T00:00:00%2B00:00?outOfStock=1"
    response = ws.http.get(url, auth=(USER, PASSWORD))
    assert response.status_code == 400 and "not a valid date" in response.json()["Message"]


def test_a_broken_cursor_is_a_permanent_error_naming_the_fix(ws):
    with pytest.raises(PermanentError, match="delete it to restart"):
        poll(ws.source(), "articles", "yesterday")


# -- stock ----------------------------------------------------------------------------------------------------


def test_stock_is_summed_over_the_chosen_warehouses_and_a_sale_reads_the_others(ws):
    ws.seed(JEANS, SHIRT)
    source = ws.source(warehouses=[1, 2])
    first, cursor = poll(source, "stock", None)
    levels = {c.record["ArtNr"]: source.normalise("stock", c.record) for c in first}
    assert {sku: str(level.available) for sku, level in levels.items()} == {"WS-JEANS": "8", "WS-SHIRT": "10"}
    assert isinstance(levels["WS-JEANS"], StockLevel) and levels["WS-JEANS"].location == "1,2"
    cursor = later_cursor(ws, source, "stock", cursor)
    ws.control("clock", {"advance": 600})
    ws.control("stock", {"ArtNr": "WS-JEANS", "warehouse": 1, "quantity": 0})  # sold out in the shop
    calls = ws.http.get(f"{ws.live.url}/sandbox/counters").json()["by_endpoint"]
    read, _ = poll(source, "stock", cursor)
    changed = [c for c in read if c.record["ArtNr"] != "MARKER"]  # the marker is read again by the overlap
    assert [(c.record["ArtNr"], c.record["Stock"]) for c in changed] == [("WS-JEANS", "3")]  # 0 + 3
    after = ws.http.get(f"{ws.live.url}/sandbox/counters").json()["by_endpoint"]
    assert after.get("GET GetStock", 0) == calls.get("GET GetStock", 0) + 1  # warehouse 2 read, unchanged


def test_a_warehouse_not_chosen_changes_nothing_and_without_a_choice_the_total_travels(ws):
    ws.seed(JEANS)
    first, cursor = poll(ws.source(warehouses=[1]), "stock", None)
    ws.control("clock", {"advance": 600})
    ws.control("stock", {"ArtNr": "WS-JEANS", "warehouse": 2, "quantity": 1})
    again, _ = poll(ws.source(warehouses=[1]), "stock", cursor)
    assert {c.delivery_key for c in again} <= {c.delivery_key for c in first}  # nothing new for warehouse 1
    totals, _ = poll(ws.source(), "stock", cursor)
    assert [(c.record["ArtNr"], c.record["Stock"]) for c in totals] == [("WS-JEANS", "6")]  # 5 + 1


# -- orders ---------------------------------------------------------------------------------------------------


def order_payload(number: str, product_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "ordernr": number, "orderdate": "2026-12-01 10:00:00", "customerid": 999999, "email": "ann@example.com",
        "branch": 1, "channel": "webshop", "total": "179.90", "currency": "EUR",
        "invoice_add": {"fname": "Ann", "lname": "Smit", "street": "Kerkstraat", "streetnr": "1", "zip": "1234 AB",
                        "city": "Eindhoven", "country": "Nederland", "countryISO": "NL"},
        "positions": [{"product_id": product_id, "amount": 2, "single_price": "89.95", "type": "S", "branch": 1}],
    } | extra  # fmt: skip


def test_an_order_is_booked_once_takes_stock_and_is_found_again(ws):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    target = ws.target()
    assert target.find_items(["ws-jeans", "8712345678906", "NOPE"]) == {"ws-jeans": key, "8712345678906": key}
    booked = target.create_order("order", order_payload("W-1001", key))
    assert target.find_order("order", "W-1001") == booked
    assert target.create_order("order", order_payload("W-1001", key)) == booked  # Winstore refuses the repeat
    orders = ws.http.get(f"{ws.live.url}/sandbox/orders").json()["orders"]
    assert [o["ordernr"] for o in orders] == ["W-1001"] and orders[0]["invoice_add"]["city"] == "Eindhoven"
    stock = ws.client().stock_by_key(key)
    assert {r["Warehouse"]: r["Stock"] for r in stock} == {1: "3", 2: "3"}  # two sold from branch 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positions": [{"product_id": "424242", "amount": 1, "single_price": "1.00"}]}, "unknown product 424242"),
        ({"orderdate": "01-12-2026 10:00"}, "is not Y-m-d H:i:s"),
        ({"branch": 7}, "Unknown branch 7"),
        ({"remark": "x"}, "unknown element remark"),
        ({"positions": []}, "no positions"),
        ({"email": "not-an-address"}, "not an e-mail address"),
    ],
)
def test_the_sandbox_refuses_an_order_document_naming_what_is_wrong(ws, change, message):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    with pytest.raises(WinstoreRequestError, match=message) as caught:
        ws.target().create_order("order", order_payload("W-2001", key) | change)
    assert caught.value.status == 400 and "Ann" not in str(caught.value)


def test_booking_without_a_branch_names_the_setting(ws):
    system = System.model_validate(
        {"id": "ws", "kind": "winstore", "base_url": ws.api_root,
         "credentials": {"username": "env:U", "password": "env:P"}},
        context={"environ": {"U": USER, "P": PASSWORD}},
    )  # fmt: skip
    with pytest.raises(PermanentError, match=r"systems.ws.settings.branch: required"):
        WinstoreTarget(system, ws.context()).references("order")


def test_faults_of_the_kit_reach_the_client(ws):
    ws.control("fail", {"status": 503, "times": 1})
    source = ws.source()
    assert poll(source, "articles", None)[0] == []  # retried in place


# -- the pollers ----------------------------------------------------------------------------------------------


def test_a_winstore_system_is_polled_into_events_once_per_change(ws, monkeypatch):
    from rq import Queue
    from rq.serializers import JSONSerializer

    from gateway.config import parse_config
    from gateway.ingest import JOB_FUNC
    from workers import runtime
    from workers.inbox import pump_for
    from workers.pollers import poll

    config = parse_config(
        {"systems": [
            {"id": "ws", "kind": "winstore", "base_url": ws.api_root,
             "credentials": {"username": "env:U", "password": "env:P"}, "settings": {"warehouses": [1]}},
            {"id": "shop", "kind": "woocommerce", "base_url": "http://127.0.0.1:9",
             "credentials": {"consumer_key": "env:K", "consumer_secret": "env:S"}},
        ], "integrations": [{"id": "ws-to-shop", "source": "ws", "target": "shop", "flows": ["products", "stock"]}]},
        environ={"U": USER, "P": PASSWORD, "K": "ck", "S": "cs"},
    )  # fmt: skip
    rt = runtime.Runtime(config=config, connection=ws.conn)
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        ws.seed(JEANS, SHIRT)
        first = poll("ws", "articles")
        assert (first["records"], first["queued"]) == (2, 2)
        again = poll("ws", "articles")  # the overlap reads both again: known deliveries
        assert (again["records"], again["queued"], again["duplicates"]) == (2, 0, 2)
        stock = poll("ws", "stock")
        assert stock["queued"] == 2
        pump_for(ws.conn, config.gateway).drain(timeout=10)
        queue = Queue(config.gateway.queue, connection=ws.conn, serializer=JSONSerializer)
        jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
        envelopes = [job.args[0] for job in jobs if job is not None and job.func_name == JOB_FUNC]
        assert sorted(e["resource"] for e in envelopes) == ["article", "article", "stock", "stock"]
        assert {e["source"] for e in envelopes} == {"winstore"} and {e["endpoint"] for e in envelopes} == {"ws"}
    finally:
        rt.close()


# -- a shop's order booked in Winstore through the orders flow and the default mapping ---------------------


def test_a_shop_order_is_booked_in_winstore_through_the_default_mapping(ws, monkeypatch):
    import json
    import uuid
    from pathlib import Path

    from gateway.config import parse_config
    from gateway.envelope import Envelope, Event
    from workers import runtime
    from workers.jobs import run_event

    order = json.loads((Path(__file__).parent / "fixtures/woocommerce/order_company_coupon.json").read_text("utf-8"))
    skus = [line["sku"] for line in order["line_items"]]
    keys = {a["ArtNr"]: str(a["ArtKey"]) for a in ws.seed(*[{"ArtNr": sku, "Description": sku, "stock": {"1": 9}}
                                                             for sku in [*skus, "VERZENDING", "FEE"]])}  # fmt: skip
    config = parse_config(
        {"endpoints": [{"id": "shop-hooks", "kind": "woocommerce", "secret": "env:HOOK"}],
         "systems": [{"id": "ws", "kind": "winstore", "base_url": ws.api_root,
                      "credentials": {"username": "env:U", "password": "env:P"},
                      "settings": {"branch": 2, "channel": "webshop"}}],
         "integrations": [{"id": "shop-to-winstore", "source": "shop-hooks", "target": "ws", "flows": ["orders"],
                           "settings": {"shipping_item": "VERZENDING"}}]},
        environ={"U": USER, "P": PASSWORD, "HOOK": "hook-secret"},
    )  # fmt: skip
    rt = runtime.Runtime(config=config, connection=ws.conn)
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        event = Event("order.updated", "order", str(order["id"]), f"k-{uuid.uuid4()}", order)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="shop-hooks")
        first = run_event(rt, config.integrations[0], envelope)
        again = run_event(rt, config.integrations[0], envelope.model_copy(update={"delivery_key": f"k-{uuid.uuid4()}"}))
    finally:
        rt.close()
    assert first.outcome == "created" and first.detail["account"] == "guest" and again.outcome == "skipped"
    (booked,) = ws.http.get(f"{ws.live.url}/sandbox/orders").json()["orders"]
    assert booked["ordernr"] == "5120" and booked["customerid"] == 999999 and booked["branch"] == 2
    assert booked["channel"] == "webshop" and booked["total"] == order["total"]
    address = booked["invoice_add"]
    assert (address["street"], address["streetnr"], address["countryISO"], address["country"]) == (
        "2e Hugo de Grootstraat", "7 hs", "NL", "Nederland")  # fmt: skip
    positions = booked["positions"]
    assert [p["product_id"] for p in positions] == [*(keys[s] for s in skus), keys["VERZENDING"], keys["FEE"]]
    assert all(p["type"] == "S" and p["branch"] == 2 for p in positions)
    from connectors.woocommerce.normalise import normalise_order

    canonical = normalise_order(order)
    lines = [*canonical.lines, *canonical.shipping_lines, *canonical.fees]
    paid = sum(int(p["amount"]) * float(p["single_price"]) for p in positions)
    assert abs(paid - float(sum(line.total_incl or 0 for line in lines))) < 0.05  # the prices paid, VAT incl.


def test_suppliers_their_articles_and_stock_by_gtin_are_read(ws):
    suppliers = [{"SupplierId": 17, "Name": "Denimco"}, {"SupplierId": 18, "Name": "Shirtco"}]
    ws.control("suppliers", {"suppliers": suppliers})
    ws.seed(JEANS | {"SupplierId": 17}, SHIRT | {"SupplierId": 18})
    api = ws.client()
    assert [(s["SupplierId"], s["Name"]) for s in api.suppliers()] == [(17, "Denimco"), (18, "Shirtco")]
    assert [a["ArtNr"] for a in api.supplier_articles(17)] == ["WS-JEANS"]
    assert {r["Warehouse"]: r["Stock"] for r in api.stock_by_gtin("8712345678906")} == {1: "5", 2: "3"}
    with pytest.raises(NotFound):
        api.supplier_articles(99)
    with pytest.raises(NotFound):
        api.stock_by_gtin("0000000000000")


def test_an_order_sent_as_json_is_refused_with_415(ws):
    response = ws.http.post(f"{ws.api_root}/PostOrderWithStatusCode", json={"ordernr": "1"}, auth=(USER, PASSWORD))
    assert response.status_code == 415 and "media type" in response.json()["Message"]


def test_a_stock_level_reached_again_is_a_new_change_and_two_changes_in_one_second_are_two(ws):
    ws.seed(SHIRT)
    source = ws.source(warehouses=[1])
    seen = {c.delivery_key for c in poll(source, "stock", None)[0]}
    versions = set()
    for quantity in (9, 10):  # a sale, then the return: 10 again, as at first
        ws.control("clock", {"advance": 60})
        ws.control("stock", {"ArtNr": "WS-SHIRT", "warehouse": 1, "quantity": quantity})
        read, _ = poll(source, "stock", None)
        new = [c for c in read if c.delivery_key not in seen]
        assert [c.record["Stock"] for c in new] == [str(quantity)]
        seen |= {c.delivery_key for c in new}
        versions.add(source.version("stock", new[0].record))
    assert len(versions) == 2
    first, cursor = poll(source, "articles", None)
    ws.seed({"ArtNr": "WS-SHIRT", "SalesPrice": "24.95"})  # changed within the same second as the last read
    again, _ = poll(source, "articles", cursor)
    assert {c.delivery_key for c in again} - {c.delivery_key for c in first}


def test_the_sandbox_answers_an_order_in_xml_when_asked(ws):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    from connectors.winstore.wire import order_xml

    response = ws.http.post(f"{ws.api_root}/PostOrderWithStatusCode", content=order_xml(order_payload("W-9", key)),
                            headers={"Content-Type": "application/xml", "Accept": "application/xml"},
                            auth=(USER, PASSWORD))  # fmt: skip
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    assert records(ws.client().decode(response, "POST order"))[0]["StatusCode"] == "200"


def test_a_stock_count_over_many_articles_reads_the_other_warehouses_in_one_call(ws):
    from connectors.winstore.connector import FILL_IN_LIMIT

    count = FILL_IN_LIMIT + 5
    ws.seed(*[{"ArtNr": f"CNT-{n}", "Description": "x", "stock": {"1": 1, "2": 2}} for n in range(count)])
    source = ws.source(warehouses=[1, 2])
    cursor = later_cursor(ws, source, "stock", poll(source, "stock", None)[1])
    ws.control("clock", {"advance": 600})
    for n in range(count):  # a stock count in warehouse 1
        ws.control("stock", {"ArtNr": f"CNT-{n}", "warehouse": 1, "quantity": 4})
    before = ws.http.get(f"{ws.live.url}/sandbox/counters").json()["by_endpoint"]
    read, _ = poll(source, "stock", cursor)
    after = ws.http.get(f"{ws.live.url}/sandbox/counters").json()["by_endpoint"]
    counted = {c.record["ArtNr"]: c.record["Stock"] for c in read if c.record["Stock"] == "6"}
    assert len(counted) == count  # 4 + 2 each
    assert after.get("GET GetStock", 0) == before.get("GET GetStock", 0)
    assert after["GET GetChangedStockWithWarehouse"] == before["GET GetChangedStockWithWarehouse"] + 2


# -- stock levels into Winstore (the assumed PostStock) -------------------------------------------------------


def stock_in(ws: Winstore, key: str) -> dict[int, str]:
    return {row["Warehouse"]: row["Stock"] for row in ws.client().stock_by_key(key)}


def test_a_posted_stock_level_is_set_and_read_back_as_a_change(ws):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    ws.control("stock", {"ArtKey": key, "warehouse": 2, "quantity": 3, "reserved": 1})
    ws.control("clock", {"advance": 600})
    source = ws.source(warehouses=[2])
    _, cursor = poll(source, "stock", None)
    ws.control("clock", {"advance": 600})
    message = ws.client().post_stock(key, 2, 12)
    assert message == f"Stock of article {key} in warehouse 2 set to 12"
    assert stock_in(ws, key) == {1: "5", 2: "12"}  # an absolute level, in that warehouse only
    read, _ = poll(source, "stock", cursor)
    [change] = [c for c in read if c.record["ArtKey"] == key]
    level = source.normalise("stock", change.record)
    assert (str(level.on_hand), str(level.reserved), str(level.available)) == ("12", "1", "11")  # reservation kept
    assert change.record["ChangeDate"] > cursor[:19]  # a new change date, past what the last poll saw


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"<stock><artkey>999</artkey><warehouse>1</warehouse><amount>1</amount></stock>", 404,
         "Article 999 not found"),
        (b"<stock><artkey>{key}</artkey><warehouse>7</warehouse><amount>1</amount></stock>", 400,
         "Unknown warehouse 7"),
        (b"<stock><artkey>{key}</artkey><amount>1</amount></stock>", 400, "warehouse is required"),
        (b"<stock><artkey>{key}</artkey><warehouse>1</warehouse><amount>lots</amount></stock>", 400,
         "amount 'lots' is not a quantity"),
        (b"<stock><artkey>{key}</artkey><warehouse>1</warehouse><amount>1</amount><price>2</price></stock>", 400,
         "stock: unknown element price"),
        (b"<level><artkey>{key}</artkey></level>", 400, "The root element must be stock, not level"),
    ],
)  # fmt: skip
def test_the_sandbox_refuses_a_stock_document_naming_what_is_wrong(ws, body, status, message):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    response = ws.http.post(f"{ws.api_root}/PostStock", content=body.replace(b"{key}", key.encode()),
                            headers={"Content-Type": "application/xml"}, auth=(USER, PASSWORD))  # fmt: skip
    assert response.status_code == status
    assert response.json() == {"StatusCode": status, "Message": message}
    assert stock_in(ws, key) == {1: "5", 2: "3"}


def test_a_stock_level_sent_as_json_or_without_credentials_is_refused(ws):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    as_json = ws.http.post(f"{ws.api_root}/PostStock", json={"artkey": key}, auth=(USER, PASSWORD))
    assert as_json.status_code == 415
    anonymous = ws.http.post(f"{ws.api_root}/PostStock", content=b"<stock/>", headers={"Content-Type": "text/xml"})
    assert anonymous.status_code == 401


def test_the_target_finds_an_articles_stock_by_number_or_gtin_and_caches_its_key(ws):
    key = str(ws.seed(JEANS, SHIRT)[0]["ArtKey"])
    target = ws.target(warehouses=[1, 2], stock_warehouse=2)
    found = target.find_stock("ws-jeans")
    assert found is not None and (found.target_id, found.quantity, found.ref) == (key, 3, 2)
    assert target.calls == 2  # the catalogue, then the article's stock
    again = target.find_stock("8712345678906")  # its GTIN: cached from the same catalogue read
    assert again is not None and again.target_id == key and target.calls == 3
    assert target.find_stock("WS-NOPE") is None
    shirt = target.find_stock("WS-SHIRT")
    assert shirt is not None and shirt.quantity == 0  # no stock listed in warehouse 2: it holds none


def test_the_target_writes_a_changed_level_only_and_looks_up_a_renumbered_article_again(ws):
    key = str(ws.seed(JEANS)[0]["ArtKey"])
    target = ws.target(warehouses=[1])  # the one warehouse read is the one written
    current = target.find_stock("WS-JEANS")
    assert current is not None
    assert target.stock_change(current, {"amount": 5}) is None
    assert target.stock_change(current, {"amount": 7}) == (5, 7)
    target.write_stock(current, {"amount": 7})
    assert stock_in(ws, key) == {1: "7", 2: "3"}
    ws.seed({"ArtKey": key, "ArtNr": "WS-JEANS-2"})  # renumbered in Winstore: the cached key no longer fits
    assert target.find_stock("WS-JEANS") is None
    assert target.find_stock("WS-JEANS-2") is not None


def test_writing_stock_without_a_warehouse_to_write_names_the_setting(ws):
    ws.seed(JEANS)
    with pytest.raises(PermanentError, match=r"systems\.ws\.settings\.stock_warehouse: required to write stock"):
        ws.target(warehouses=[1, 2]).find_stock("WS-JEANS")
