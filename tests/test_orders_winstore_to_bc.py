"""Orders and customers Winstore → Business Central, and order statuses Business Central → Winstore: orders rung
up in Winstore (at the till, or in another channel) polled through the assumed `GetOrdersByDate` [U], booked as
sales orders or sales invoices; customers polled through `GetCustomerDataChangesByDate` [U]; a released order's
status written back through `PostOrderStatus` [U]. Both sandboxes over real HTTP (uvicorn), real Redis, the real
poller and the generic flows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from connectors.businesscentral.sandbox import BusinessCentralSandbox
from gateway.activity import ActivityLog
from gateway.config import Config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from gateway.stack import LiveServer
from tests import pairs_support as pairs
from tests.test_businesscentral_sandbox import CONFIG
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

ARTICLES = [
    {"ArtNr": "KOP-TASSE-BL", "Description": "Tasse blauw", "SalesPrice": "12.10", "VatPercentage": "21",
     "stock": {"1": 20}},
    {"ArtNr": "KOP-KOF-1KG", "Description": "Koffie 1 kg", "SalesPrice": "21.80", "VatPercentage": "9",
     "stock": {"1": 10}},
    {"ArtNr": "WS-ONLY", "Description": "Alleen in Winstore", "SalesPrice": "5.00", "VatPercentage": "21"},
]  # fmt: skip
TO_BC, BACK, CUSTOMERS = "winstore-to-bc", "bc-to-winstore", "winstore-customers-to-bc"
SETUP_TABLES = {
    "tax_areas": {"default": "EXPORT", "entries": {"NL": "DOMESTIC", "BE": "EU"}},
    "payment_terms": {"entries": {"NL": "30 DAYS"}},
}
ANNA = {"email": "anna@example.com", "invoice_add": {"fname": "Anna", "lname": "Smit", "street": "Kade",
        "streetnr": "1", "zip": "2611 AA", "city": "Delft", "countryISO": "NL"}}  # fmt: skip


def make_config(bc_url: str, ws_url: str, settings: dict[str, Any]) -> Config:
    """`settings` of winstore-to-bc; with `back_source` "endpoint", bc-to-winstore is fed by BC's webhooks (an
    endpoint linked to the system) instead of polling the system; `back_mode` its order_mode (default status)."""
    settings = dict(settings)
    hooks = settings.pop("back_source", None) == "endpoint"
    back_mode = settings.pop("back_mode", "status")
    endpoints = [{"id": "bc-hooks", "kind": "businesscentral", "secret": "env:BC_HOOK_SECRET", "system": "bc"}]
    return pairs.pair_config(
        [pairs.bc_system(bc_url), pairs.winstore_system(ws_url, branch=1, channel="webshop")],
        [
            {"id": TO_BC, "source": "winstore", "target": "bc", "flows": ["orders"],
             "settings": {"document_type": "sales_order"} | settings},
            {"id": BACK, "source": "bc-hooks" if hooks else "bc", "target": "winstore", "flows": ["orders"],
             "settings": {"order_mode": back_mode},
             "tables": {"order_statuses": {"entries": {"released": "2"}}}},
            {"id": CUSTOMERS, "source": "winstore", "target": "bc", "flows": ["customers"],
             "tables": SETUP_TABLES},
        ],
        endpoints if hooks else None,
    )  # fmt: skip


@dataclass
class Env:
    bc_live: LiveServer
    winstore: LiveServer
    bc: BusinessCentralSandbox
    http: httpx.Client
    conn: redis.Redis
    rt: runtime.Runtime

    # -- Winstore, as its users change it ----------------------------------------------------------------

    def ring_up(self, *lines: tuple[str, int], **order: Any) -> str:
        """An order made in Winstore (at the till unless `channel` says otherwise); its ordernr."""
        positions = [{"ArtNr": sku, "amount": amount} for sku, amount in lines]
        body = {"orders": [{"positions": positions} | order]}
        answer = self.http.post(f"{self.winstore.url}/sandbox/orders/ring-up", json=body).raise_for_status()
        return str(answer.json()["orders"][0]["ordernr"])

    def set_status(self, number: str, code: str) -> None:
        body = {"ordernr": number, "statuscode": code}
        self.http.post(f"{self.winstore.url}/sandbox/orders/status", json=body).raise_for_status()

    def advance(self, seconds: int) -> None:
        self.http.post(f"{self.winstore.url}/sandbox/clock", json={"advance": seconds}).raise_for_status()

    def customer(self, **fields: Any) -> int:
        answer = self.http.post(f"{self.winstore.url}/sandbox/customers", json={"customers": [fields]})
        return int(answer.raise_for_status().json()["customers"][0])

    def article_keys(self) -> dict[str, str]:
        return pairs.winstore_article_keys(self.http, self.winstore)

    def winstore_orders(self) -> dict[str, dict[str, Any]]:
        listed = self.http.get(f"{self.winstore.url}/sandbox/orders").raise_for_status().json()["orders"]
        return {o["ordernr"]: o for o in listed}

    # -- Business Central -----------------------------------------------------------------------------------

    @property
    def company(self) -> str:
        return self.bc.company()

    def records(self, entity: str) -> list[dict[str, Any]]:
        return list(self.bc.store.records[self.company][entity].values())

    def seed(self, entity: str, *records: dict[str, Any]) -> dict[str, str]:
        answer = self.http.post(f"{self.bc_live.url}/sandbox/seed", json={"entity": entity, "records": list(records)})
        return answer.raise_for_status().json()["ids"]  # type: ignore[no-any-return]

    def change(self, entity: str, record_id: str, **fields: Any) -> None:
        body = {"entity": entity, "id": record_id, "fields": fields}
        self.http.post(f"{self.bc_live.url}/sandbox/change", json=body).raise_for_status()

    # -- Koppel -------------------------------------------------------------------------------------------

    def process(self, system: str, stream: str, integration: str) -> list[dict[str, Any]]:
        """Poll one stream (the real poller job), then run every queued event; `integration`'s results."""
        return pairs.run_polled(self.conn, self.rt, system, stream, integration, reached_only=True)

    def orders(self) -> list[dict[str, Any]]:
        return self.process("winstore", "orders", TO_BC)

    def run(self, number: str) -> dict[str, Any]:
        """The Winstore order `number` as read now, run as a replayed event (errors raised, not recorded)."""
        changes = [c for page, _ in self.rt.source("winstore").changes("orders", None) for c in page]
        [change] = [c for c in changes if c.resource_id == number]
        event = Event("order.sync", "order", number, f"k{uuid.uuid4()}", change.record)
        envelope = Envelope.wrap(event, source="winstore", endpoint="winstore")
        integration = next(i for i in self.rt.config.integrations if i.id == TO_BC)
        return run_event(self.rt, integration, envelope).as_dict()


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    settings = getattr(request, "param", {})
    with (
        pairs.bc_served(page_size=CONFIG.page_size) as (bc_live, bc),
        pairs.winstore_served(ARTICLES) as winstore,
        httpx.Client(timeout=30) as http,
        pairs.installed(make_config(bc_live.url, winstore.url, settings), rconn, monkeypatch) as rt,
    ):
        env = Env(bc_live, winstore, bc, http, rconn, rt)
        ids = env.seed("items", {"number": "KOP-TASSE-BL", "displayName": "Tasse blauw"},
                       {"number": "KOP-KOF-1KG", "displayName": "Koffie 1 kg"})  # fmt: skip
        env.change("items", ids["KOP-KOF-1KG"], _taxPercent=9)  # its VAT posting setup in BC: the low rate
        yield env


