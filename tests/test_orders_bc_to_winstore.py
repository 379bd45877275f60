"""Orders Business Central → Winstore: BC sales orders, polled by lastModifiedDateTime (the real poller), booked as
Winstore order documents (PostOrderWithStatusCode, order type "Orders") through the generic orders flow, both
sandboxes over real HTTP (uvicorn) and real Redis: lines, prices incl. VAT and totals, every article must exist,
booked once, and an order Koppel booked into BC from Winstore never travels back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis

from connectors import registry
from connectors.businesscentral.connector import BusinessCentralSource
from gateway.config import Config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from tests import pairs_support as pairs
from workers.jobs import run_event
from workers.ledger import EARLIER_ATTEMPT, Ledger

pytestmark = pytest.mark.integration

INTEGRATION = "bc-to-winstore"
ARTICLES = [
    {"ArtNr": "KOP-TASSE-BL", "Description": "Tasse blauw", "SalesPrice": "12.10", "VatPercentage": "21",
     "stock": {"1": 20}},
    {"ArtNr": "KOP-KOF-1KG", "Description": "Koffie 1 kg", "SalesPrice": "24.90", "VatPercentage": "9",
     "stock": {"1": 10}},
    {"ArtNr": "VERZEND", "Description": "Verzendkosten", "SalesPrice": "0", "VatPercentage": "21"},
]  # fmt: skip


def make_config(bc_url: str, ws_url: str, settings: dict[str, Any]) -> Config:
    return pairs.pair_config(
        [pairs.bc_system(bc_url), pairs.winstore_system(ws_url, branch=1, channel="bc")],
        [
            {"id": INTEGRATION, "source": "bc", "target": "winstore", "flows": ["orders"], "settings": settings},
        ],
    )  # fmt: skip


class Env(pairs.BCWinstore):
    @property
    def company(self) -> str:
        return self.sandbox.company()

    def customer(self, prices_including_vat: bool = False, **fields: Any) -> str:
        """A customer made in BC; `prices_including_vat` its card's Prices Including VAT."""
        record = {"displayName": "Bakkerij Jörg B.V.", "email": "inkoop@joerg.example",
                  "addressLine1": "Oudegracht 112a", "postalCode": "3511 AX", "city": "Utrecht",
                  "country": "NL"} | fields  # fmt: skip
        made = self.sandbox.store.create(self.company, "customers", record)
        self.sandbox.store.change(self.company, "customers", made["id"], {"pricesIncludingVat": prices_including_vat})
        return str(made["id"])

    def bc_order(self, lines: list[tuple[str, int, float, int]], customer: str | None = None, **header: Any) -> str:
        """A sales order entered in BC; lines are (item number, quantity, unit price, VAT percent): the price
        excl. VAT, or incl. for a customer with Prices Including VAT."""
        store = self.sandbox.store
        known = {r["number"] for r in store.records[self.company]["items"].values()}
        for number in dict.fromkeys(n for n, _, _, _ in lines):
            if number not in known:
                store.create(self.company, "items", {"number": number, "displayName": number})
        order = store.create(self.company, "salesOrders", {"customerId": customer or self.customer()} | header)
        for number, quantity, price, vat in lines:
            fields = {"lineType": "Item", "lineObjectNumber": number, "quantity": quantity, "unitPrice": price}
            store.add_line(self.company, "salesOrders", order["id"], fields | {"taxPercent": vat})
        return str(order["id"])

    def process_polled(self) -> list[dict[str, Any]]:
        """Poll BC's sales orders (the real poller job), then run every queued `process_event` job."""
        return pairs.run_polled(self.conn, self.rt, "bc", "salesOrders", INTEGRATION)

    def replay(self, order_id: str) -> dict[str, Any]:
        """The BC order, as read through the API, as a replayed job (no version: never "processed already")."""
        source = self.rt.source("bc")
        assert isinstance(source, BusinessCentralSource)
        record = source.client().get("salesOrders", order_id, expand="salesOrderLines,customer")
        record.pop("lastModifiedDateTime")
        event = Event("salesOrders.sync", "salesOrders", order_id, f"k{uuid.uuid4()}", record)
        envelope = Envelope.wrap(event, source="businesscentral", endpoint="bc")
        [integration] = [i for i in self.rt.config.integrations if i.id == INTEGRATION]
        return run_event(self.rt, integration, envelope).as_dict()

    def winstore_orders(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.winstore.url}/sandbox/orders").raise_for_status().json()["orders"])

    def article_keys(self) -> dict[str, str]:
        return pairs.winstore_article_keys(self.http, self.winstore)


