"""The Business Central connector against its sandbox over real HTTP (uvicorn): sign-in and its refusals,
documents booked header then lines through the orders flow, customers and items written with ETags,
categories and pictures, polling by lastModifiedDateTime, stock by inventory, and the sandbox's own rules."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import registry
from connectors.businesscentral.connector import BusinessCentralSettings, BusinessCentralSource, BusinessCentralTarget
from connectors.businesscentral.errors import BusinessCentralRequestError
from connectors.businesscentral.sandbox import BusinessCentralSandbox, SandboxConfig, create_sandbox
from connectors.contract import Connector, Gone
from gateway.config import System, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import AuthFailed, PermanentError
from gateway.model import Customer, Order, OrderLine, Product, ShippingLine
from gateway.stack import LiveServer, serve
from tests.contract.test_connectors import CanonicalSource
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

SECRET = "bc-test-secret"
CONFIG = SandboxConfig(client_secret=SECRET, page_size=3)


def png() -> bytes:
    """A one-pixel PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@dataclass
class BC:
    live: LiveServer
    sandbox: BusinessCentralSandbox
    http: httpx.Client
    rt: runtime.Runtime

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def company(self) -> str:
        return self.sandbox.company()

    def records(self, entity: str) -> list[dict[str, Any]]:
        return list(self.sandbox.store.records[self.company][entity].values())

    def seed(self, entity: str, *records: dict[str, Any]) -> dict[str, str]:
        answer = self.http.post(f"{self.url}/sandbox/seed", json={"entity": entity, "records": list(records)})
        return answer.raise_for_status().json()["ids"]  # type: ignore[no-any-return]

    def change(self, entity: str, record_id: str, **fields: Any) -> dict[str, Any]:
        body = {"entity": entity, "id": record_id, "fields": fields}
        return self.http.post(f"{self.url}/sandbox/change", json=body).raise_for_status().json()  # type: ignore[no-any-return]

    @property
    def target(self) -> BusinessCentralTarget:
        found = self.rt.target("bc")
        assert isinstance(found, BusinessCentralTarget)
        return found

    @property
    def source(self) -> BusinessCentralSource:
        found = self.rt.source("bc")
        assert isinstance(found, BusinessCentralSource)
        return found


def system_entry(url: str, **settings: Any) -> dict[str, Any]:
    return {"id": "bc", "kind": "businesscentral", "base_url": url, "credentials": {"client_secret": "env:BC_SECRET"},
            "settings": {"tenant": CONFIG.tenant, "client_id": CONFIG.client_id, "company": "CRONUS NL",
                         "login_url": url, **settings}}  # fmt: skip


def make_runtime(conn: redis.Redis, url: str, *, secret: str = SECRET, integrations: list[dict[str, Any]] | None = None,
                 **settings: Any) -> runtime.Runtime:  # fmt: skip
    config = parse_config(
        {"endpoints": [{"id": "canonical", "kind": "contract", "secret": "env:HOOK"}] if integrations else [],
         "systems": [system_entry(url, **settings)], "integrations": integrations or []},
        environ={"BC_SECRET": secret, "HOOK": "h"},
    )  # fmt: skip
    return runtime.Runtime(config=config, connection=conn)


@pytest.fixture
def bc(rconn: redis.Redis) -> Iterator[BC]:
    app = create_sandbox(CONFIG)
    live = serve(app, name="bc sandbox")
    rt = make_runtime(rconn, live.url)
    try:
        with httpx.Client(timeout=30) as http:
            yield BC(live, app.state.sandbox, http, rt)
    finally:
        rt.close()
        live.stop()


# -- sign-in -----------------------------------------------------------------------------------------------------


def test_a_wrong_secret_is_auth_failed_naming_the_setting(bc, rconn):
    rt = make_runtime(rconn, bc.url, secret="wrong")
    try:
        with pytest.raises(AuthFailed, match=r"AADSTS7000215\): the client secret is wrong: set credentials\.client_s"):
            rt.target("bc").find_items(["X"])
    finally:
        rt.close()


