"""Orders Exact Online → Winstore: Exact sales orders booked as Winstore order documents
(PostOrderWithStatusCode), through both sandboxes over real HTTP (uvicorn), real Redis, the real poller
and the generic orders flow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import redis

from connectors import registry
from gateway.config import Config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError
from tests import pairs_support as pairs
from workers.jobs import run_event
from workers.ledger import EARLIER_ATTEMPT, Ledger

pytestmark = pytest.mark.integration

DIVISION = 1234567
ARTICLES = [
    {"ArtNr": "KOP-TASSE-BL", "Description": "Tasse blauw", "SalesPrice": "12.10", "Gtin": "8712345000017",
     "VatPercentage": "21", "stock": {"1": 20}},
    {"ArtNr": "KOP-KOF-1KG", "Description": "Koffie 1 kg", "SalesPrice": "24.90", "VatPercentage": "9",
     "stock": {"1": 10}},
    {"ArtNr": "SHIPPING", "Description": "Verzendkosten", "SalesPrice": "0", "VatPercentage": "21"},
]  # fmt: skip


def make_config(exact_url: str, ws_url: str, settings: dict[str, Any]) -> Config:
    return pairs.pair_config(
        [pairs.exact_system(exact_url), pairs.winstore_system(ws_url, branch=1, channel="exact")],
        [
            {"id": "exact-to-winstore", "source": "exact", "target": "winstore", "flows": ["orders"],
             "settings": settings},
        ],
    )  # fmt: skip


class Env(pairs.ExactWinstore):
    def control(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.post(f"{self.exact.url}/sandbox/{action}", json=body).raise_for_status().json()

    def account(self, **fields: Any) -> str:
        record = {"Name": "Bakkerij Jörg B.V.", "Email": "inkoop@joerg.example", "AddressLine1": "Oudegracht 112a",
                  "Postcode": "3511 AX", "City": "Utrecht", "Country": "NL"} | fields  # fmt: skip
        return str(self.control("seed", {"entity": "crm/Accounts", "records": [record]})["ids"][0])

    def exact_order(self, lines: list[tuple[str, int, float]], vat: dict[str, str] | None = None,
                    account: str | None = None, **header: Any) -> str:  # fmt: skip
        """A sales order entered in Exact; lines are (item code, quantity, unit price excl. VAT), `vat` the
        lines' VAT codes by item code (else the item's: 21 %)."""
        items = self.control("seed/items", {"skus": [code for code, _, _ in lines]})["items"]
        order = {"OrderedBy": account or self.account(), "SalesOrderLines": [
            {"Item": items[code], "Quantity": quantity, "UnitPrice": price} | (
                {"VATCode": (vat or {})[code]} if code in (vat or {}) else {})
            for code, quantity, price in lines
        ]} | header  # fmt: skip
        return str(self.control("seed", {"entity": "salesorder/SalesOrders", "records": [order]})["ids"][0])

    def exact_update(self, key: str, **fields: Any) -> None:
        self.control("update", {"entity": "salesorder/SalesOrders", "id": key, "fields": fields})

    def process_polled(self) -> list[dict[str, Any]]:
        """Poll Exact's sales orders (the real poller job), then run every queued `process_event` job."""
        return pairs.run_polled(self.conn, self.rt, "exact", "SalesOrderHeaders", "exact-to-winstore")

    def replay(self) -> dict[str, Any]:
        """The Exact order's header as a replayed job (no version: never "processed already")."""
        [record] = self.sandbox.store.sync_rows(DIVISION, "sync/SalesOrder/SalesOrderHeaders")
        row = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items() if k != "Modified"}
        event = Event("SalesOrderHeaders.sync", "SalesOrderHeaders", row["OrderID"], f"k{uuid.uuid4()}", row)
        envelope = Envelope.wrap(event, source="exactonline", endpoint="exact")
        integration = self.rt.config.integrations[0]
        return run_event(self.rt, integration, envelope).as_dict()

    def winstore_orders(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.winstore.url}/sandbox/orders").raise_for_status().json()["orders"])

    def article_keys(self) -> dict[str, str]:
        return pairs.winstore_article_keys(self.http, self.winstore)


