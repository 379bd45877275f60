"""Orders Exact Online → WooCommerce: Exact sales orders booked as shop orders, no loops with the shop's
own orders booked into Exact, and the status write-back from sales invoices — against both sandboxes over
real HTTP (uvicorn), real Redis, the real poller and flows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from connectors import registry
from connectors.exactonline.normalise import normalise_sales_invoice
from connectors.exactonline.sandbox import ExactSandbox
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.errors import WooCommerceRequestError
from connectors.woocommerce.normalise import normalise_order
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from connectors.woocommerce.sandbox.seed import CATALOGUE
from gateway.config import Config, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.jobs import run_event
from workers.ledger import EARLIER_ATTEMPT, Ledger
from workers.pollers import polled_streams

pytestmark = pytest.mark.integration

DIVISION = 1234567
WOO_KEY, WOO_SECRET = "ck_orders", "cs_orders"
ENV = pairs.ENV | {"WC_SECRET": "s", "WC_KEY": WOO_KEY, "WC_CONSUMER_SECRET": WOO_SECRET,
                  "EXACT_HOOK_SECRET": "hook-secret"}  # fmt: skip
SKUS = [s["sku"] for s in CATALOGUE if "attribute" not in s] + ["KOP-TS-S", "KOP-TS-M", "KOP-TS-L", "KOP-TS-XL",
        "KOP-MOK-ROOD", "KOP-MOK-GROEN", "KOP-MOK-CREME", "SHIPPING", "FEE", "DISCOUNT"]  # fmt: skip


def make_config(exact_url: str, woo_url: str, to_shop: dict[str, Any], to_exact: dict[str, Any],
                tables: dict[str, Any]) -> Config:  # fmt: skip
    return parse_config(
        {
            "endpoints": [{"id": "webhooks", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
            "systems": [
                pairs.exact_system(exact_url),
                {"id": "shop", "kind": "woocommerce", "base_url": woo_url,
                 "credentials": {"consumer_key": "env:WC_KEY", "consumer_secret": "env:WC_CONSUMER_SECRET"}},
            ],
            "integrations": [
                {"id": "shop-to-exact", "source": "webhooks", "target": "exact", "flows": ["orders"],
                 "settings": to_exact},
                {"id": "exact-to-shop", "source": "exact", "target": "shop", "flows": ["orders"], "settings": to_shop,
                 "tables": tables},
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

    def integration(self, name: str) -> Any:
        return next(i for i in self.rt.config.integrations if i.id == name)

    def control(self, action: str, body: dict) -> dict:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    def account(self, name: str = "Bakkerij Jörg B.V.", email: str | None = "inkoop@joerg.example") -> str:
        record = {"Name": name, "Email": email, "AddressLine1": "Oudegracht 112", "Postcode": "3511 AX",
                  "City": "Utrecht", "Country": "NL", "Phone": "+31 30 555 0190", "VATNumber": "NL812345678B01"}
        record = {k: v for k, v in record.items() if v is not None}
        return str(self.control("seed", {"entity": "crm/Accounts", "records": [record]})["ids"][0])

    def exact_order(self, lines: list[tuple[str, int, float]], *, account: str | None = None,
                    your_ref: str | None = None, **header: Any) -> str:  # fmt: skip
        """A sales order entered in Exact; lines are (item code, quantity, unit price excl. VAT)."""
        items = self.control("seed/items", {"skus": [code for code, _, _ in lines]})["items"]
        order = {"OrderedBy": account or self.account(), "SalesOrderLines": [
            {"Item": items[code], "Quantity": quantity, "UnitPrice": price} for code, quantity, price in lines
        ]} | header  # fmt: skip
        if your_ref is not None:
            order["YourRef"] = your_ref
        return str(self.control("seed", {"entity": "salesorder/SalesOrders", "records": [order]})["ids"][0])

    def exact_update(self, entity: str, key: str, **fields: Any) -> None:
        self.control("update", {"entity": entity, "id": key, "fields": fields})

    def process_polled(self, stream: str = "SalesOrderHeaders") -> list[dict[str, Any]]:
        """Poll Exact (the real poller job), then run every queued `process_event` job: exact-to-shop results."""
        return pairs.run_polled(self.conn, self.rt, "exact", stream, "exact-to-shop")

    def shop_event(self, order: dict[str, Any], topic: str = "order.created") -> dict[str, Any]:
        """A shop order's webhook through the WooCommerce → Exact integration's flow."""
        event = Event(topic, "order", str(order["id"]), f"k{uuid.uuid4()}", order)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="webhooks")
        return run_event(self.rt, self.integration("shop-to-exact"), envelope).as_dict()

    def place_shop_order(self) -> dict[str, Any]:
        body = {"count": 1, "status": "processing", "seed": 11}
        order_id = self.http.post(f"{self.woo.url}/sandbox/orders", json=body).raise_for_status().json()["orders"][0]
        return self.shop.get_order(int(order_id))

    def shop_orders(self) -> list[dict[str, Any]]:
        return list(self.shop.orders(status="any"))


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    given = getattr(request, "param", {})
    with pairs.exact_served() as (exact, sandbox):
        woo = serve(woo_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET, seed_products=True), name="shop")
        try:
            with httpx.Client(timeout=10) as http:
                to_shop = {"order_mode": "both"} | given.get("settings", {})
                config = make_config(exact.url, woo.url, to_shop, given.get("to_exact", {}), given.get("tables", {}))
                with pairs.installed(config, rconn, monkeypatch) as rt:
                    pairs.authorise_exact(http, exact, rconn)
                    shop = WooCommerceClient(http, base_url=woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
                    yield Env(exact, woo, sandbox, http, rconn, rt, shop)
        finally:
            woo.stop()


def meta(order: dict[str, Any], key: str) -> Any:
    return next((m["value"] for m in order["meta_data"] if m["key"] == key), None)


# -- Exact sales orders become shop orders ------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [{"tables": {"payment_methods": {"entries": {"30": "bacs"}},
                 "shipping_methods": {"entries": {"PNL": "flat_rate"}}}}],
    indirect=True,
)
def test_an_exact_sales_order_becomes_a_shop_order_with_its_lines_and_customer(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 3, 10.00), ("KOP-TS-M", 2, 16.50), ("SHIPPING", 1, 4.95)],
                               PaymentCondition="30", ShippingMethodCode="PNL",
                               ShippingMethodDescription="PostNL")  # fmt: skip
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    shop_order = env.shop.get_order(int(result["target_id"]))
    lines = {line["sku"]: line for line in shop_order["line_items"]}
    assert set(lines) == {"KOP-TASSE-BL", "KOP-TS-M"}  # the shipping item became the shipping line
    assert (lines["KOP-TASSE-BL"]["quantity"], lines["KOP-TASSE-BL"]["total"]) == (3, "30.00")
    tshirt = env.shop.find_product_by_sku("KOP-TS-M")
    assert (lines["KOP-TS-M"]["variation_id"], lines["KOP-TS-M"]["product_id"]) == (tshirt["id"], tshirt["parent_id"])
    assert lines["KOP-TS-M"]["total"] == "33.00" and lines["KOP-TS-M"]["total_tax"] == "6.93"  # NL 21 %
    [shipping] = shop_order["shipping_lines"]
    assert (shipping["method_id"], shipping["method_title"], shipping["total"]) == ("flat_rate", "PostNL", "4.95")
    assert Decimal(shop_order["total"]) == Decimal("67.95") + Decimal("14.27")
    assert (shop_order["status"], shop_order["payment_method"], shop_order["payment_method_title"]) == (
        "processing", "bacs", "30 dagen")
    billing = shop_order["billing"]
    assert (billing["email"], billing["company"], billing["city"], billing["country"]) == (
        "inkoop@joerg.example", "Bakkerij Jörg B.V.", "Utrecht", "NL")
    customer = env.shop.find_customer_by_email("inkoop@joerg.example")
    assert customer is not None and shop_order["customer_id"] == customer["id"]
    assert meta(shop_order, "_koppel_origin") == f"exact:{order_id}"
    assert normalise_order(shop_order).origin == f"exact:{order_id}"


def test_an_order_is_booked_once_and_later_statuses_reach_the_booked_shop_order(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [first] = env.process_polled()
    env.exact_update("salesorder/SalesOrders", order_id, Description="Levering dinsdag")
    [again] = env.process_polled()
    assert (again["outcome"], again["calls"]) == ("skipped", 0)
    assert "changes nothing" in again["reason"] and first["target_id"] in again["reason"]
    env.exact_update("salesorder/SalesOrders", order_id, Status=21)  # delivered in Exact
    [done] = env.process_polled()
    assert (done["outcome"], done["target_id"]) == ("updated", first["target_id"])
    assert env.shop.get_order(int(first["target_id"]))["status"] == "completed"
    assert len(env.shop_orders()) == 1


def test_a_crash_between_the_shop_write_and_the_ledger_finds_the_order_instead_of_booking_it_twice(env):
    env.exact_order([("KOP-ONDZ-4", 2, 6.20)])
    [first] = env.process_polled()
    number = first["number"]
    ledger = Ledger(env.conn, "exact-to-shop", "orders")
    env.conn.hdel(ledger.key, number)  # as if the worker died after the POST, before its ledger entry
    env.conn.hset(ledger.flight, number, f"{time.time() - 60:.3f}")
    result = process_all_versions(env)
    assert (result["outcome"], result["target_id"]) == ("created", first["target_id"])
    assert result["reason"] == EARLIER_ATTEMPT
    assert ledger.created(number) == first["target_id"] and not ledger.in_flight(number)
    assert len(env.shop_orders()) == 1


def process_all_versions(env: Env) -> dict[str, Any]:
    """The Exact order's header as a replayed job (no version: never "processed already"), through the flow."""
    [record] = env.sandbox.store.sync_rows(DIVISION, "sync/SalesOrder/SalesOrderHeaders")
    row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items() if k != "Modified"}
    event = Event("SalesOrderHeaders.sync", "SalesOrderHeaders", row["OrderID"], f"k{uuid.uuid4()}", row)
    envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
    return run_event(env.rt, env.integration("exact-to-shop"), envelope).as_dict()