def lines_of(document: dict[str, Any], entity: str) -> list[tuple[str, Decimal, Decimal]]:
    key = "salesOrderLines" if entity == "salesOrders" else "salesInvoiceLines"
    return [(line["lineObjectNumber"], Decimal(str(line["quantity"])), Decimal(str(line["unitPrice"])))
            for line in document[key]]  # fmt: skip


# -- orders ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "entity"), [({"document_type": "sales_order"}, "salesOrders"),
                                             ({"document_type": "sales_invoice"}, "salesInvoices")],
                         indirect=["env"])  # fmt: skip
def test_an_order_rung_up_in_winstore_is_booked_once_with_its_customer_and_lines(env, entity):
    number = env.ring_up(("KOP-TASSE-BL", 2), ("KOP-KOF-1KG", 1), **ANNA)
    [result] = env.orders()
    assert (result["outcome"], result["number"], result["account"]) == ("created", number, "created"), result
    [document] = env.records(entity)
    assert document["id"] == result["target_id"] and document["externalDocumentNumber"] == number
    # a new customer books excl. VAT (the template's Prices Including VAT, off): the till's prices less VAT
    assert document["pricesIncludeTax"] is False
    assert lines_of(document, entity) == [("KOP-TASSE-BL", 2, Decimal("10.00")), ("KOP-KOF-1KG", 1, Decimal("20.00"))]
    assert Decimal(str(document["totalAmountIncludingTax"])) == Decimal(env.winstore_orders()[number]["total"])
    [customer] = env.records("customers")
    assert document["customerId"] == customer["id"]
    assert (customer["type"], customer["displayName"], customer["email"]) == ("Person", "Anna Smit", "anna@example.com")
    assert (customer["addressLine1"], customer["postalCode"], customer["city"]) == ("Kade 1", "2611 AA", "Delft")
    env.advance(60)
    env.set_status(number, "2")  # saved again in Winstore (its change date moves): polled again, skipped by the ledger
    [again] = env.orders()
    assert (again["outcome"], again["target_id"], again["calls"]) == ("skipped", result["target_id"], 0), again
    assert len(env.records(entity)) == 1


