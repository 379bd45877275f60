"""The Winstore sandbox's state: articles, stock per warehouse, suppliers, the orders posted, and the rules
an order document must keep.

Change dates are second-precision local time (the sandbox's `zone`) and move whenever an article's data
or stock changes — through the control routes (a user in Winstore) or an order booked (its lines take
stock from the order's branch).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["ARTICLE_FIELDS", "OrderRefused", "WinstoreStore"]

ARTICLE_FIELDS = ("ArtKey", "ArtNr", "Gtin", "Description", "SalesPrice", "VatPercentage", "SupplierId",
                  "SupplierArtNr", "Brand", "Colour", "ArticleGroup", "Unit", "Active", "ChangeDate")  # fmt: skip
"""The fields of an article as the sandbox answers them (guessed names, see connectors/winstore/connector.py)."""
EDITABLE = frozenset(ARTICLE_FIELDS) - {"ArtKey", "ChangeDate"}
ORDER_ELEMENTS = frozenset({"ordernr", "orderdate", "customerid", "email", "branch", "channel", "total", "currency",
                            "changeSavingPoints", "invoice_add", "positions"})  # fmt: skip
ADDRESS_ELEMENTS = frozenset({"fname", "lname", "street", "streetnr", "zip", "city", "country", "countryISO"})
POSITION_ELEMENTS = frozenset({"product_id", "amount", "single_price", "type", "branch", "reduction"})
POSITION_TYPES = frozenset({"S"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class OrderRefused(Exception):
    """An order document Winstore refuses: `status` (HTTP and status code) and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class StockEntry:
    quantity: Decimal
    changed: datetime
    reserved: Decimal = Decimal(0)