def test_items_the_shop_lacks_fail_the_order_naming_every_missing_sku(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00), ("EXACT-ONLY-1", 1, 5.00), ("EXACT-ONLY-2", 1, 5.00)])
    missing = r"SKU\(s\) EXACT-ONLY-1, EXACT-ONLY-2 do not exist as items in WooCommerce"
    with pytest.raises(PermanentError, match=missing):
        process_all_versions(env)
    assert env.shop_orders() == []


@pytest.mark.parametrize("env", [{"settings": {"order_statuses": ["12"]}}], indirect=True)
def test_only_the_configured_exact_statuses_are_booked(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    env.exact_update("salesorder/SalesOrders", order_id, Status=20)
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'partial' is not synced")
    assert env.shop_orders() == []


def test_a_cancelled_exact_order_is_not_booked_by_default(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    env.exact_update("salesorder/SalesOrders", order_id, Status=45)
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'cancelled' is not synced")


def test_a_known_shop_customer_is_updated_by_e_mail_not_created_again(env):
    known = env.shop.create_customer({"email": "Inkoop@Joerg.example", "first_name": "Jörg"})
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [result] = env.process_polled()
    shop_order = env.shop.get_order(int(result["target_id"]))
    assert shop_order["customer_id"] == known["id"]
    assert env.shop.get_customer(known["id"])["billing"]["city"] == "Utrecht"
    assert len(list(env.shop.customers(role="all"))) == 1


def test_an_exact_customer_without_e_mail_fails_naming_the_fix(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=env.account(email=None))
    with pytest.raises(PermanentError, match="no customer e-mail address"):
        process_all_versions(env)


@pytest.mark.parametrize("env", [{"settings": {"guest_orders": True, "set_paid": True}}], indirect=True)
def test_guest_orders_create_no_shop_customer(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [result] = env.process_polled()
    shop_order = env.shop.get_order(int(result["target_id"]))
    assert (shop_order["customer_id"], shop_order["billing"]["email"]) == (0, "inkoop@joerg.example")
    assert shop_order["date_paid_gmt"] is not None
    assert list(env.shop.customers(role="all")) == []


def test_a_default_customer_takes_every_order(env):
    customer = env.shop.create_customer({"email": "zakelijk@shop.example", "first_name": "Zakelijk"})
    env.rt.config.integrations[1].settings["default_customer"] = str(customer["id"])
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [result] = env.process_polled()
    assert env.shop.get_order(int(result["target_id"]))["customer_id"] == customer["id"]
    assert [c["email"] for c in env.shop.customers(role="all")] == ["zakelijk@shop.example"]
    env.rt.config.integrations[1].settings["default_customer"] = "99999"
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    with pytest.raises(PermanentError, match="the default debtor '99999' does not exist in WooCommerce"):
        env.process_polled()


# -- no loops ------------------------------------------------------------------------------------------------


def test_a_shop_order_booked_into_exact_is_never_booked_back_but_gets_its_status(env):
    env.control("seed/items", {"skus": SKUS})
    shop_order = env.place_shop_order()
    booked = env.shop_event(shop_order)
    assert booked["outcome"] == "created"
    [back] = env.process_polled()  # the Exact sales order Koppel booked: open, changes nothing in the shop
    assert back["outcome"] == "skipped" and "changes nothing" in back["reason"]
    env.exact_update("salesorder/SalesOrders", booked["target_id"], Status=21)
    [status] = env.process_polled()
    assert (status["outcome"], status["target_id"]) == ("updated", str(shop_order["id"]))
    assert [o["id"] for o in env.shop_orders()] == [shop_order["id"]]  # nothing booked back
    assert env.shop.get_order(shop_order["id"])["status"] == "completed"


def test_a_shop_order_koppel_made_from_an_exact_order_is_not_booked_into_exact_again(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [created] = env.process_polled()
    shop_order = env.shop.get_order(int(created["target_id"]))
    result = env.shop_event(shop_order)  # its order.created webhook reaches the WooCommerce → Exact integration
    assert (result["outcome"], result["calls"]) == ("skipped", 0)
    assert result["reason"] == f"Koppel made it from Exact Online order {order_id} (exact:{order_id}); not booked back"
    assert len(env.sandbox.store.rows(DIVISION, "salesorder/SalesOrders")) == 1


def test_in_both_mode_an_exact_order_referring_to_a_shop_order_is_a_status_not_a_new_order(env):
    shop_order = env.place_shop_order()  # booked into Exact by someone else: no ledger entry
    account = env.account(email=shop_order["billing"]["email"].upper())  # the same customer
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=account, your_ref=str(shop_order["id"]), Status=12)
    [result] = env.process_polled()
    assert result["outcome"] == "skipped" and "changes nothing" in result["reason"]
    assert len(env.shop_orders()) == 1
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=account, your_ref=str(shop_order["id"]))
    env.exact_update("salesorder/SalesOrders", order_id, Status=21)  # delivered: the shop's order completes
    results = env.process_polled()
    assert [r["outcome"] for r in results] == ["updated"] and len(env.shop_orders()) == 1
    assert env.shop.get_order(shop_order["id"])["status"] == "completed"


def test_in_both_mode_a_customers_reference_that_looks_like_a_shop_order_number_is_booked(env):
    shop_order = env.place_shop_order()
    # another customer's purchase order number happens to be the shop order's number
    order_id = env.exact_order([("KOP-TASSE-BL", 2, 10.00)], your_ref=str(shop_order["id"]))
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    booked = env.shop.get_order(int(result["target_id"]))
    assert booked["id"] != shop_order["id"] and meta(booked, "_koppel_origin") == f"exact:{order_id}"
    assert booked["billing"]["email"] == "inkoop@joerg.example"
    assert env.shop.get_order(shop_order["id"])["status"] == shop_order["status"]  # left alone


# -- status write-back from sales invoices -----------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [{"to_exact": {"document_type": "sales_invoice"},
      "settings": {"order_mode": "status", "order_documents": ["sales_order", "sales_invoice"]}}],
    indirect=True,
)  # fmt: skip
def test_a_processed_sales_invoice_completes_the_shop_order_it_was_booked_from(env):
    env.control("seed/items", {"skus": SKUS})
    shop_order = env.place_shop_order()
    booked = env.shop_event(shop_order)
    assert booked["outcome"] == "created"
    assert polled_streams(env.rt.config)["exact"] == ["SalesOrderHeaders", "SalesInvoices"]
    [opened] = env.process_polled("SalesInvoices")
    assert opened["outcome"] == "skipped" and "invoice:20 open changes nothing" in opened["reason"]
    env.exact_update("salesinvoice/SalesInvoices", booked["target_id"], Status=50)  # printed and sent
    [done] = env.process_polled("SalesInvoices")
    assert (done["outcome"], done["target_id"]) == ("updated", str(shop_order["id"]))
    assert env.shop.get_order(shop_order["id"])["status"] == "completed"


