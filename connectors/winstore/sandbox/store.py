"""The Winstore sandbox's state: articles, stock per warehouse, suppliers, orders (posted, or rung up at
the till and in other channels) with their status code, customers, and the rules an order document must keep.

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

__all__ = ["ARTICLE_FIELDS", "CUSTOMER_FIELDS", "POSTED_STATUS", "OrderRefused", "StockRefused", "WinstoreStore"]

ARTICLE_FIELDS = ("ArtKey", "ArtNr", "Gtin", "Description", "SalesPrice", "VatPercentage", "SupplierId",
                  "SupplierArtNr", "Brand", "Colour", "ArticleGroup", "Unit", "Active", "ChangeDate")  # fmt: skip
"""The fields of an article as the sandbox answers them (guessed names, see connectors/winstore/connector.py)."""
EDITABLE = frozenset(ARTICLE_FIELDS) - {"ArtKey", "ChangeDate"}
ORDER_ELEMENTS = frozenset({"ordernr", "orderdate", "customerid", "email", "branch", "channel", "total", "currency",
                            "changeSavingPoints", "invoice_add", "positions"})  # fmt: skip
ADDRESS_ELEMENTS = frozenset({"fname", "lname", "street", "streetnr", "zip", "city", "country", "countryISO"})
POSITION_ELEMENTS = frozenset({"product_id", "amount", "single_price", "type", "branch", "reduction"})
POSITION_TYPES = frozenset({"S"})
STOCK_ELEMENTS = frozenset({"artkey", "warehouse", "amount"})
CUSTOMER_FIELDS = ("customerid", "company", "fname", "lname", "email", "phone", "street", "streetnr", "zip", "city",
                   "countryISO", "changedate")  # fmt: skip
"""A customer as the sandbox answers it (the assumed read shape [U], see connectors/winstore/client.py)."""
READ_ADDRESS = ("fname", "lname", "company", "street", "streetnr", "zip", "city", "country", "countryISO", "phone")
POSTED_STATUS = "1"
"""The status code an order posted through the API starts with [U]."""
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class OrderRefused(Exception):
    """An order document Winstore refuses: `status` (HTTP and status code) and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StockRefused(Exception):
    """A `<stock>` document Winstore refuses [U]: `status` (HTTP and status code) and its message."""

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
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_key: int = 1001
    next_order: int = 1
    next_customer: int = 5001
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
        self._take_stock(order)
        order["id"] = self.next_order
        order["received"] = self.now().isoformat(sep=" ")
        order["statuscode"] = POSTED_STATUS
        order["changedate"] = self.now()
        self.next_order += 1
        self.orders[number] = order
        return order

    def _take_stock(self, order: Mapping[str, Any]) -> None:
        for position in order["positions"]:
            key, warehouse = position["artkey"], position.get("branch") or order["branch"]
            held = self.stock.get((key, warehouse))
            self.set_stock(key, warehouse, (held.quantity if held else Decimal(0)) - position["amount"])

    def ring_up(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """An order made in Winstore itself (at the till, or by another channel), as a user would: `positions`
        name their article by `ArtNr` or `product_id` (key or GTIN); the rest defaults. Stock moves."""
        unknown = set(fields) - ORDER_ELEMENTS - {"statuscode", "orderdate"}
        if unknown:
            raise ValueError(f"unknown order fields: {', '.join(sorted(unknown))}")
        number = str(fields.get("ordernr") or f"K{self.next_order:06d}")
        if number in self.orders:
            raise ValueError(f"order {number} exists already")
        branch = int(fields.get("branch") or min(self.branches))
        positions = []
        for index, given in enumerate(fields.get("positions") or [], 1):
            article = self.article_by_number(str(given.get("ArtNr") or "")) if given.get("ArtNr") else \
                self._article_for(str(given.get("product_id") or ""))  # fmt: skip
            if article is None:
                raise KeyError(f"position {index}: no article {given.get('ArtNr') or given.get('product_id')!r}")
            price = _decimal(given.get("single_price", article.get("SalesPrice") or 0), "single_price")
            position = {"product_id": str(article["ArtKey"]), "artkey": article["ArtKey"],
                        "amount": int(given.get("amount", 1)), "single_price": price, "type": "S", "branch": branch}
            if given.get("reduction") is not None:
                position["reduction"] = _decimal(given["reduction"], "reduction")
            positions.append(position)
        if not positions:
            raise ValueError("an order needs positions")
        total = sum((p["single_price"] * p["amount"] - p.get("reduction", Decimal(0)) for p in positions), Decimal(0))
        order = {"ordernr": number, "orderdate": str(fields.get("orderdate") or self.now().isoformat(sep=" ")),
                 "customerid": int(fields.get("customerid") or 999999), "email": str(fields.get("email") or ""),
                 "branch": branch, "channel": str(fields.get("channel") or "till"), "total": total,
                 "currency": str(fields.get("currency") or "EUR"), "invoice_add": dict(fields.get("invoice_add") or {}),
                 "positions": positions, "id": self.next_order, "statuscode": str(fields.get("statuscode") or "2"),
                 "changedate": self.now()}  # fmt: skip
        self._take_stock(order)
        self.next_order += 1
        self.orders[number] = order
        return order

    # -- stock levels posted (PostStock [U]) ----------------------------------------------------------

    def warehouses(self) -> set[int]:
        """The warehouses Winstore knows: one per branch, and any that holds stock."""
        return set(self.branches) | {w for (_, w) in self.stock}

    def post_stock(self, body: bytes) -> tuple[int, int, StockEntry]:
        """Set an article's level in a warehouse from a `<stock>` document (its change date moves, so
        GetChangedStock* report it); (article key, warehouse, entry), or StockRefused naming what is wrong."""
        values = _document(body, "stock", STOCK_ELEMENTS, StockRefused)
        artkey = _whole(_required_in(values, "artkey", StockRefused), "artkey", StockRefused)
        warehouse = _whole(_required_in(values, "warehouse", StockRefused), "warehouse", StockRefused)
        amount = _required_in(values, "amount", StockRefused)
        if not re.fullmatch(r"-?\d{1,12}(\.\d{1,4})?", amount):
            raise StockRefused(400, f"amount {amount[:20]!r} is not a quantity")
        if artkey not in self.articles:
            raise StockRefused(404, f"Article {artkey} not found")
        if warehouse not in self.warehouses():
            raise StockRefused(400, f"Unknown warehouse {warehouse}")
        return artkey, warehouse, self.set_stock(artkey, warehouse, amount)

    # -- orders' statuses and reads (the assumed endpoints [U]) ---------------------------------------

    def set_status(self, number: str, code: str) -> dict[str, Any]:
        """The order's status code changed (through the API, or by a user); its change date moves."""
        order = self.orders.get(number)
        if order is None:
            raise OrderRefused(404, f"Order {number[:50]} not found")
        if not re.fullmatch(r"\d{1,4}", code):
            raise OrderRefused(400, f"statuscode {code[:10]!r} is not a status code")
        order["statuscode"] = code
        order["changedate"] = self.now()
        return order

    def orders_since(self, since: datetime) -> list[dict[str, Any]]:
        """Orders changed since `since`, in the assumed read shape [U]: the posted document's elements, the
        positions' article key as `product_id` with the article number (`artnr`), `statuscode`, `changedate`."""
        found = sorted((o for o in self.orders.values() if o["changedate"] >= since), key=lambda o: o["id"])
        return [self._read_order(o) for o in found]

    def _read_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        address = {k: order["invoice_add"].get(k) for k in READ_ADDRESS if order["invoice_add"].get(k) is not None}
        positions = []
        for p in order["positions"]:
            article = self.articles.get(p["artkey"], {})
            positions.append({"product_id": str(p["artkey"]), "artnr": article.get("ArtNr"), "amount": p["amount"],
                              "single_price": p["single_price"], "type": p.get("type", "S"),
                              "branch": p.get("branch", order["branch"]), "reduction": p.get("reduction")})  # fmt: skip
        return {"ordernr": order["ordernr"], "orderdate": order["orderdate"], "customerid": order["customerid"],
                "email": order["email"] or None, "branch": order["branch"], "channel": order["channel"] or None,
                "total": order["total"], "currency": order["currency"], "statuscode": order["statuscode"],
                "changedate": order["changedate"], "invoice_add": address, "positions": positions}  # fmt: skip

    # -- customers ------------------------------------------------------------------------------------------

    def upsert_customer(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A customer created (or the one with this `customerid` changed) as a user would; its change date moves."""
        unknown = set(fields) - (set(CUSTOMER_FIELDS) - {"changedate"})
        if unknown:
            raise ValueError(f"unknown customer fields: {', '.join(sorted(unknown))}")
        if fields.get("customerid") is not None:
            customer = self.customers.get(int(fields["customerid"]))
            if customer is None:
                customer = {name: None for name in CUSTOMER_FIELDS} | {"customerid": int(fields["customerid"])}
                self.customers[customer["customerid"]] = customer
        else:
            customer = {name: None for name in CUSTOMER_FIELDS} | {"customerid": self.next_customer}
            self.next_customer += 1
            self.customers[customer["customerid"]] = customer
        for name, value in fields.items():
            if name != "customerid":
                customer[name] = None if value is None else str(value)
        customer["changedate"] = self.now()
        return customer

    def customers_since(self, since: datetime) -> list[dict[str, Any]]:
        found = (c for c in self.customers.values() if c["changedate"] >= since)
        return sorted(found, key=lambda c: c["customerid"])

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


def status_of(body: bytes) -> tuple[str, str]:
    """(ordernr, statuscode) from `<order><ordernr/><statuscode/></order>` [U], read strictly; OrderRefused."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise OrderRefused(400, "DTDs are not accepted")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entity expansion
    except ET.ParseError as exc:
        raise OrderRefused(400, f"The document is not well-formed XML: {exc}") from None
    if root.tag != "order":
        raise OrderRefused(400, f"The root element must be order, not {root.tag}")
    values = {child.tag: (child.text or "").strip() for child in root}
    _known(values, frozenset({"ordernr", "statuscode"}), "order")
    return _required(values, "ordernr"), _required(values, "statuscode")


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


def _document(body: bytes, root: str, known: frozenset[str], refused: type[StockRefused]) -> dict[str, str]:
    """A flat XML document's elements as text, read strictly (its root, known elements, each once)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise refused(400, "DTDs are not accepted")
    try:
        element = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entity expansion
    except ET.ParseError as exc:
        raise refused(400, f"The {root} is not well-formed XML: {exc}") from None
    if element.tag != root:
        raise refused(400, f"The root element must be {root}, not {element.tag}")
    values = {child.tag: (child.text or "").strip() for child in element}
    unknown = sorted(set(values) - known)
    if unknown:
        raise refused(400, f"{root}: unknown element {unknown[0]}")
    if len(values) != len(element):
        raise refused(400, f"A {root} element occurs twice")
    return values


def _required_in(values: Mapping[str, str], name: str, refused: type[StockRefused]) -> str:
    if not values.get(name):
        raise refused(400, f"{name} is required")
    return values[name]


def _whole(value: str, what: str, refused: type[StockRefused]) -> int:
    if not re.fullmatch(r"\d{1,12}", value):
        raise refused(400, f"{what} {value[:20]!r} is not a whole number")
    return int(value)