@pytest.mark.parametrize("incl", [False, True], ids=["customer-excl-vat", "customer-incl-vat"])
def test_a_customer_with_prices_including_vat_gets_the_tills_prices_and_the_document_totals_the_order(env, incl):
    """BC sets the document's pricesIncludeTax from the customer card (read-only through the API): Koppel sends
    the unit prices on that basis, and BC's document totals what was paid at the till either way."""
    env.seed("customers", {"number": "ANNA", "displayName": "Anna Smit", "email": "anna@example.com",
                           "pricesIncludingVat": incl})  # fmt: skip
    number = env.ring_up(("KOP-TASSE-BL", 2), ("KOP-KOF-1KG", 1), **ANNA)
    [result] = env.orders()
    assert (result["outcome"], result["account"]) == ("created", "updated"), result
    [document] = env.records("salesOrders")
    assert document["pricesIncludeTax"] is incl
    prices = ("12.10", "21.80") if incl else ("10.00", "20.00")
    assert lines_of(document, "salesOrders") == [("KOP-TASSE-BL", 2, Decimal(prices[0])),
                                                 ("KOP-KOF-1KG", 1, Decimal(prices[1]))]  # fmt: skip
    paid = Decimal(env.winstore_orders()[number]["total"])
    assert paid == Decimal("46.00")
    assert Decimal(str(document["totalAmountIncludingTax"])) == paid
    assert Decimal(str(document["totalAmountExcludingTax"])) == Decimal("40.00")


@pytest.mark.parametrize("incl", [False, True], ids=["customer-excl-vat", "customer-incl-vat"])
def test_a_reduction_at_the_till_is_a_discount_line_on_the_discount_item(env, incl):
    env.seed("items", {"number": "DISCOUNT", "displayName": "Korting", "type": "Service"})
    env.seed("customers", {"number": "ANNA", "displayName": "Anna Smit", "email": "anna@example.com",
                           "pricesIncludingVat": incl})  # fmt: skip
    positions = [{"ArtNr": "KOP-TASSE-BL", "amount": 2, "reduction": "2.42"}, {"ArtNr": "KOP-KOF-1KG", "amount": 1}]
    answer = env.http.post(f"{env.winstore.url}/sandbox/orders/ring-up",
                           json={"orders": [{"positions": positions} | ANNA]}).raise_for_status()  # fmt: skip
    number = str(answer.json()["orders"][0]["ordernr"])
    [result] = env.orders()
    assert result["outcome"] == "created", result
    [document] = env.records("salesOrders")
    prices = ("12.10", "21.80", "-2.42") if incl else ("10.00", "20.00", "-2.00")
    assert lines_of(document, "salesOrders") == [("KOP-TASSE-BL", 2, Decimal(prices[0])),
                                                 ("KOP-KOF-1KG", 1, Decimal(prices[1])),
                                                 ("DISCOUNT", 1, Decimal(prices[2]))]  # fmt: skip
    paid = Decimal(env.winstore_orders()[number]["total"])
    assert Decimal(str(document["totalAmountIncludingTax"])) == paid == Decimal("43.58")


def test_only_orders_in_a_booked_status_travel(env):
    number = env.ring_up(("KOP-TASSE-BL", 1), statuscode="0", **ANNA)  # pending (DEFAULT_STATUS_NAMES)
    [result] = env.orders()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'pending' is not synced")
    env.set_status(number, "1")  # processing: booked by default
    [booked] = env.orders()
    assert booked["outcome"] == "created", booked
    assert len(env.records("salesOrders")) == 1


@pytest.mark.parametrize("env", [{"order_statuses": ["2"]}], indirect=True)
def test_the_status_filter_is_configured_in_winstores_status_codes(env):
    number = env.ring_up(("KOP-TASSE-BL", 1), statuscode="1", **ANNA)
    [result] = env.orders()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'processing' is not synced")
    env.set_status(number, "2")
    [booked] = env.orders()
    assert booked["outcome"] == "created", booked