@pytest.mark.parametrize(
    "env", [{"to_exact": {"document_type": "sales_invoice"}, "settings": {"order_documents": ["sales_invoice"]}}],
    indirect=True,
)
def test_a_sales_invoice_is_never_booked_as_a_new_shop_order(env):
    invoice = {"OrderedBy": env.account(), "Journal": "70", "YourRef": "PO-77", "SalesInvoiceLines": [
        {"Item": env.control("seed/items", {"skus": ["KOP-TASSE-BL"]})["items"]["KOP-TASSE-BL"], "Quantity": 1}]}
    env.control("seed", {"entity": "salesinvoice/SalesInvoices", "records": [invoice]})
    [result] = env.process_polled("SalesInvoices")
    assert result["outcome"] == "skipped" and "invoices only write their status back" in result["reason"]
    assert env.shop_orders() == []


def test_sales_invoices_normalise_to_the_status_write_back_record():
    record = {"InvoiceID": str(uuid.uuid4()), "InvoiceNumber": 24000001, "YourRef": "4711", "Status": 50,
              "Type": 8020, "Modified": "2026-12-02T10:00:00+01:00"}  # fmt: skip
    order = normalise_sales_invoice(record)
    assert (order.number, order.reference, order.status) == ("24000001", "4711", "complete")
    assert order.custom_fields["status_code"] == "invoice:50"
    assert normalise_sales_invoice(record | {"Type": 8021}).status == "credit_note"
    assert normalise_sales_invoice(record | {"Status": 20}).status == "open"