def test_an_unknown_tenant_names_settings_tenant(bc, rconn):
    rt = make_runtime(rconn, bc.url, tenant="nobody.onmicrosoft.com")
    try:
        with pytest.raises(AuthFailed, match=r"AADSTS90002\): the tenant does not exist: check settings.tenant"):
            rt.target("bc").find_items(["X"])
    finally:
        rt.close()


def test_an_expired_token_is_replaced_once_and_the_call_goes_through(bc):
    bc.target.find_items(["WARM"])
    requested = bc.sandbox.token_requests
    bc.sandbox.tokens.expire_all()
    assert bc.target.find_items(["NONE"]) == {}
    assert bc.sandbox.token_requests == requested + 1


def test_an_unknown_company_is_a_clear_error(bc, rconn):
    rt = make_runtime(rconn, bc.url, company="Nope BV")
    try:
        with pytest.raises(Exception, match=r"no company 'Nope BV' \(it has 'CRONUS NL'\)"):
            rt.target("bc").find_items(["X"])
    finally:
        rt.close()


def test_settings_are_checked_by_config_check():
    system = System.model_validate(
        {"id": "bc", "kind": "businesscentral", "settings": {"company": ""}, "credentials": {}},
        context={"environ": {}},
    )
    _, problems = BusinessCentralSettings.validate_system(system)
    assert "credentials.client_secret: required (env:NAME)" in problems
    assert any(p.startswith("settings.tenant:") for p in problems)
    assert any(p.startswith("settings.company:") for p in problems)


def test_the_secret_is_only_sent_over_https_or_to_this_machine():
    def problems(**fields: Any) -> list[str]:
        entry = {"id": "bc", "kind": "businesscentral", "credentials": {"client_secret": "env:S"},
                 "settings": {"tenant": "t", "client_id": "c", "company": "C"}}  # fmt: skip
        entry["settings"] |= fields.pop("settings", {})
        system = System.model_validate(entry | fields, context={"environ": {"S": "x"}})
        return BusinessCentralSettings.validate_system(system)[1]

    assert problems() == []
    assert problems(base_url="http://127.0.0.1:8083", settings={"login_url": "http://localhost:8083"}) == []
    assert problems(base_url="http://bc.example", settings={"login_url": "http://login.example"}) == [
        "settings.login_url: must be an https URL (plain http only to this machine, e.g. a sandbox)",
        "base_url: must be an https URL (plain http only to this machine, e.g. a sandbox)",
    ]


# -- documents through the orders flow ------------------------------------------------------------------------------


ORDER = Order(
    source="contract", id="o1", number="WEB-1001", status="processing", currency="EUR",
    customer=Customer(source="contract", email="anna@example.com", company_name="Anna BV",
                      contact={"first_name": "Anna", "last_name": "Smit"}),
    lines=[OrderLine(sku="desk-1", name="Desk", quantity="2", unit_price_excl="100.00", net_unit_price_excl="100.00",
                     total_excl="200.00", tax_total="42.00", total_incl="242.00", tax_rate="21"),
           OrderLine(sku="CHAIR-2", name="Chair", quantity="1", unit_price_excl="50.00", net_unit_price_excl="50.00",
                     total_excl="50.00", tax_total="10.50", total_incl="60.50", tax_rate="21")],
    shipping_lines=[ShippingLine(method_title="PostNL", total_excl="5.00", tax_total="1.05", total_incl="6.05",
                                 tax_rate="21")],
)  # fmt: skip


@pytest.fixture
def canonical_source() -> Iterator[None]:
    registry.register(Connector(kind="contract", title="Contract", source=CanonicalSource,
                                handler="tests.contract.test_connectors:no_webhooks"))  # fmt: skip
    yield
    registry.unregister("contract")


def book(bc: BC, rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch, document: str, order: Order = ORDER) -> Any:
    rt = make_runtime(rconn, bc.url, integrations=[{
        "id": f"to-bc-{document}", "source": "canonical", "target": "bc", "flows": ["orders"],
        "settings": {"order_mode": "book", "document_type": document},
    }])  # fmt: skip
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        record = order.model_dump(mode="json", exclude_computed_fields=True)
        event = Event("order.updated", "order", "1", f"k-{uuid.uuid4()}", record)
        return run_event(rt, rt.config.integrations[0], Envelope.wrap(event, source="contract", endpoint="canonical"))
    finally:
        rt.close()