def test_an_order_already_in_business_central_is_an_error_level_skip(env):
    number = env.ring_up(("KOP-TASSE-BL", 1), **ANNA)
    customer = env.seed("customers", {"number": "C1", "displayName": "Anna Smit", "email": "anna@example.com"})["C1"]
    env.rt.target("bc").create_order("sales_order", {
        "externalDocumentNumber": number, "customerId": customer,
        "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "KOP-TASSE-BL", "quantity": 1}]})  # fmt: skip
    [document] = env.records("salesOrders")
    [result] = env.orders()
    assert (result["outcome"], result["target_id"], result["level"]) == ("skipped", document["id"], "error"), result
    assert "not booked by Koppel" in result["reason"]
    assert len(env.records("salesOrders")) == 1
    [entry] = ActivityLog(env.conn).entries(TO_BC)
    assert (entry.outcome, entry.level) == ("skipped", "error")


def test_a_company_customer_is_created_then_updated_by_e_mail(env):
    company = {"email": "inkoop@noord.example", "invoice_add": {
        "company": "Koffiebranderij Noord B.V.", "fname": "Jan", "lname": "Smit", "street": "Markt", "streetnr": "3",
        "zip": "9711 AA", "city": "Groningen", "countryISO": "NL"}}  # fmt: skip
    env.ring_up(("KOP-TASSE-BL", 1), **company)
    [first] = env.orders()
    assert first["account"] == "created", first
    [customer] = env.records("customers")
    assert (customer["type"], customer["displayName"]) == ("Company", "Koffiebranderij Noord B.V.")
    moved = company | {"invoice_add": company["invoice_add"] | {"street": "Vismarkt", "streetnr": "10"}}
    env.ring_up(("KOP-KOF-1KG", 1), **moved)
    [second] = env.orders()
    assert (second["outcome"], second["account"]) == ("created", "updated"), second
    [customer] = env.records("customers")  # the same customer, its address updated
    assert customer["addressLine1"] == "Vismarkt 10"
    assert {o["customerId"] for o in env.records("salesOrders")} == {customer["id"]}


def test_every_article_must_exist_in_business_central_and_a_missing_one_is_named(env):
    number = env.ring_up(("KOP-TASSE-BL", 1), ("WS-ONLY", 2), **ANNA)
    with pytest.raises(PermanentError, match=r"SKU\(s\) WS-ONLY do not exist as items in Business Central"):
        env.run(number)
    assert env.records("salesOrders") == []


@pytest.mark.parametrize("env", [{"default_customer": "KASSA"}], indirect=True)
def test_with_a_default_customer_every_order_is_booked_on_it(env):
    ids = env.seed("customers", {"number": "KASSA", "displayName": "Kassaverkopen"})
    env.ring_up(("KOP-TASSE-BL", 3))  # an anonymous sale at the till: no e-mail, no address
    [result] = env.orders()
    assert (result["outcome"], result["account"]) == ("created", "default"), result
    [document] = env.records("salesOrders")
    assert document["customerId"] == ids["KASSA"]
    assert len(env.records("customers")) == 1  # none created


def test_an_anonymous_sale_without_a_default_customer_names_the_missing_e_mail(env):
    number = env.ring_up(("KOP-TASSE-BL", 1))
    with pytest.raises(PermanentError, match=f"winstore order {number} has no customer e-mail address"):
        env.run(number)


def test_orders_koppel_posted_into_winstore_never_travel_back(env):
    """An order another system gave Winstore through Koppel (its channel is Winstore's `channel` setting, or it
    is recorded as posted) is no Winstore order: the orders stream leaves it out."""
    target = env.rt.target("winstore")
    key = env.article_keys()["KOP-TASSE-BL"]
    document = {"ordernr": "WEB-77", "orderdate": "2026-03-14 10:00:00", "customerid": 999999, "branch": 1,
                "channel": "webshop", "total": "12.10", "currency": "EUR", "koppel_origin": "shop:77",
                "positions": [{"product_id": key, "amount": 1, "single_price": "12.10", "type": "S"}]}  # fmt: skip
    target.create_order("order", document)
    target.create_order("order", document | {"ordernr": "WEB-78", "channel": "other"})
    assert set(env.winstore_orders()) == {"WEB-77", "WEB-78"}
    assert env.orders() == []
    assert env.records("salesOrders") == []


def test_a_released_order_gets_its_status_back_in_winstore(env):
    number = env.ring_up(("KOP-TASSE-BL", 1), statuscode="1", channel="telefoon", **ANNA)
    [booked] = env.orders()
    assert booked["outcome"] == "created", booked
    [open_] = env.process("bc", "salesOrders", BACK)  # open: the table maps only released
    assert open_["outcome"] == "skipped" and "changes nothing in Winstore" in open_["reason"], open_
    assert env.winstore_orders()[number]["statuscode"] == "1"
    env.change("salesOrders", booked["target_id"], status="Released")
    [back] = env.process("bc", "salesOrders", BACK)
    assert (back["outcome"], back["target_id"], back["reason"]) == ("updated", number,
                                                                  "status 1 → 2 (Business Central status released)")
    assert env.winstore_orders()[number]["statuscode"] == "2"
    # Winstore's change (its change date moved) is polled: the order is booked already, nothing more happens
    [again] = env.orders()
    assert (again["outcome"], again["calls"]) == ("skipped", 0), again
    assert len(env.records("salesOrders")) == 1


@pytest.mark.parametrize("env", [{"back_source": "endpoint", "back_mode": "both", "default_customer": "KASSA"}],
                         indirect=True)  # fmt: skip
def test_an_integration_fed_by_bcs_webhooks_knows_winstores_orders_by_the_booking_ledger(env):
    """bc-to-winstore (order_mode both: books BC's orders, writes back the status of Winstore's) is fed by the
    endpoint of BC's webhooks, winstore-to-bc's target is the system behind it: the ledger still says which BC
    orders are Winstore's. An anonymous till sale (no e-mail to compare) booked in BC
    is never booked back into Winstore as a second order, and finding that out asks Winstore nothing."""
    env.seed("customers", {"number": "KASSA", "displayName": "Kassaverkopen"})
    number = env.ring_up(("KOP-TASSE-BL", 1), statuscode="1")
    [booked] = env.orders()
    assert booked["outcome"] == "created", booked
    [back] = env.process("bc", "salesOrders", BACK)
    assert (back["outcome"], back["calls"]) == ("skipped", 0), back
    assert "changes nothing in Winstore" in back["reason"], back
    assert list(env.winstore_orders()) == [number]


# -- customers ---------------------------------------------------------------------------------------------------


def seed_setup(env: Env) -> dict[str, str]:
    ids = {}
    for entity, codes in (("taxAreas", ["DOMESTIC", "EU", "EXPORT"]), ("paymentTerms", ["30 DAYS"])):
        env.seed(entity, *({"code": code, "displayName": code.title()} for code in codes))
        ids |= {f"{entity}:{r['code']}": r["id"] for r in env.records(entity)}
    return ids


def test_winstore_customers_are_created_and_their_addresses_kept_up_to_date(env):
    ids = seed_setup(env)
    company = env.customer(company="Bakkerij Jörg B.V.", fname="Jörg", lname="Bakker", email="inkoop@joerg.example",
                           phone="030-1234567", street="Oudegracht", streetnr="112a", zip="3511 AX", city="Utrecht",
                           countryISO="NL")  # fmt: skip
    env.customer(fname="Els", lname="Peeters", email="els@example.be", street="Meir", streetnr="1", zip="2000",
                 city="Antwerpen", countryISO="BE")  # fmt: skip
    results = env.process("winstore", "customers", CUSTOMERS)
    assert sorted(r["outcome"] for r in results) == ["created", "created"], results
    made = {c["email"]: c for c in env.records("customers")}
    joerg, els = made["inkoop@joerg.example"], made["els@example.be"]
    assert (joerg["type"], joerg["displayName"], joerg["addressLine1"], joerg["city"]) == (
        "Company", "Bakkerij Jörg B.V.", "Oudegracht 112a", "Utrecht")
    assert (els["type"], els["displayName"], els["country"]) == ("Person", "Els Peeters", "BE")
    # posting setup from the integration's tables, by billing country
    assert joerg["taxAreaId"] == ids["taxAreas:DOMESTIC"] and joerg["paymentTermsId"] == ids["paymentTerms:30 DAYS"]
    assert els["taxAreaId"] == ids["taxAreas:EU"]
    env.customer(customerid=company, street="Neude", streetnr="5", zip="3512 AD")  # moved, in Winstore
    [moved] = env.process("winstore", "customers", CUSTOMERS)
    assert moved["outcome"] == "updated", moved
    joerg = next(c for c in env.records("customers") if c["email"] == "inkoop@joerg.example")
    assert (joerg["addressLine1"], joerg["postalCode"], joerg["city"]) == ("Neude 5", "3512 AD", "Utrecht")
    assert len(env.records("customers")) == 2
    assert env.process("winstore", "customers", CUSTOMERS) == []  # nothing changed since: nothing queued