@pytest.fixture
def env(rconn: redis.Redis, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    settings = getattr(request, "param", {})
    config = partial(make_config, settings=settings)
    with pairs.exact_and_winstore(Env, config, rconn, monkeypatch, ARTICLES) as env:
        yield env


def test_an_exact_sales_order_is_booked_once_in_winstore_with_its_lines_prices_and_address(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 3, 10.00), ("KOP-KOF-1KG", 2, 20.00), ("SHIPPING", 1, 4.95)],
                               vat={"KOP-KOF-1KG": "1"}, ShippingMethodDescription="PostNL")  # fmt: skip
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    assert str(order["id"]) == result["target_id"]
    number = result["number"]
    assert order["ordernr"] == number
    assert (order["customerid"], order["branch"], order["channel"], order["currency"]) == (999999, 1, "exact", "EUR")
    assert order["email"] == "inkoop@joerg.example"
    keys = env.article_keys()
    positions = sorted((p["product_id"], p["amount"], Decimal(p["single_price"]), p["type"])
                       for p in order["positions"])  # fmt: skip
    assert positions == [
        (keys["KOP-TASSE-BL"], 3, Decimal("12.10"), "S"),  # 10.00 + 21 % VAT: a till's price incl. VAT
        (keys["KOP-KOF-1KG"], 2, Decimal("21.80"), "S"),  # 20.00 + 9 %
        (keys["SHIPPING"], 1, Decimal("5.99"), "S"),  # the shipping line on Winstore's shipping article
    ]
    assert Decimal(order["total"]) == Decimal("36.30") + Decimal("43.60") + Decimal("5.99")
    address = order["invoice_add"]
    assert (address["street"], address["streetnr"], address["zip"], address["city"], address["countryISO"],
            address["country"]) == ("Oudegracht", "112 a", "3511 AX", "Utrecht", "NL", "Nederland")  # fmt: skip
    # no VAT number, no contact: Exact's account reads as a person (connectors/exactonline/normalise.py)
    assert (address["fname"], address["lname"]) == ("Bakkerij", "Jörg B.V.")
    # booked once: a later change of the Exact order, polled again, is skipped by the ledger
    env.exact_update(order_id, Description="Levering dinsdag")
    [again] = env.process_polled()
    assert (again["outcome"], again["target_id"], again["calls"]) == ("skipped", result["target_id"], 0)
    assert len(env.winstore_orders()) == 1


def test_a_replayed_order_is_skipped_and_a_crash_before_the_ledger_finds_the_posted_order(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [first] = env.process_polled()
    assert first["outcome"] == "created", first
    again = env.replay()
    assert (again["outcome"], again["target_id"], again["calls"]) == ("skipped", first["target_id"], 0)
    # Winstore takes statuses: a booked order's status is written back when it changes something; open does not
    assert again["reason"] == f"already in Winstore ({first['target_id']}); Exact Online status 12 open changes " \
        "nothing in Winstore"
    ledger = Ledger(env.conn, "exact-to-winstore", "orders")
    env.conn.hdel(ledger.key, first["number"])  # as if the worker died after the POST, before its ledger entry
    env.conn.hset(ledger.flight, first["number"], "1")
    found = env.replay()
    assert (found["outcome"], found["target_id"], found["reason"]) == ("created", first["target_id"], EARLIER_ATTEMPT)
    assert ledger.created(first["number"]) == first["target_id"] and not ledger.in_flight(first["number"])
    assert len(env.winstore_orders()) == 1


def test_articles_winstore_lacks_fail_the_order_naming_every_missing_one(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00), ("EXACT-ONLY-1", 1, 5.00), ("EXACT-ONLY-2", 2, 5.00)])
    missing = r"SKU\(s\) EXACT-ONLY-1, EXACT-ONLY-2 do not exist as items in Winstore"
    with pytest.raises(PermanentError, match=missing):
        env.replay()
    assert env.winstore_orders() == []