def _env(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch, config: Any) -> Iterator[Env]:
    with pairs.bc_and_winstore(Env, config, rconn, monkeypatch, ARTICLES) as env:
        yield env


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    settings = getattr(request, "param", {})
    yield from _env(rconn, monkeypatch, lambda bc, ws: make_config(bc, ws, settings))


def test_a_bc_sales_order_is_booked_once_in_winstore_with_its_lines_prices_vat_and_address(env):
    order_id = env.bc_order([("KOP-TASSE-BL", 3, 10.00, 21), ("KOP-KOF-1KG", 2, 20.00, 9)])
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    assert str(order["id"]) == result["target_id"]
    assert order["ordernr"] == result["number"] == "S-ORD101001"
    assert (order["customerid"], order["branch"], order["channel"], order["currency"]) == (999999, 1, "bc", "EUR")
    assert order["email"] == "inkoop@joerg.example"
    keys = env.article_keys()
    positions = sorted((p["product_id"], p["amount"], Decimal(p["single_price"]), p["type"])
                       for p in order["positions"])  # fmt: skip
    assert positions == sorted([
        (keys["KOP-TASSE-BL"], 3, Decimal("12.10"), "S"),  # 10.00 + 21 % VAT: a till's price incl. VAT
        (keys["KOP-KOF-1KG"], 2, Decimal("21.80"), "S"),  # 20.00 + 9 %
    ])  # fmt: skip
    assert Decimal(order["total"]) == Decimal("36.30") + Decimal("43.60")  # BC's totalAmountIncludingTax
    address = order["invoice_add"]
    assert (address["street"], address["streetnr"], address["zip"], address["city"], address["countryISO"]) == (
        "Oudegracht", "112 a", "3511 AX", "Utrecht", "NL")  # fmt: skip
    assert address["lname"] == "Bakkerij Jörg B.V."  # a company: its name where Winstore's address has room
    # booked once: a later change of the BC order, polled again, is skipped by the ledger
    env.sandbox.store.change(env.company, "salesOrders", order_id, {"shipToContact": "Jörg"})
    [again] = env.process_polled()
    assert (again["outcome"], again["target_id"], again["calls"]) == ("skipped", result["target_id"], 0)
    assert len(env.winstore_orders()) == 1


def test_a_person_is_named_by_first_and_last_name(env):
    env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21)], customer=env.customer(displayName="Jan Smit", type="Person"))
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    assert (order["invoice_add"]["fname"], order["invoice_add"]["lname"]) == ("Jan", "Smit")


def test_prices_entered_incl_vat_in_bc_are_booked_as_entered(env):
    env.bc_order([("KOP-KOF-1KG", 4, 24.90, 9)], customer=env.customer(prices_including_vat=True))
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    [position] = order["positions"]
    assert (position["amount"], Decimal(position["single_price"]), Decimal(order["total"])) == (
        4, Decimal("24.90"), Decimal("99.60"))  # fmt: skip


@pytest.mark.parametrize("env", [{"fee_item": "VERZEND"}], indirect=True)
def test_a_g_l_account_line_is_a_fee_on_the_fee_article_and_a_comment_line_is_not_sent(env):
    order_id = env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21)])
    company, store = env.company, env.sandbox.store
    store.add_line(company, "salesOrders", order_id, {"lineType": "Account", "lineObjectNumber": "8100",
                                                      "description": "Verzendkosten", "quantity": 1,
                                                      "unitPrice": 4.13, "taxPercent": 21})  # fmt: skip
    store.add_line(company, "salesOrders", order_id, {"lineType": "Comment", "description": "Achterom bezorgen"})
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    keys = env.article_keys()
    positions = sorted((p["product_id"], p["amount"], Decimal(p["single_price"])) for p in order["positions"])
    assert positions == sorted([(keys["KOP-TASSE-BL"], 1, Decimal("12.10")), (keys["VERZEND"], 1, Decimal("5.00"))])
    assert Decimal(order["total"]) == Decimal("17.10")