@dataclass
class WinstoreStore:
    clock: Callable[[], float]
    zone: str = "Europe/Amsterdam"
    branches: frozenset[int] = frozenset({1, 2})
    articles: dict[int, dict[str, Any]] = field(default_factory=dict)
    stock: dict[tuple[int, int], StockEntry] = field(default_factory=dict)
    suppliers: dict[int, str] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_key: int = 1001
    next_order: int = 1
    offset: float = 0.0
    """Seconds added to the clock (`/sandbox/clock`): time passing between a test's steps."""

    def now(self) -> datetime:
        """Local time, whole seconds, no offset: how Winstore dates its changes."""
        moment = datetime.fromtimestamp(self.clock() + self.offset, ZoneInfo(self.zone))
        return moment.replace(microsecond=0, tzinfo=None)

    def parse_since(self, value: str | None) -> datetime:
        """The `date` parameter (ATOM) as local time; ValueError when absent or not a date."""
        if not value:
            raise ValueError("the date parameter is required")
        try:
            moment = datetime.fromisoformat(value.strip().replace(" ", "+"))  # a "+" that arrived unescaped
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not a valid date") from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(ZoneInfo(self.zone)).replace(tzinfo=None)
        return moment

    # -- what a user does in Winstore ---------------------------------------------------------------------

    def upsert_article(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create an article (or change the one with this `ArtKey`, else this `ArtNr`); its change date moves."""
        unknown = set(fields) - EDITABLE - {"ArtKey", "stock"}
        if unknown:
            raise ValueError(f"unknown article fields: {', '.join(sorted(unknown))}")
        article = None
        if fields.get("ArtKey") is not None:
            article = self.articles.get(int(fields["ArtKey"]))
            if article is None:
                raise KeyError(f"no article {fields['ArtKey']}")
        elif fields.get("ArtNr"):
            article = next((a for a in self.articles.values() if a["ArtNr"] == str(fields["ArtNr"])), None)
        if article is None:
            if not fields.get("ArtNr") or not fields.get("Description"):
                raise ValueError("a new article needs ArtNr and Description")
            article = {name: None for name in ARTICLE_FIELDS} | {"ArtKey": self.next_key, "Active": True,
                                                                  "VatPercentage": "21"}  # fmt: skip
            self.next_key += 1
            self.articles[article["ArtKey"]] = article
        for name in EDITABLE & set(fields):
            value = fields[name]
            if name in ("SalesPrice", "VatPercentage") and value is not None:
                value = str(_decimal(value, name))
            article[name] = value
        article["ChangeDate"] = self.now()
        for warehouse, quantity in dict(fields.get("stock") or {}).items():
            self.set_stock(article["ArtKey"], int(warehouse), quantity)
        return article

    def set_stock(self, artkey: int, warehouse: int, quantity: Any, reserved: Any = None) -> StockEntry:
        if artkey not in self.articles:
            raise KeyError(f"no article {artkey}")
        held = self.stock.get((artkey, warehouse))
        entry = StockEntry(_decimal(quantity, "quantity"), self.now(),
                           _decimal(reserved, "reserved") if reserved is not None else
                           (held.reserved if held else Decimal(0)))  # fmt: skip
        self.stock[(artkey, warehouse)] = entry
        return entry

    def article_by_number(self, number: str) -> dict[str, Any] | None:
        return next((a for a in self.articles.values() if a["ArtNr"] == number), None)

    # -- what the API reads ---------------------------------------------------------------------------------

    def articles_since(self, since: datetime) -> list[dict[str, Any]]:
        return sorted((a for a in self.articles.values() if a["ChangeDate"] >= since), key=lambda a: a["ArtKey"])

    def articles_of_supplier(self, supplier: int) -> list[dict[str, Any]]:
        found = (a for a in self.articles.values() if str(a.get("SupplierId")) == str(supplier))
        return sorted(found, key=lambda a: a["ArtKey"])

    def stock_row(self, artkey: int, warehouse: int | None, entry: StockEntry) -> dict[str, Any]:
        article = self.articles[artkey]
        row = {"ArtKey": artkey, "ArtNr": article["ArtNr"], "Gtin": article["Gtin"]}
        if warehouse is not None:
            row["Warehouse"] = warehouse
        return row | {"Stock": str(entry.quantity), "Reserved": str(entry.reserved), "ChangeDate": entry.changed}

    def stock_of(self, artkey: int) -> list[dict[str, Any]]:
        return [self.stock_row(k, w, e) for (k, w), e in sorted(self.stock.items()) if k == artkey]

    def changed_stock(self, since: datetime, *, per_warehouse: bool, out_of_stock: bool) -> list[dict[str, Any]]:
        if per_warehouse:
            return [self.stock_row(k, w, e) for (k, w), e in sorted(self.stock.items())
                    if e.changed >= since and (out_of_stock or e.quantity > 0)]  # fmt: skip
        totals: dict[int, StockEntry] = {}
        changed = {k for (k, _), e in self.stock.items() if e.changed >= since}
        for (k, _), e in sorted(self.stock.items()):
            if k in changed:
                held = totals.get(k)
                totals[k] = e if held is None else StockEntry(held.quantity + e.quantity, max(held.changed, e.changed),
                                                              held.reserved + e.reserved)  # fmt: skip
        return [self.stock_row(k, None, e) for k, e in sorted(totals.items())]

    # -- orders ---------------------------------------------------------------------------------------------

    def book(self, body: bytes) -> dict[str, Any]:
        """Validate and store an order document; its lines take stock from their branch. OrderRefused if not."""
        order = order_of(body)
        number = order["ordernr"]
        if number in self.orders:
            raise OrderRefused(409, f"Order {number} already exists")
        if order["branch"] not in self.branches:
            raise OrderRefused(400, f"Unknown branch {order['branch']}")
        for index, position in enumerate(order["positions"], 1):
            article = self._article_for(position["product_id"])
            if article is None:
                raise OrderRefused(400, f"Position {index}: unknown product {position['product_id']}")
            position["artkey"] = article["ArtKey"]
        for position in order["positions"]:
            key, warehouse = position["artkey"], position.get("branch") or order["branch"]
            held = self.stock.get((key, warehouse))
            self.set_stock(key, warehouse, (held.quantity if held else Decimal(0)) - position["amount"])
        order["id"] = self.next_order
        order["received"] = self.now().isoformat(sep=" ")
        self.next_order += 1
        self.orders[number] = order
        return order

    def _article_for(self, product_id: str) -> dict[str, Any] | None:
        if product_id.isdigit() and int(product_id) in self.articles:
            return self.articles[int(product_id)]
        return next((a for a in self.articles.values() if a.get("Gtin") == product_id), None)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} {str(value)[:30]!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} {str(value)[:30]!r} is not a number")
    return number


def order_of(body: bytes) -> dict[str, Any]:
    """The order document read strictly (the elements the public client writes, their types); OrderRefused."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise OrderRefused(400, "DTDs are not accepted")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entity expansion
    except ET.ParseError as exc:
        raise OrderRefused(400, f"The order is not well-formed XML: {exc}") from None
    if root.tag != "order":
        raise OrderRefused(400, f"The root element must be order, not {root.tag}")
    children = {child.tag: child for child in root}
    _known(children, ORDER_ELEMENTS, "order")
    if len(children) != len(root):
        raise OrderRefused(400, "An order element occurs twice")
    text = {tag: (child.text or "").strip() for tag, child in children.items() if len(child) == 0}
    order: dict[str, Any] = {}
    order["ordernr"] = _required(text, "ordernr")
    if len(order["ordernr"]) > 50:
        raise OrderRefused(400, "ordernr is longer than 50 characters")
    order["orderdate"] = _required(text, "orderdate")
    if not _DATE.match(order["orderdate"]):
        raise OrderRefused(400, f"orderdate {order['orderdate'][:30]!r} is not Y-m-d H:i:s")
    try:
        datetime.strptime(order["orderdate"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise OrderRefused(400, f"orderdate {order['orderdate']!r} is not a date") from None
    order["customerid"] = _integer(_required(text, "customerid"), "customerid")
    email = text.get("email", "")
    if email and not _EMAIL.match(email):
        raise OrderRefused(400, "email is not an e-mail address")
    order["email"] = email
    order["branch"] = _integer(_required(text, "branch"), "branch")
    order["channel"] = text.get("channel", "")
    order["total"] = _money(_required(text, "total"), "total")
    currency = text.get("currency") or "EUR"
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise OrderRefused(400, f"currency {currency[:10]!r} is not an ISO 4217 code")
    order["currency"] = currency
    address = children.get("invoice_add")
    order["invoice_add"] = {}
    if address is not None:
        fields = {child.tag: (child.text or "").strip() for child in address}
        _known(fields, ADDRESS_ELEMENTS, "invoice_add")
        iso = fields.get("countryISO", "")
        if iso and not re.fullmatch(r"[A-Z]{2}", iso):
            raise OrderRefused(400, f"countryISO {iso[:10]!r} is not an ISO 3166 code")
        order["invoice_add"] = fields
    positions = children.get("positions")
    if positions is None or len(positions) == 0:
        raise OrderRefused(400, "The order has no positions")
    order["positions"] = []
    for index, position in enumerate(positions, 1):
        if position.tag != "position":
            raise OrderRefused(400, f"positions holds {position.tag}; only position")
        values = {child.tag: (child.text or "").strip() for child in position}
        _known(values, POSITION_ELEMENTS, f"position {index}")
        entry: dict[str, Any] = {"product_id": _required(values, "product_id", f"position {index}")}
        entry["amount"] = _integer(_required(values, "amount", f"position {index}"), f"position {index} amount")
        if entry["amount"] == 0:
            raise OrderRefused(400, f"position {index}: amount is 0")
        entry["single_price"] = _money(_required(values, "single_price", f"position {index}"),
                                       f"position {index} single_price")  # fmt: skip
        kind = values.get("type") or "S"
        if kind not in POSITION_TYPES:
            raise OrderRefused(400, f"position {index}: unknown type {kind[:5]!r}")
        entry["type"] = kind
        if values.get("branch"):
            entry["branch"] = _integer(values["branch"], f"position {index} branch")
        if values.get("reduction"):
            entry["reduction"] = _money(values["reduction"], f"position {index} reduction")
        order["positions"].append(entry)
    return order


def _known(found: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(found) - known)
    if unknown:
        raise OrderRefused(400, f"{where}: unknown element {unknown[0]}")


def _required(values: Mapping[str, str], name: str, where: str = "order") -> str:
    value = values.get(name, "")
    if not value:
        raise OrderRefused(400, f"{where}: {name} is required")
    return value


def _integer(value: str, what: str) -> int:
    if not re.fullmatch(r"-?\d{1,12}", value):
        raise OrderRefused(400, f"{what} {value[:20]!r} is not a whole number")
    return int(value)


def _money(value: str, what: str) -> Decimal:
    if not re.fullmatch(r"-?\d{1,12}(\.\d{1,4})?", value):
        raise OrderRefused(400, f"{what} {value[:20]!r} is not an amount")
    return Decimal(value)