@pytest.mark.parametrize("env", [{"order_statuses": ["12"]}], indirect=True)
def test_only_the_configured_exact_statuses_are_booked(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    env.exact_update(order_id, Status=20)
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'partial' is not synced")
    env.exact_update(order_id, Status=12)
    [booked] = env.process_polled()
    assert booked["outcome"] == "created", booked
    assert len(env.winstore_orders()) == 1


def test_a_booked_order_cancelled_in_exact_is_cancelled_in_winstore(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [booked] = env.process_polled()
    env.exact_update(order_id, Status=45)
    [result] = env.process_polled()
    # Koppel's default write-back (cancelled → cancelled) in Winstore's status code (DEFAULT_STATUS_NAMES: 9)
    assert (result["outcome"], result["target_id"]) == ("updated", booked["number"]), result
    assert result["reason"] == "status 1 → 9 (Exact Online status 45 cancelled)"
    [order] = env.winstore_orders()
    assert order["statuscode"] == "9"
    assert env.process_polled() == []
    again = env.replay()
    assert again["outcome"] == "skipped" and "already 9" in again["reason"], again


def test_a_cancelled_exact_order_is_not_booked_by_default(env):
    order_id = env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    env.exact_update(order_id, Status=45)
    [result] = env.process_polled()
    assert (result["outcome"], result["reason"]) == ("skipped", "status 'cancelled' is not synced")
    assert env.winstore_orders() == []


def test_a_business_customer_is_named_in_the_address_winstore_has(env):
    company = env.account(Name="Koffiebranderij Noord B.V.", VATNumber="NL812345678B01", City="Groningen")
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=company)
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    address = order["invoice_add"]
    assert (address.get("fname", ""), address["lname"], address["city"]) == ("", "Koffiebranderij Noord B.V.",
                                                                            "Groningen")  # fmt: skip


def test_an_exact_item_code_that_is_a_winstore_gtin_finds_its_article(env):
    env.exact_order([("8712345000017", 2, 10.00)])
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    assert [(p["product_id"], p["amount"]) for p in order["positions"]] == [(env.article_keys()["KOP-TASSE-BL"], 2)]


def test_an_exact_line_discount_is_in_the_price_winstore_books(env):
    items = env.control("seed/items", {"skus": ["KOP-TASSE-BL"]})["items"]
    line = {
        "Item": items["KOP-TASSE-BL"],
        "Quantity": 4,
        "UnitPrice": 10.00,
        "Discount": 0.25,
        "NetPrice": 7.50,
        "AmountFC": 30.00,
    }  # Exact gives the net price
    env.control("seed", {"entity": "salesorder/SalesOrders",
                         "records": [{"OrderedBy": env.account(), "SalesOrderLines": [line]}]})  # fmt: skip
    [result] = env.process_polled()
    assert result["outcome"] == "created", result
    [order] = env.winstore_orders()
    [position] = order["positions"]
    assert (position["amount"], Decimal(position["single_price"])) == (4, Decimal("9.08"))  # 7.50 + 21 %
    assert Decimal(order["total"]) == Decimal("36.30")


def test_config_check_accepts_the_pair_and_names_a_missing_branch():
    config = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", {})
    assert registry.config_problems(config) == []
    config.systems[1].settings.pop("branch")
    assert [p for p in registry.config_problems(config) if "branch" in p] == [
        "integrations[0].target: winstore books orders on systems.settings.branch (the branch number); it is not set"
    ]
    both = make_config("http://127.0.0.1:1", "http://127.0.0.1:2", {"order_mode": "both"})
    assert registry.config_problems(both) == []  # Winstore books orders and takes statuses (PostOrderStatus [U])


def test_an_exact_customer_without_e_mail_is_booked_on_winstores_customer_all_the_same(env):
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)], account=env.account(Email=None, Name="Jan Smit"))
    [result] = env.process_polled()
    assert result["outcome"] == "created", result  # no customer lookup by e-mail: the order carries its customer
    [order] = env.winstore_orders()
    assert (order["customerid"], order["email"]) == (999999, "")
    assert (order["invoice_add"]["fname"], order["invoice_add"]["lname"]) == ("Jan", "Smit")


def test_winstores_article_map_is_read_once_for_many_orders(env):
    """Winstore finds articles by key or GTIN only: the catalogue read for the first order serves the next
    ones, also for SKUs none of them had before (the flow's own item cache holds only those it asked for)."""
    env.exact_order([("KOP-TASSE-BL", 1, 10.00)])
    [first] = env.process_polled()
    env.exact_order([("KOP-KOF-1KG", 1, 20.00)])
    [second] = env.process_polled()
    assert (first["outcome"], second["outcome"]) == ("created", "created")
    assert (first["calls"], second["calls"]) == (2, 1)  # catalogue + POST, then the POST alone
    # a booking Winstore refuses drops the map: the retry reads the catalogue again
    target = env.rt.target("winstore")
    assert target.forget("orders", "order") and target.find_items(["KOP-TASSE-BL"]) == {
        "KOP-TASSE-BL": env.article_keys()["KOP-TASSE-BL"]}  # fmt: skip
