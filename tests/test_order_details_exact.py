"""Order details on the way to Exact Online: delivery address, shipping method, coupons, cost centre and
cost unit — WooCommerce orders (the shop sandbox's own and the fixtures) booked in the Exact sandbox over
real HTTP, checked in the Exact sandbox's state; steady state stays one Exact call per order."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from connectors.exactonline.sandbox import ExactSandbox
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.sandbox import create_sandbox as woo_sandbox
from gateway.config import parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from gateway.stack import LiveServer, serve
from tests import pairs_support as pairs
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

WOO_KEY, WOO_SECRET = "ck_details", "cs_details"
ENV = pairs.ENV | {"WC_SECRET": "s"}
FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
COUPON_ORDER = json.loads((FIXTURES / "order_company_coupon.json").read_text())
SERVICE = ["SHIPPING", "FEE", "DISCOUNT"]
TABLES: dict[str, Any] = {
    "vat_codes": {"entries": {"21": "2", "9": "1", "0": "0"}},
    "shipping_methods": {"entries": {"flat_rate": "PNL", "local_pickup": "AFH"}},
    "cost_centres": {"default": "WEB", "entries": {"SHIPPING": "LOG"}},
    "cost_units": {"entries": {"BAK-PROFI-R40": "BAKKERS"}},
}
DOCUMENTS = {
    "sales_order": ("salesorder/SalesOrders", "OrderID", "salesorder/SalesOrderLines", "DeliveryAddress"),
    "sales_invoice": ("salesinvoice/SalesInvoices", "InvoiceID", "salesinvoice/SalesInvoiceLines", "DeliverToAddress"),
}


@dataclass
class Env:
    exact: LiveServer
    woo: LiveServer
    sandbox: ExactSandbox
    http: httpx.Client
    rt: runtime.Runtime
    shop: WooCommerceClient

    @property
    def division(self) -> int:
        return self.sandbox.config.divisions[0]

    def rows(self, path: str) -> list[dict[str, Any]]:
        return self.sandbox.store.rows(self.division, path)

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        event = Event("order.created", "order", str(payload["id"]), f"k{uuid.uuid4()}", payload)
        envelope = Envelope.wrap(event, source="woocommerce", endpoint="shop")
        return run_event(self.rt, self.rt.config.integrations[0], envelope).as_dict()

    def booked(self, number: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        document = self.rt.config.integrations[0].settings.get("document_type", "sales_order")
        path, key, lines, _ = DOCUMENTS[document]
        [header] = [r for r in self.rows(path) if r.get("YourRef") == number]
        found = sorted((r for r in self.rows(lines) if r.get(key) == header[key]), key=lambda r: r["LineNumber"])
        return header, found

    def seed(self, entity: str, *records: dict[str, Any]) -> list[str]:
        answer = self.http.post(f"{self.exact.url}/sandbox/seed", json={"entity": entity, "records": list(records)})
        return list(answer.raise_for_status().json()["ids"])

    def code_id(self, path: str, code: str) -> str:
        return str(next(r["ID"] for r in self.rows(path) if r["Code"] == code))


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest) -> Iterator[Env]:
    """`settings` and `tables` (default TABLES) by indirect parametrisation."""
    given = getattr(request, "param", {})
    with pairs.exact_served() as (exact, sandbox):
        woo = serve(woo_sandbox(consumer_key=WOO_KEY, consumer_secret=WOO_SECRET, seed_products=True), name="shop")
        try:
            with httpx.Client(timeout=10) as http:
                system = pairs.exact_system(exact.url)
                integration = {"id": "shop-to-exact", "source": "shop", "target": "exact", "flows": ["orders"],
                               "settings": given.get("settings", {}),
                               "tables": given.get("tables", TABLES)}  # fmt: skip
                config = parse_config(
                    {
                        "endpoints": [{"id": "shop", "kind": "woocommerce", "secret": "env:WC_SECRET"}],
                        "systems": [system],
                        "integrations": [integration],
                    },
                    environ=ENV,
                )
                rt = runtime.Runtime(config=config, connection=rconn)
                pairs.authorise_exact(http, exact, rconn)
                shop = WooCommerceClient(http, base_url=woo.url, consumer_key=WOO_KEY, consumer_secret=WOO_SECRET)
                e = Env(exact, woo, sandbox, http, rt, shop)
                skus = [line["sku"] for line in COUPON_ORDER["line_items"]] + SERVICE
                http.post(f"{exact.url}/sandbox/seed/items", json={"skus": sorted(set(skus))}).raise_for_status()
                e.seed("sales/ShippingMethods", {"Code": "PNL", "Description": "PostNL"},
                       {"Code": "AFH", "Description": "Afhalen"})  # fmt: skip
                e.seed("hrm/Costcenters", {"Code": "WEB", "Description": "Webwinkel", "Active": True},
                       {"Code": "LOG", "Description": "Logistiek", "Active": True})  # fmt: skip
                e.seed("hrm/Costunits", {"Code": "BAKKERS", "Description": "Bakkerijbenodigdheden"})
                try:
                    yield e
                finally:
                    rt.close()
        finally:
            woo.stop()


def coupon_order(number: int, **changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(COUPON_ORDER)
    payload.update(id=number, number=str(number), **changes)
    return payload


def test_the_shipping_address_is_the_orders_delivery_address_and_a_returning_customer_costs_one_call(env: Env) -> None:
    first = env.run(coupon_order(9101))
    assert first["outcome"] == "created", first
    header, _ = env.booked("9101")
    [address] = [a for a in env.rows("crm/Addresses") if a["ID"] == header["DeliveryAddress"]]
    assert address["Account"] == header["OrderedBy"] and address["Type"] == 4
    shipping = COUPON_ORDER["shipping"]
    assert (address["AddressLine1"], address["AddressLine2"], address["Postcode"], address["City"],
            address["Country"]) == (shipping["address_1"], shipping["address_2"], shipping["postcode"],
                                    shipping["city"], "NL")  # fmt: skip
    assert header["ShippingMethod"] == env.code_id("sales/ShippingMethods", "PNL")

    # The same customer, the same address, the same items and shipping method: one call, the POST.
    again = env.run(coupon_order(9102))
    assert (again["outcome"], again["calls"]) == ("created", 1)
    second, _ = env.booked("9102")
    assert second["DeliveryAddress"] == header["DeliveryAddress"]
    assert len([a for a in env.rows("crm/Addresses") if a["Account"] == header["OrderedBy"]]) == 1

    # Another shipping address of the same customer: found or created once, then cached as well.
    elsewhere = {**COUPON_ORDER["shipping"], "address_1": "Prinsengracht 263", "postcode": "1016 GV"}
    third = env.run(coupon_order(9103, shipping=elsewhere))
    assert third["calls"] == 3  # the account's delivery addresses read, the new one created, the POST
    third_header, _ = env.booked("9103")
    assert third_header["DeliveryAddress"] != header["DeliveryAddress"]
    assert env.run(coupon_order(9104, shipping=elsewhere))["calls"] == 1


def test_an_order_placed_in_the_shop_is_delivered_to_its_shipping_address(env: Env) -> None:
    body = {"count": 1, "status": "processing", "seed": 11}
    [order_id] = env.http.post(f"{env.woo.url}/sandbox/orders", json=body).raise_for_status().json()["orders"]
    placed = env.shop.get_order(int(order_id))
    skus = [line["sku"] for line in placed["line_items"]]
    env.http.post(f"{env.exact.url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()
    assert env.run(placed)["outcome"] == "created"
    header, lines = env.booked(str(placed["number"]))
    shipping, billing = placed["shipping"], placed["billing"]
    fields = ("address_1", "address_2", "postcode", "city", "country")
    if shipping["address_1"] and any(shipping[f] != billing[f] for f in fields):
        [address] = [a for a in env.rows("crm/Addresses") if a["ID"] == header["DeliveryAddress"]]
        assert (address["AddressLine1"], address["City"]) == (shipping["address_1"], shipping["city"])
    else:  # goods to the billing address: the account's own, where Exact delivers by default
        assert not header.get("DeliveryAddress")
        account = next(a for a in env.rows("crm/Accounts") if a["ID"] == header["OrderedBy"])
        assert (account["AddressLine1"], account["City"]) == (billing["address_1"], billing["city"])
    assert {line["CostCenter"] for line in lines} <= {"WEB", "LOG"}


def test_an_order_shipped_to_its_billing_address_needs_no_delivery_address(env: Env) -> None:
    billing = COUPON_ORDER["billing"]
    same = {k: billing[k] for k in ("first_name", "last_name", "company", "address_1", "address_2", "city", "state",
                                    "postcode", "country")}  # fmt: skip
    first = env.run(coupon_order(9301, shipping=same))
    assert first["outcome"] == "created"
    header, _ = env.booked("9301")
    assert not header.get("DeliveryAddress")
    assert [a for a in env.rows("crm/Addresses") if a["Account"] == header["OrderedBy"]] == []
    assert env.run(coupon_order(9302, shipping=same))["calls"] == 1


@pytest.mark.parametrize("env", [{"settings": {"discount_lines": "in_lines"}}], indirect=True)
def test_with_discount_lines_in_lines_a_coupon_is_in_the_line_prices_and_the_amounts_are_the_shops(env: Env) -> None:
    assert env.run(coupon_order(9201))["outcome"] == "created"
    _, lines = env.booked("9201")
    percentages = {r["Code"]: Decimal(str(r["Percentage"])) for r in env.rows("vat/VATCodes")}
    shop_lines = [(li["total"], li["total_tax"]) for li in COUPON_ORDER["line_items"]]
    shop_lines += [(s["total"], s["total_tax"]) for s in COUPON_ORDER["shipping_lines"]]
    shop_lines += [(f["total"], f["total_tax"]) for f in COUPON_ORDER["fee_lines"]]
    assert len(lines) == len(shop_lines)  # the coupon is spread over the lines: no discount line
    for line, (excl, tax) in zip(lines, shop_lines, strict=True):
        assert Decimal(str(line["AmountFC"])) == Decimal(excl)
        rate = percentages[line["VATCode"]] if line.get("VATCode") else Decimal(0)  # a free line has no rate
        vat = (Decimal(excl) * rate).quantize(Decimal("0.01"))
        assert vat == Decimal(tax), line  # incl. tax: the shop's tax per line from Exact's VAT code
    coupon = COUPON_ORDER["coupon_lines"][0]
    given = sum(Decimal(li["subtotal"]) - Decimal(li["total"]) for li in COUPON_ORDER["line_items"])
    assert given == Decimal(coupon["discount"])  # the lines carry the whole coupon (excl. tax)
    products = [line for line in lines if line["ItemCode"] in {li["sku"] for li in COUPON_ORDER["line_items"]}]
    assert [line["UnitPrice"] for line in products] == [11.25, 11.875, 0.0]  # after the coupon


def test_by_default_the_goods_are_at_full_price_and_the_coupon_a_line_per_vat_rate(env: Env) -> None:
    assert env.run(coupon_order(9251))["outcome"] == "created"
    _, lines = env.booked("9251")
    booked = [(li["ItemCode"], li["Quantity"], li["UnitPrice"], li.get("VATCode"), li["Description"]) for li in lines]
    assert booked == [
        ("MEEL-SPELT-5", 3, 12.5, "1", "Speltmeel 5 kg"),
        ("BAK-PROFI-R40", 2, 12.5, "2", booked[1][4]),
        ("OVEN-HS", 1, 0, "2", booked[2][4]),  # a free line: no rate, the item's own VAT code
        ("SHIPPING", 1, 6.95, "2", booked[3][4]),
        ("FEE", 1, 4.0, "2", booked[4][4]),
        ("DISCOUNT", 1, -3.75, "1", "Discount lente10 (9%)"),
        ("DISCOUNT", 1, -1.25, "2", "Discount lente10 (21%)"),
    ]  # fmt: skip
    # the same VAT as the coupon spread over the lines: 3.38 - 0.34 at 9 %, 5.25 + 1.46 + 0.84 - 0.26 at 21 %
    assert sum(Decimal(str(li["VATAmountFC"])) for li in lines) == Decimal("10.33")
    assert sum(Decimal(str(li["AmountFC"])) for li in lines) == Decimal("68.45")


def test_cost_centre_and_cost_unit_come_from_their_tables_per_line(env: Env) -> None:
    assert env.run(coupon_order(9301))["outcome"] == "created"
    _, lines = env.booked("9301")
    by_item = {line["ItemCode"]: (line.get("CostCenter"), line.get("CostUnit")) for line in lines}
    assert by_item == {
        "MEEL-SPELT-5": ("WEB", None), "BAK-PROFI-R40": ("WEB", "BAKKERS"), "OVEN-HS": ("WEB", None),
        "SHIPPING": ("LOG", None), "FEE": ("WEB", None), "DISCOUNT": ("WEB", None),
    }  # fmt: skip


@pytest.mark.parametrize("env", [{"settings": {"document_type": "sales_invoice"}}], indirect=True)
def test_a_sales_invoice_carries_the_delivery_address_and_the_cost_codes(env: Env) -> None:
    assert env.run(coupon_order(9401))["outcome"] == "created"
    header, lines = env.booked("9401")
    [address] = [a for a in env.rows("crm/Addresses") if a["ID"] == header["DeliverToAddress"]]
    assert address["AddressLine1"] == COUPON_ORDER["shipping"]["address_1"]
    assert {line["CostCenter"] for line in lines} == {"WEB", "LOG"}


@pytest.mark.parametrize(
    "env", [{"tables": {**TABLES, "shipping_methods": {"entries": {"flat_rate": "DHL"}}}}], indirect=True
)
def test_a_shipping_method_code_exact_lacks_fails_naming_it_and_the_table(env: Env) -> None:
    with pytest.raises(PermanentError) as failed:
        env.run(coupon_order(9501))
    message = str(failed.value)
    assert "shipping method 'DHL' does not exist in Exact Online" in message and "'shipping_methods'" in message
    assert [o for o in env.rows("salesorder/SalesOrders") if o.get("YourRef") == "9501"] == []
    env.seed("sales/ShippingMethods", {"Code": "DHL", "Description": "DHL"})
    assert env.run(coupon_order(9501))["outcome"] == "created"  # the miss was not cached


@pytest.mark.parametrize("env", [{"tables": {**TABLES, "cost_units": {"default": "ONBEKEND"}}}], indirect=True)
def test_a_cost_unit_code_exact_lacks_fails_naming_it_and_its_line(env: Env) -> None:
    with pytest.raises(PermanentError) as failed:
        env.run(coupon_order(9601))
    assert "SalesOrderLines[1].CostUnit: cost unit 'ONBEKEND' does not exist in Exact Online" in str(failed.value)
    assert "'cost_units'" in str(failed.value)


def test_a_delivery_address_deleted_in_exact_is_forgotten_and_made_again(env: Env) -> None:
    env.run(coupon_order(9701))
    header, _ = env.booked("9701")
    env.sandbox.store.delete(env.division, "crm/Addresses", header["DeliveryAddress"])
    result = env.run(coupon_order(9702))
    assert result["outcome"] == "created", result
    second, _ = env.booked("9702")
    [address] = [a for a in env.rows("crm/Addresses") if a["Account"] == header["OrderedBy"]]
    assert second["DeliveryAddress"] == address["ID"] != header["DeliveryAddress"]


@pytest.mark.parametrize("env", [{"tables": {"vat_codes": TABLES["vat_codes"]}}], indirect=True)
def test_without_tables_no_shipping_method_or_cost_codes_are_sent(env: Env) -> None:
    assert env.run(coupon_order(9801))["outcome"] == "created"
    header, lines = env.booked("9801")
    assert header.get("ShippingMethod") is None
    assert all(line.get("CostCenter") is None and line.get("CostUnit") is None for line in lines)
    assert header["DeliveryAddress"]  # the delivery address needs no table


# -- coupons as discount lines of their own (settings.discount_lines, default "separate") ----------

VAT_BY_RATE = {"NL:21": "2", "NL:9": "1", "BE:21": "2", "BE:6": "6", "DE:19": "19", "DE:7": "7", "0": "0"}
DISCOUNT_TABLES: dict[str, Any] = {"vat_codes": {"entries": VAT_BY_RATE}, "revenue_accounts": {"default": "8000"}}
CENT = Decimal("0.01")


def _checkout_orders(env: Env, coupon: str, count: int, seed: int) -> list[dict[str, Any]]:
    body = {"count": count, "status": "processing", "seed": seed, "coupon": coupon}
    ids = env.http.post(f"{env.woo.url}/sandbox/orders", json=body).raise_for_status().json()["orders"]
    placed = [env.shop.get_order(int(i)) for i in ids]
    skus = sorted({line["sku"] for order in placed for line in order["line_items"]})
    env.http.post(f"{env.exact.url}/sandbox/seed/items", json={"skus": skus}).raise_for_status()
    return placed


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(CENT)


@pytest.mark.parametrize("coupon", ["welkom10", "zomer5"])
@pytest.mark.parametrize(
    "env",
    [{"settings": {"document_type": d}, "tables": DISCOUNT_TABLES}
     for d in ("sales_order", "sales_invoice", "direct_invoice", "sales_entry")],
    indirect=True, ids=lambda p: p["settings"]["document_type"],
)  # fmt: skip
def test_a_coupon_is_a_discount_line_per_vat_rate_and_the_totals_are_the_shops(env: Env, coupon: str) -> None:
    document = env.rt.config.integrations[0].settings["document_type"]
    entry = document == "sales_entry"
    placed = _checkout_orders(env, coupon, count=8, seed=41)
    rates_seen: set[int] = set()
    for shop in placed:
        assert env.run(shop)["outcome"] == "created"
        path, key, line_path, _ = DOCUMENTS.get(document, DOCUMENTS["sales_invoice"]) if not entry else (
            "salesentry/SalesEntries", "EntryID", "salesentry/SalesEntryLines", "")
        [header] = [r for r in env.rows(path) if r.get("YourRef") == str(shop["number"])]
        lines = sorted((r for r in env.rows(line_path) if r.get(key) == header[key]), key=lambda r: r["LineNumber"])
        country = shop["shipping"]["country"] or shop["billing"]["country"]
        percent = {t["rate_id"]: t["rate_percent"] for t in shop["tax_lines"]}
        # the goods at their price before the coupon
        goods = lines[: len(shop["line_items"])]
        for booked, line in zip(goods, shop["line_items"], strict=True):
            assert _money(booked["AmountFC"]) == Decimal(line["subtotal"]), (booked, line)
            if entry:
                assert _money(booked["VATAmountFC"]) == Decimal(line["subtotal_tax"])
        # one discount line per VAT rate of the discounted lines, on that rate's VAT code
        wanted: dict[int, list[Decimal]] = {}
        for line in shop["line_items"]:
            rate = percent[line["taxes"][0]["id"]]
            amounts = wanted.setdefault(rate, [Decimal(0), Decimal(0)])
            amounts[0] += Decimal(line["subtotal"]) - Decimal(line["total"])
            amounts[1] += Decimal(line["subtotal_tax"]) - Decimal(line["total_tax"])
        discounts = [b for b in lines if "Discount" in str(b.get("Description"))]
        expected = {VAT_BY_RATE[f"{country}:{rate}"]: (-excl, -tax) for rate, (excl, tax) in wanted.items() if excl}
        got = {b["VATCode"]: (_money(b["AmountFC"]), _money(b["VATAmountFC"])) for b in discounts}
        if not entry:  # Exact computes an order's or invoice's VAT per line from the VAT code
            expected = {code: excl for code, (excl, _) in expected.items()}  # type: ignore[misc]
            got = {code: excl for code, (excl, _) in got.items()}  # type: ignore[misc]
        assert got == expected, shop["number"]
        assert all(f"Discount {coupon} (" in b["Description"] for b in discounts)
        rates_seen |= set(wanted)
        # the document's totals are the shop's, to the cent
        excl = sum((_money(b["AmountFC"]) for b in lines), Decimal(0))
        assert excl == Decimal(shop["total"]) - Decimal(shop["total_tax"]), shop["number"]
        vat = sum((_money(b.get("VATAmountFC") or 0) for b in lines), Decimal(0))
        if entry:  # Koppel books the shop's VAT amounts: excl., VAT and incl. are the shop's
            assert (_money(header["VATAmountFC"]), _money(header["AmountFC"])) == (
                Decimal(shop["total_tax"]), Decimal(shop["total"]))
        else:  # Exact rounds VAT per line from the net amount; this shop's prices include VAT
            assert abs(vat - Decimal(shop["total_tax"])) <= CENT * len(lines), (shop["number"], vat)
    assert len(rates_seen) >= 2  # the orders mix tax classes: goods at two VAT rates