@pytest.mark.parametrize(("document", "entity", "lines"),
                         [("sales_order", "salesOrders", "salesOrderLines"),
                          ("sales_invoice", "salesInvoices", "salesInvoiceLines")])  # fmt: skip
def test_an_order_is_booked_header_then_lines_with_totals_once(bc, rconn, monkeypatch, canonical_source, document,
                                                               entity, lines):  # fmt: skip
    bc.seed("items", {"number": "DESK-1", "displayName": "Desk"}, {"number": "CHAIR-2", "displayName": "Chair"},
            {"number": "SHIPPING", "displayName": "Shipping", "type": "Service"})  # fmt: skip
    first = book(bc, rconn, monkeypatch, document)
    again = book(bc, rconn, monkeypatch, document)
    assert first.outcome == "created" and again.outcome == "skipped"
    [booked] = bc.records(entity)
    assert booked["id"] == first.target_id and booked["externalDocumentNumber"] == "WEB-1001"
    assert [(line["lineObjectNumber"], line["quantity"], line["unitPrice"]) for line in booked[lines]] == [
        ("DESK-1", 2, 100), ("CHAIR-2", 1, 50), ("SHIPPING", 1, 5)]
    assert booked["totalAmountExcludingTax"] == 255 and booked["totalAmountIncludingTax"] == 308.55
    [customer] = bc.records("customers")
    assert booked["customerId"] == customer["id"] and customer["email"] == "anna@example.com"
    assert bc.target.find_order(document, "WEB-1001") == first.target_id


GROSS_AND_NET = ORDER.model_copy(update={"number": "WEB-1005", "lines": [
    OrderLine(sku="DESK-1", name="Desk", quantity="2", unit_price_excl="99.99", net_unit_price_excl="99.99",
              unit_price_incl="120.99", net_unit_price_incl="120.99", total_excl="199.98", tax_total="42.00",
              total_incl="241.98", tax_rate="21"),
    OrderLine(sku="CHAIR-2", name="Chair", quantity="3", unit_price_excl="45.8716", net_unit_price_excl="45.8716",
              unit_price_incl="50.00", net_unit_price_incl="50.00", total_excl="137.61", tax_total="12.39",
              total_incl="150.00", tax_rate="9")],
    "total_excl": Decimal("342.59"), "tax_total": Decimal("55.44"), "total_incl": Decimal("398.03")})  # fmt: skip
"""A shop's order giving prices both excl. and incl. VAT (the chair at 9%), shipping 5.00 + 1.05."""


@pytest.mark.parametrize("incl", [False, True], ids=["customer-excl-vat", "customer-incl-vat"])
def test_the_customers_prices_including_vat_decide_the_unit_prices_and_the_document_totals_the_order(
    bc, rconn, monkeypatch, canonical_source, incl
):
    """BC sets a document's pricesIncludeTax from the customer card (read-only through the API): the connector
    sends each line's price on that basis, so BC's total on that basis is the order's to the cent; the other
    side is BC's VAT, computed per rate on the rate's total (the shop computed it per line from its gross
    prices): within a cent per rate."""
    ids = bc.seed("items", {"number": "DESK-1"}, {"number": "CHAIR-2"}, {"number": "SHIPPING", "type": "Service"})
    bc.change("items", ids["CHAIR-2"], _taxPercent=9)  # the chair's VAT posting setup in BC
    bc.seed("customers", {"number": "ANNA", "displayName": "Anna BV", "email": "anna@example.com",
                          "pricesIncludingVat": incl})  # fmt: skip
    result = book(bc, rconn, monkeypatch, "sales_order", GROSS_AND_NET)
    assert result.outcome == "created"
    [booked] = bc.records("salesOrders")
    assert booked["pricesIncludeTax"] is incl
    prices = [120.99, 50, 6.05] if incl else [99.99, 45.8716, 5]
    assert [line["unitPrice"] for line in booked["salesOrderLines"]] == prices
    excl = (Decimal(str(booked["totalAmountExcludingTax"])), GROSS_AND_NET.total_excl)
    gross = (Decimal(str(booked["totalAmountIncludingTax"])), GROSS_AND_NET.total_incl)
    (on_basis, paid), (computed, source) = (gross, excl) if incl else (excl, gross)
    assert on_basis == paid
    assert source is not None and abs(computed - source) <= Decimal("0.02")  # two VAT rates


