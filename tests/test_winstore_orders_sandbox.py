"""Winstore's orders and customers through the assumed endpoints [U] against the sandbox over uvicorn: read by
change date in JSON and XML alike, each position's article number filled in from its key, a status set through
`PostOrderStatus` (its change date moves), the endpoint names overridable per system, and the sandbox's refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from connectors.contract import Context
from connectors.winstore.connector import WinstoreSource
from connectors.winstore.errors import WinstoreNotFound, WinstoreRequestError
from connectors.winstore.wire import records
from gateway.config import System
from gateway.errors import PermanentError
from gateway.model import Customer, Order
from tests.test_winstore_sandbox import JEANS, PASSWORD, SHIRT, USER, Winstore, poll, ws

pytestmark = pytest.mark.integration
__all__ = ["ws"]

SINCE = {"date": "2000-01-01T00:00:00+00:00"}
API = "https://winstore.example/iposws/api/osd"


def ring_up(ws: Winstore, **order: Any) -> str:
    body = {"positions": [{"ArtNr": "WS-JEANS", "amount": 1}, {"ArtNr": "WS-SHIRT", "amount": 2}]} | order
    return str(ws.control("orders/ring-up", {"orders": [body]})["orders"][0]["ordernr"])


def test_orders_are_read_by_change_date_in_json_and_xml_alike(ws):
    ws.seed(JEANS, SHIRT)
    number = ring_up(ws, email="anna@example.com", invoice_add={"fname": "Anna", "lname": "Smit"})
    api = ws.client()
    [as_json] = api.orders_changed(datetime(2000, 1, 1, tzinfo=UTC))
    raw = ws.http.get(f"{ws.api_root}/GetOrdersByDate", params=SINCE, headers={"Accept": "application/xml"},
                      auth=(USER, PASSWORD))  # fmt: skip
    assert raw.text.startswith("<ArrayOfOrder") and "<positions><position>" in raw.text
    [as_xml] = records(api.decode(raw, "GET GetOrdersByDate"))
    source = ws.source()
    json_order, xml_order = source.normalise("orders", as_json), source.normalise("orders", as_xml)
    assert isinstance(json_order, Order) and json_order == xml_order
    assert json_order.number == number and [line.sku for line in json_order.lines] == ["WS-JEANS", "WS-SHIRT"]
    assert (json_order.status, json_order.custom_fields["winstore_channel"]) == ("completed", "till")


def test_the_orders_stream_fills_in_article_numbers_and_vat_a_read_lacks_from_one_catalogue_read(rconn):
    """Should Winstore's order read carry only the article key (the posted document's `product_id`), each position
    gets its article's number and VAT from the catalogue, read once and cached."""
    order = {"ordernr": "K9", "statuscode": "2", "changedate": "2026-11-28T14:05:00",
             "positions": [{"product_id": "1001", "amount": 1, "single_price": "89.95"}]}  # fmt: skip
    article = {"ArtKey": 1001, "ArtNr": "WS-JEANS", "VatPercentage": "21", "ChangeDate": "2026-11-01T10:00:00"}
    with respx.mock(base_url=API) as mock, httpx.Client() as http:
        mock.get("/GetOrdersByDate").respond(json=[order])
        catalogue = mock.get("/GetArticleDataChangesByDate").respond(json=[article])
        system = System.model_validate(
            {"id": "ws", "kind": "winstore", "base_url": API, "credentials": {"username": "env:U", "password": "env:P"},
             "settings": {"branch": 1}}, context={"environ": {"U": "u", "P": "p"}})  # fmt: skip
        source = WinstoreSource(system, Context(http=http, redis=rconn))
        for _ in range(2):
            [change] = [c for page, _ in source.changes("orders", None) for c in page]
            [line] = source.normalise("orders", change.record).lines
            assert (line.sku, line.tax_rate, line.total_excl) == ("WS-JEANS", 21, Decimal("74.34"))
        assert catalogue.call_count == 1  # the second poll took them from the cache


def test_a_status_set_through_post_order_status_moves_the_change_date(ws):
    ws.seed(JEANS, SHIRT)
    number = ring_up(ws, statuscode="1")
    source, target = ws.source(), ws.target()
    [first], cursor = poll(source, "orders", None)
    assert target.order_status(number) == (number, "1")
    ws.control("clock", {"advance": 3600})
    target.set_order_status(number, "completed")  # Koppel's name → the status table's code
    assert target.order_status(number) == (number, "2")
    read, later = poll(source, "orders", cursor)
    [changed] = [c for c in read if c.delivery_key != first.delivery_key]
    assert changed.record["statuscode"] == "2" and later > cursor
    with pytest.raises(WinstoreNotFound, match="Order NOPE not found"):
        ws.client().post_order_status("NOPE", "2")
    with pytest.raises(WinstoreRequestError, match=r"statuscode 'x' is not a status code"):
        ws.client().post_order_status(number, "x")
    assert target.order_status("NEVER-SEEN") is None  # read back 90 days, not there


def test_a_status_koppel_has_no_code_for_names_the_settings(ws):
    with pytest.raises(PermanentError, match=r"no status code for 'refunded'; name it in systems\.ws\.settings"):
        ws.target().set_order_status("K1", "refunded")
    assert ws.target(status_names={"7": "refunded"}).status_code("refunded") == "7"


def test_customers_are_read_by_change_date(ws):
    ws.control("customers", {"customers": [{"company": "Noord B.V.", "fname": "Jan", "email": "jan@noord.example"},
                                           {"fname": "Els", "lname": "Peeters"}]})  # fmt: skip
    source = ws.source()
    changes, cursor = poll(source, "customers", None)
    customers = [source.normalise("customers", c.record) for c in changes]
    assert all(isinstance(c, Customer) for c in customers)
    assert [(c.kind, c.display_name) for c in customers] == [("company", "Noord B.V."), ("person", "Els Peeters")]
    assert poll(source, "customers", cursor)[0] == changes  # the overlap reads them again: same delivery keys


def test_an_endpoint_name_is_overridden_per_system(ws):
    ws.control("customers", {"customers": [{"fname": "Els", "lname": "Peeters"}]})
    source = ws.source(endpoints={"customers": "GetCustomersChanged"})
    with pytest.raises(WinstoreNotFound, match="GetCustomersChanged"):
        poll(source, "customers", None)