# -- configuration ---------------------------------------------------------------------------------------


def _problems(to_shop: dict[str, Any], to_exact: dict[str, Any] | None = None) -> list[str]:
    config = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", to_shop, to_exact or {}, {})
    return [p for p in registry.config_problems(config) if "order_" in p]


def test_config_check_validates_order_mode_against_the_target():
    assert _problems({"order_mode": "both"}) == []
    assert _problems({}, {"order_mode": "status"}) == [
        'integrations[0].settings.order_mode: Exact Online can only book orders ("book")'
    ]
    assert _problems({"order_mode": "bookk"}) == [
        "integrations[1].settings.order_mode: must be one of status, book, both"
    ]


def test_config_check_names_the_invoice_stream_a_status_write_back_needs():
    [problem] = _problems({}, {"document_type": "sales_invoice"})
    assert problem.startswith("integrations[1].settings.order_documents: integration 'shop-to-exact' books")
    assert _problems({"order_documents": ["sales_invoice"]}, {"document_type": "sales_invoice"}) == []
    assert _problems({"order_documents": ["quotation"]}) == [
        "integrations[1].settings.order_documents: a list of sales_order, sales_invoice, direct_invoice"
    ]


# -- the WooCommerce sandbox's POST /orders -----------------------------------------------------------------