def test_an_order_priced_incl_vat_only_fails_for_a_customer_booking_excl_vat_naming_the_setting(
    bc, rconn, monkeypatch, canonical_source
):
    bc.seed("items", {"number": "DESK-1"})
    bc.seed("customers", {"displayName": "Anna BV", "email": "anna@example.com"})  # Prices Including VAT: off
    till = ORDER.model_copy(update={"number": "TILL-9", "shipping_lines": [], "lines": [
        OrderLine(sku="DESK-1", name="Desk", quantity="1", unit_price_incl="121.00", net_unit_price_incl="121.00",
                  total_incl="121.00")]})  # fmt: skip
    named = (r"salesOrderLines\[1\] \(Desk\): customer \d+ has Prices Including VAT off, so the line needs its unit "
             r"price excl\. VAT, and the order gives it only incl\. VAT: switch on Prices Including VAT on the "
             r"customer card in Business Central \(or in its customer template\), or give the lines a price excl\. VAT "
             r"\(unitPrice in the mapping\)")  # fmt: skip
    with pytest.raises(PermanentError, match=named):
        book(bc, rconn, monkeypatch, "sales_order", till)
    assert bc.records("salesOrders") == []  # the header is deleted again


def test_the_sandbox_refuses_pricesincludetax_on_a_document_as_read_only(bc):
    ids = bc.seed("customers", {"displayName": "Anna BV"})
    client = bc.target.bc
    with pytest.raises(BusinessCentralRequestError, match="The property 'pricesIncludeTax' is read-only") as refused:
        client.create("salesOrders", {"customerId": next(iter(ids.values())), "pricesIncludeTax": True})
    assert (refused.value.status, refused.value.code) == (400, "BadRequest")
    assert bc.records("salesOrders") == []
    order = client.create("salesOrders", {"customerId": next(iter(ids.values()))})
    with pytest.raises(BusinessCentralRequestError, match="read-only"):
        client.patch("salesOrders", order["id"], {"pricesIncludeTax": True}, etag=order["@odata.etag"])
    assert order["pricesIncludeTax"] is False and bc.records("salesOrders")[0]["pricesIncludeTax"] is False