def test_a_replayed_order_is_skipped_and_a_crash_before_the_ledger_finds_the_posted_order(env):
    order_id = env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21)])
    [first] = env.process_polled()
    assert first["outcome"] == "created", first
    again = env.replay(order_id)
    assert (again["outcome"], again["target_id"], again["calls"], again["reason"]) == (
        "skipped", first["target_id"], 0,
        "already in Winstore (1); Business Central status open changes nothing in Winstore")  # fmt: skip
    ledger = Ledger(env.conn, INTEGRATION, "orders")
    env.conn.hdel(ledger.key, first["number"])  # as if the worker died after the POST, before its ledger entry
    env.conn.hset(ledger.flight, first["number"], "1")
    found = env.replay(order_id)
    assert (found["outcome"], found["target_id"], found["reason"]) == ("created", first["target_id"], EARLIER_ATTEMPT)
    assert len(env.winstore_orders()) == 1


def test_articles_winstore_lacks_fail_the_order_naming_every_missing_one(env):
    order_id = env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21), ("BC-ONLY-1", 1, 5.00, 21), ("BC-ONLY-2", 2, 5.00, 21)])
    missing = r"SKU\(s\) BC-ONLY-1, BC-ONLY-2 do not exist as items in Winstore; create them there"
    with pytest.raises(PermanentError, match=missing):
        env.replay(order_id)
    assert env.winstore_orders() == []


@pytest.mark.parametrize("env", [{"order_statuses": ["released"]}], indirect=True)
def test_only_the_configured_bc_statuses_are_booked(env):
    order_id = env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21)])
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'open' is not synced")
    env.sandbox.store.change(env.company, "salesOrders", order_id, {"status": "Released"})
    [booked] = env.process_polled()
    assert booked["outcome"] == "created", booked
    assert len(env.winstore_orders()) == 1


def _with_winstore_orders_into_bc(bc_url: str, ws_url: str) -> Config:
    """The pair both ways: Winstore's orders booked into BC (its ledger says which BC order each became)."""
    config = make_config(bc_url, ws_url, {})
    back = config.integrations[0].model_copy(update={"id": "winstore-to-bc", "source": "winstore", "target": "bc"})
    return config.model_copy(update={"integrations": [*config.integrations, back]})


@pytest.fixture
def both_ways(rconn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    yield from _env(rconn, monkeypatch, _with_winstore_orders_into_bc)


def test_an_order_koppel_booked_into_bc_from_winstore_does_not_travel_back(both_ways):
    env = both_ways
    # Winstore order 5001, booked into BC by the other integration: BC's externalDocumentNumber is its number
    mine = env.bc_order([("KOP-TASSE-BL", 1, 10.00, 21)], externalDocumentNumber="5001")
    Ledger(env.conn, "winstore-to-bc", "orders").record("5001", mine)
    # a BC order whose external document number is a customer's own reference: BC's, booked into Winstore
    env.bc_order([("KOP-TASSE-BL", 2, 10.00, 21)], externalDocumentNumber="PO-5001")
    results = sorted(env.process_polled(), key=lambda r: r["number"])
    assert [(r["number"], r["outcome"]) for r in results] == [("S-ORD101001", "skipped"), ("S-ORD101002", "created")]
    # Winstore's own order: never booked back; its status is what travels (BC's "open" maps to no Winstore code)
    assert results[0]["reason"] == "Business Central status open changes nothing in Winstore"
    assert [o["ordernr"] for o in env.winstore_orders()] == ["S-ORD101002"]


def test_config_check_accepts_the_pair():
    assert registry.config_problems(make_config("http://127.0.0.1:1", "http://127.0.0.1:2", {})) == []