def test_the_shop_sandbox_creates_orders_by_sku_with_taxes_and_fires_order_created(env):
    created = env.shop.create_order({
        "status": "on-hold", "billing": {"email": "a@b.example", "country": "DE"},
        "line_items": [{"sku": "KOP-KOF-1KG", "quantity": 2}, {"product_id": 0, "variation_id": 0, "sku": "KOP-TS-L",
                                                                "quantity": 1, "total": "10.00"}],
        "shipping_lines": [{"method_id": "flat_rate", "method_title": "DHL", "total": "5.95"}],
        "meta_data": [{"key": "_koppel_origin", "value": "exact:x"}],
    })  # fmt: skip
    coffee, shirt = created["line_items"]
    assert (coffee["quantity"], coffee["total"], coffee["total_tax"]) == (2, "46.54", "3.26")  # 49.80 incl. 7 %
    assert (shirt["total"], shirt["total_tax"], shirt["variation_id"] > 0) == ("10.00", "1.90", True)
    assert (created["shipping_tax"], created["total"]) == ("1.13", "68.78")
    assert created["created_via"] == "rest-api" and meta(created, "_koppel_origin") == "exact:x"
    assert env.shop.find_product_by_sku("KOP-KOF-1KG")["stock_quantity"] == 58  # on-hold holds stock
    with pytest.raises(WooCommerceRequestError, match="woocommerce_rest_required_product_reference"):
        env.shop.create_order({"line_items": [{"quantity": 1}]})
    with pytest.raises(WooCommerceRequestError, match="woocommerce_rest_invalid_customer_id"):
        env.shop.create_order({"customer_id": 424242, "line_items": [{"sku": "KOP-TASSE-BL"}]})