def test_a_mapping_sending_pricesincludetax_fails_before_anything_is_written(bc):
    ids = bc.seed("customers", {"displayName": "Anna BV"})
    payload = {"externalDocumentNumber": "WEB-4", "customerId": next(iter(ids.values())), "pricesIncludeTax": True,
               "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "DESK-1", "quantity": 1, "unitPrice": 10}]}
    with pytest.raises(PermanentError, match="the mapping sends pricesIncludeTax, which Business Central sets from the "
                                             "customer's Prices Including VAT"):
        bc.target.create_order("sales_order", payload)
    assert bc.records("salesOrders") == []


def test_the_companys_own_currency_is_empty_and_a_foreign_one_named(bc, rconn, monkeypatch, canonical_source):
    bc.seed("items", {"number": "DESK-1"}, {"number": "CHAIR-2"}, {"number": "SHIPPING", "type": "Service"})
    book(bc, rconn, monkeypatch, "sales_order")
    book(bc, rconn, monkeypatch, "sales_order", ORDER.model_copy(update={"number": "WEB-1002", "currency": "GBP"}))
    assert sorted((o["externalDocumentNumber"], o["currencyCode"]) for o in bc.records("salesOrders")) == [
        ("WEB-1001", ""), ("WEB-1002", "GBP")]


def test_a_missing_item_fails_before_anything_is_written(bc, rconn, monkeypatch, canonical_source):
    bc.seed("items", {"number": "DESK-1"}, {"number": "SHIPPING"})
    with pytest.raises(Exception, match="CHAIR-2"):
        book(bc, rconn, monkeypatch, "sales_order")
    assert bc.records("salesOrders") == []


def test_a_refused_line_deletes_the_header_and_names_the_line(bc):
    ids = bc.seed("customers", {"displayName": "Anna BV", "email": "anna@example.com"})
    payload = {"externalDocumentNumber": "WEB-2", "customerId": next(iter(ids.values())),
               "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "NOPE", "quantity": 1}]}  # fmt: skip
    with pytest.raises(BusinessCentralRequestError, match=r"salesOrderLines\[1\] \(NOPE\): .*The Item does not exist"):
        bc.target.create_order("sales_order", payload)
    assert bc.records("salesOrders") == []


def test_a_header_left_without_lines_is_removed_by_the_lookup(bc):
    ids = bc.seed("customers", {"displayName": "Anna BV"})
    bc.seed("salesOrders", {"externalDocumentNumber": "WEB-3", "customerId": next(iter(ids.values()))})
    assert bc.target.find_order("sales_order", "WEB-3") is None
    assert bc.records("salesOrders") == []


# -- customers and items ------------------------------------------------------------------------------------------


def test_customers_are_found_created_and_updated_with_etags(bc):
    target = bc.target
    created = target.create_customer({"displayName": "Bob", "type": "Person", "email": "bob@example.com"})
    number = bc.records("customers")[0]["number"]
    assert target.find_customer("bob@example.com") == created
    assert target.find_customer_by_code(number) == created and target.find_customer_by_code("NOPE") is None
    bc.change("customers", created, phoneNumber="+31 20 000")  # someone edits it in BC: the ETag moves
    target.update_customer(created, {"city": "Utrecht"})
    [record] = bc.records("customers")
    assert record["city"] == "Utrecht" and record["phoneNumber"] == "+31 20 000"


def test_a_customer_sync_writes_only_what_the_source_changed(bc):
    target = bc.target
    created = target.create_customer({"displayName": "Bob", "email": "bob@example.com", "city": "Delft"})
    bc.change("customers", created, phoneNumber="+31 15 000")  # edited in BC
    writes = bc.sandbox.counters["PATCH customers({id})"]
    payload = {"displayName": "Bob", "email": "bob@example.com", "city": "Leiden", "phoneNumber": ""}
    assert target.sync_customer(created, payload, ["city"]) is True
    [record] = bc.records("customers")
    assert (record["city"], record["phoneNumber"]) == ("Leiden", "+31 15 000")
    assert target.sync_customer(created, payload, ["city"]) is False  # nothing differs: no write
    assert target.sync_customer(created, {"displayName": "Bob B"}, None) is True  # unknown history: compared
    assert bc.records("customers")[0]["displayName"] == "Bob B"
    assert bc.sandbox.counters["PATCH customers({id})"] == writes + 2


def test_an_item_is_created_with_its_category_and_picture(bc):
    image = png()

    async def serve_image(request: Request) -> Response:
        return Response(image, media_type="image/png")

    images = serve(Starlette(routes=[Route("/desk.png", serve_image)]), name="images")
    try:
        target = bc.target
        payload = {"number": "DESK-9", "displayName": "Desk", "unitPrice": 99.5, "picture": f"{images.url}/desk.png",
                   "itemCategory": {"code": "tables", "displayName": "Tables"}}  # fmt: skip
        item_id = target.create_product(payload)
        assert target.find_items(["desk-9"]) == {"desk-9": item_id}
        target.update_product(item_id, {"displayName": "Desk XL", "picture": f"{images.url}/desk.png",
                                        "itemCategory": {"code": "tables"}})  # fmt: skip
    finally:
        images.stop()
    [item] = bc.records("items")
    [category] = bc.records("itemCategories")
    assert (item["displayName"], item["itemCategoryCode"], category["displayName"]) == ("Desk XL", "TABLES", "Tables")
    assert bc.sandbox.store.pictures[(bc.company, item_id)] == (image, "image/png")
    assert bc.sandbox.counters["PATCH items({id})/picture/pictureContent"] == 1  # the same image not sent twice
    patches = bc.sandbox.counters["PATCH items({id})"]
    bc.target.update_product(item_id, {"displayName": "Desk XL", "unitPrice": 99.5})
    assert bc.sandbox.counters["PATCH items({id})"] == patches  # nothing differs: nothing written


def test_a_product_flows_in_as_an_item_with_category_and_picture(bc, rconn, monkeypatch, canonical_source):
    image = png()

    async def serve_image(request: Request) -> Response:
        return Response(image, media_type="image/png")

    images = serve(Starlette(routes=[Route("/lamp.png", serve_image)]), name="images")
    product = Product(source="contract", id="p9", sku="lamp-9", name="Lamp", price_excl="19.95",
                      ean="5012345678900", categories=["Lighting"], category_slugs=["lighting"],
                      images=[f"{images.url}/lamp.png"])  # fmt: skip
    rt = make_runtime(rconn, bc.url, integrations=[{"id": "to-bc", "source": "canonical", "target": "bc",
                                                    "flows": ["products"]}])  # fmt: skip
    monkeypatch.setattr(runtime, "_runtime", rt)
    try:
        event = Event("product.updated", "product", "9", f"k-{uuid.uuid4()}", product.model_dump(mode="json"))
        result = run_event(rt, rt.config.integrations[0], Envelope.wrap(event, source="contract", endpoint="canonical"))
    finally:
        rt.close()
        images.stop()
    assert result.outcome == "created"
    [item] = bc.records("items")
    assert (item["number"], item["displayName"], item["unitPrice"], item["gtin"]) == ("LAMP-9", "Lamp", 19.95,
                                                                                     "5012345678900")  # fmt: skip
    assert item["itemCategoryCode"] == "LIGHTING" and bc.records("itemCategories")[0]["displayName"] == "Lighting"
    assert bc.sandbox.store.pictures[(bc.company, item["id"])] == (image, "image/png")


def test_stock_is_not_a_target_capability(bc):
    assert "stock" not in BusinessCentralTarget.writes
    with pytest.raises(Exception, match="cannot read stock"):
        bc.target.find_stock("DESK-1")


# -- reading and polling -------------------------------------------------------------------------------------------


def test_a_polled_stream_pages_resumes_and_sees_a_users_change(bc):
    ids = bc.seed("customers", *({"displayName": f"C{n}", "email": f"c{n}@example.com"} for n in range(5)))
    source = bc.source
    pages = list(source.changes("customers", None))
    assert len(pages) == 2 and sum(len(changes) for changes, _ in pages) == 5  # pages of 3
    cursor = pages[-1][1]
    again = [c.delivery_key for changes, _ in source.changes("customers", cursor) for c in changes]
    seen = {c.delivery_key for changes, _ in pages for c in changes}
    assert set(again) <= seen  # the overlap reads the last ones again, with the same keys
    changed = bc.change("customers", ids["10002"], email="new@example.com")
    later = [c for changes, _ in source.changes("customers", cursor) for c in changes if c.delivery_key not in seen]
    assert [(c.resource_id, c.record["email"]) for c in later] == [(changed["id"], "new@example.com")]
    assert source.version("customers", later[0].record) == f"{changed['id']}:{changed['lastModifiedDateTime']}"


def test_polled_orders_carry_their_lines_and_customer(bc):
    customer = next(iter(bc.seed("customers", {"displayName": "Anna", "type": "Person", "email": "a@x.nl"}).values()))
    bc.seed("items", {"number": "DESK-1", "displayName": "Desk", "unitPrice": 100})
    order = next(iter(bc.seed("salesOrders", {"customerId": customer}).values()))
    bc.sandbox.store.add_line(bc.company, "salesOrders", order, {"lineObjectNumber": "DESK-1", "quantity": 2})
    [change] = [c for changes, _ in bc.source.changes("salesOrders", None) for c in changes]
    normalised = bc.source.normalise("orders", change.record)
    assert isinstance(normalised, Order)
    assert [(line.sku, line.quantity) for line in normalised.lines] == [("DESK-1", 2)]
    assert normalised.customer.kind == "person" and normalised.customer.email == "a@x.nl"


def test_a_seeded_document_is_numbered_from_its_series_with_its_lines_and_listed_as_stored(bc):
    customer = next(iter(bc.seed("customers", {"displayName": "Anna", "email": "a@x.nl"}).values()))
    bc.seed("items", {"number": "DESK-1", "displayName": "Desk", "unitPrice": 100})
    ids = bc.seed("salesOrders", {"customerId": customer, "salesOrderLines": [
        {"lineType": "Item", "lineObjectNumber": "DESK-1", "quantity": 2}]}, {"customerId": customer})  # fmt: skip
    assert list(ids) == ["S-ORD101001", "S-ORD101002"]
    listed = bc.http.get(f"{bc.url}/sandbox/records", params={"entity": "salesOrders"}).raise_for_status().json()
    first, second = listed["records"]
    assert [(line["lineObjectNumber"], line["quantity"]) for line in first["salesOrderLines"]] == [("DESK-1", 2)]
    assert first["totalAmountExcludingTax"] == 200 and second.get("salesOrderLines", []) == []
    with pytest.raises(httpx.HTTPStatusError):  # a line of an item BC does not hold: refused, as BC does
        bc.seed("salesOrders", {"customerId": customer, "salesOrderLines": [{"lineObjectNumber": "NOPE"}]})


def test_a_sales_order_notification_is_read_with_its_lines_and_customer(bc):
    customer = next(iter(bc.seed("customers", {"displayName": "Adatum", "email": "a@adatum.example"}).values()))
    bc.seed("items", {"number": "DESK-1", "unitPrice": 100})
    order = next(iter(bc.seed("salesOrders", {"customerId": customer, "externalDocumentNumber": "PO-7"}).values()))
    bc.sandbox.store.add_line(bc.company, "salesOrders", order, {"lineObjectNumber": "DESK-1", "quantity": 3})
    event = Event("salesOrders.updated", "salesOrders", order, f"k-{uuid.uuid4()}", {"changeType": "updated"})
    record = bc.source.read(Envelope.wrap(event, source="businesscentral", endpoint="bc"), "orders")
    normalised = bc.source.normalise("orders", record)
    assert isinstance(normalised, Order) and normalised.customer.company_name == "Adatum"
    assert [(line.sku, line.quantity) for line in normalised.lines] == [("DESK-1", 3)]
    assert normalised.total_excl == 300


def test_the_stock_stream_reports_inventory_changes_bc_does_not_timestamp(bc):
    ids = bc.seed("items", {"number": "A"}, {"number": "B"}, {"number": "SVC", "type": "Service"})
    first = [c.record["number"] for changes, _ in bc.source.changes("itemInventory", None) for c in changes]
    assert sorted(first) == ["A", "B"]
    before = bc.records("items")[1]["lastModifiedDateTime"]
    bc.change("items", ids["B"], inventory=7)
    assert bc.records("items")[1]["lastModifiedDateTime"] == before  # a posting does not move it
    later = [c for changes, _ in bc.source.changes("itemInventory", "x") for c in changes]
    assert [(c.record["number"], c.record["inventory"]) for c in later] == [("B", 7)]
    stock = bc.source.normalise("stock", later[0].record)
    assert stock.sku == "B" and stock.available == 7


def test_read_follows_a_notification_and_a_deleted_record_is_gone(bc):
    ids = bc.seed("customers", {"displayName": "Anna"})
    record_id = next(iter(ids.values()))

    def envelope(change: str, resource_id: str) -> Envelope:
        event = Event(f"customers.{change}", "customers", resource_id, f"k-{uuid.uuid4()}", {"changeType": change})
        return Envelope.wrap(event, source="businesscentral", endpoint="bc")

    assert bc.source.read(envelope("updated", record_id), "customers")["displayName"] == "Anna"
    with pytest.raises(Gone, match="was deleted"):
        bc.source.read(envelope("deleted", record_id), "customers")
    with pytest.raises(Gone, match="no longer exists"):
        bc.source.read(envelope("updated", str(uuid.uuid4())), "customers")
    collection = Event("customers.collection", "customers", None, "k-c", {"changeType": "collection"})
    with pytest.raises(PermanentError, match=r"naming no record, and no time to read changes since"):
        bc.source.read(Envelope.wrap(collection, source="businesscentral", endpoint="bc"), "customers")
    assert bc.source.collection(Envelope.wrap(collection, source="businesscentral", endpoint="bc")) is None


def test_a_collection_is_the_records_modified_since_its_filters_time(bc):
    bc.seed("customers", {"displayName": "Before"})
    since = bc.records("customers")[0]["lastModifiedDateTime"]
    ids = bc.seed("customers", {"displayName": "After"}, {"displayName": "Later"})
    event = Event("customers.collection", "customers", None, "k-c", {"changeType": "collection"}, since=since)
    pages = bc.source.collection(Envelope.wrap(event, source="businesscentral", endpoint="bc"))
    assert pages is not None
    changes = [change for page in pages for change in page]
    assert sorted(c.resource_id for c in changes) == sorted(ids.values())
    assert all(c.delivery_key == f"bc:customers:{c.resource_id}:{c.record['lastModifiedDateTime']}" for c in changes)


# -- the sandbox's own rules ----------------------------------------------------------------------------------------


def token(bc: BC) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_id": CONFIG.client_id, "client_secret": SECRET,
            "scope": "https://api.businesscentral.dynamics.com/.default"}  # fmt: skip
    answer = bc.http.post(f"{bc.url}/{CONFIG.tenant}/oauth2/v2.0/token", data=form).raise_for_status().json()
    return {"Authorization": f"Bearer {answer['access_token']}"}


def test_the_sandbox_wants_if_match_and_a_fresh_etag(bc):
    ids = bc.seed("customers", {"displayName": "Anna"})
    url = f"{bc.url}/v2.0/production/api/v2.0/companies({bc.company})/customers({next(iter(ids.values()))})"
    auth = token(bc)
    record = bc.http.get(url, headers=auth).json()
    missing = bc.http.patch(url, json={"city": "X"}, headers=auth)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "BadRequest_InvalidToken"
    ok = bc.http.patch(url, json={"city": "X"}, headers={**auth, "If-Match": record["@odata.etag"]})
    assert ok.status_code == 200 and ok.json()["@odata.etag"] != record["@odata.etag"]
    stale = bc.http.patch(url, json={"city": "Y"}, headers={**auth, "If-Match": record["@odata.etag"]})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "Request_EntityChanged"
    assert ok.json()["lastModifiedDateTime"] > record["lastModifiedDateTime"]


def test_injected_faults_answer_in_bcs_shape(bc):
    bc.http.post(f"{bc.url}/sandbox/fail", json={"status": 429, "times": 1, "retry_after": 1}).raise_for_status()
    answer = bc.http.get(f"{bc.url}/v2.0/production/api/v2.0/companies", headers=token(bc))
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "Application_TooManyRequests"


def test_lookups_fit_how_bc_stores_text(bc):
    ids = bc.seed("customers", {"displayName": "Lower", "email": "lower@example.com"},
                  {"displayName": "Mixed", "email": "Mixed@Example.com"})  # fmt: skip
    lower, mixed = ids.values()
    assert bc.target.find_customer("Lower@Example.com") == lower  # asked in lower case too
    assert bc.target.find_customer("Mixed@Example.com") == mixed
    customer = next(iter(ids.values()))
    bc.seed("items", {"number": "desk-1"})
    lines = [{"lineObjectNumber": "DESK-1", "quantity": 1}]
    order_id = bc.target.create_order("sales_order", {"externalDocumentNumber": "web-77", "customerId": customer,
                                                      "salesOrderLines": lines})  # fmt: skip
    assert bc.records("salesOrders")[0]["externalDocumentNumber"] == "WEB-77"  # a Code field
    assert bc.target.find_order("sales_order", "web-77") == order_id
    assert bc.target.find_items(["Desk-1"]) == {"Desk-1": bc.records("items")[0]["id"]}