@pytest.mark.parametrize(
    "env", [{"to_exact": {"document_type": "sales_invoice"}, "settings": {"order_mode": "status"}}], indirect=True
)
def test_a_sales_invoice_webhook_is_read_through_the_api_and_writes_the_status_back(env):
    env.control("seed/items", {"skus": SKUS})
    shop_order = env.place_shop_order()
    invoice_id = env.shop_event(shop_order)["target_id"]
    env.exact_update("salesinvoice/SalesInvoices", invoice_id, Status=50)
    event = Event("SalesInvoices.Update", "SalesInvoices", invoice_id, f"k{uuid.uuid4()}",
                  {"Topic": "SalesInvoices", "Action": "Update", "Division": DIVISION, "Key": invoice_id})  # fmt: skip
    envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
    result = run_event(env.rt, env.integration("exact-to-shop"), envelope).as_dict()
    assert (result["outcome"], result["target_id"]) == ("updated", str(shop_order["id"]))
    assert env.shop.get_order(shop_order["id"])["status"] == "completed"


def test_the_exact_orders_delivery_address_is_the_shop_orders_shipping_address(env):
    account = env.account()
    [address] = env.control("seed", {"entity": "crm/Addresses", "records": [
        {"Account": account, "Type": 4, "AddressLine1": "Havenweg 7", "AddressLine2": "Loods 3", "Postcode": "3542 AD",
         "City": "Utrecht", "Country": "NL"}]})["ids"]  # fmt: skip
    receiver = env.account(name="Café De Gouden Kroon", email="kroon@example.org")
    env.exact_update("crm/Accounts", receiver, AddressLine1="Grote Markt 1", Postcode="9711 LV", City="Groningen")
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=account, DeliveryAddress=address)
    env.exact_order([("KOP-TASSE-BL", 2, 10.00)], account=account, DeliverTo=receiver)
    env.exact_order([("KOP-TASSE-BL", 3, 10.00)], account=account)
    results = env.process_polled()
    assert [r["outcome"] for r in results] == ["created"] * 3, results
    shipping = [env.shop.get_order(int(r["target_id"]))["shipping"] for r in results]
    shipped = [(s["company"], s["address_1"], s["address_2"], s["postcode"], s["city"]) for s in shipping]
    assert shipped == [
        ("Bakkerij Jörg B.V.", "Havenweg 7", "Loods 3", "3542 AD", "Utrecht"),  # its delivery address
        ("Café De Gouden Kroon", "Grote Markt 1", "", "9711 LV", "Groningen"),  # another account delivered to
        ("Bakkerij Jörg B.V.", "Oudegracht 112", "", "3511 AX", "Utrecht"),  # the customer's own address
    ]
