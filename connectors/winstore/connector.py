"""Winstore (ACA's retail and till system) as a `Source` (articles, stock, orders and customers, polled by date)
and a `Target` (orders posted into it, the status of its own orders, stock levels set in it), on its web
service `…/iposws/api/osd`.

    [[systems]]
    id = "winstore"
    kind = "winstore"
    base_url = "https://winstore-c.aca.nl/iposws/api/osd"
    [systems.credentials]
    username = "env:WINSTORE_USER"              # the web service user (HTTP Basic)
    password = "env:WINSTORE_PASSWORD"
    [systems.settings]
    poll_interval_seconds = 60                  # how often articles and stock are read
    branch = 1                                  # the branch (filiaal) orders are booked on, and their lines
    channel = "webshop"                         # the sales channel of Koppel's orders (its own: see below)
    default_customer_id = 999999                # Winstore's customer for webshop orders
    warehouses = [1, 2]                         # the warehouses whose stock counts (empty: all, as a total)
    timezone = "Europe/Amsterdam"               # how Winstore's dates without an offset are read
    initial_lookback_seconds = 86400            # how far back the first poll reads
    overlap_seconds = 300                       # how far behind its cursor each poll starts again
    stock_warehouse = 1                         # the warehouse whose level Koppel sets (default: the one of warehouses)
    status_names = { 0 = "pending", 1 = "processing", 2 = "completed", 9 = "cancelled" }   # [U] the default
    endpoints = { orders = "GetOrdersByDate" }  # [U] an assumed endpoint's name, corrected (client.ASSUMED_ENDPOINTS)

What is known of Winstore's API comes from one public client (the PHP package onetoweb/winstore), not
from documentation; ../shared/docs/PLATFORMS.md §5. Known [V] from that client: the base URL, HTTP Basic,
the endpoints and their query parameters, the `<order>` document's elements, `Accept: application/json`
honoured, answers typed by Content-Type. Unverified [U], built as guessed and tolerant of other spellings:

* Field names of articles and stock (normalise.py lists the spellings read). The sandbox answers the
  first of each (`ArtKey`, `ArtNr`, `Gtin`, `Description`, `SalesPrice`, `VatPercentage`, `ChangeDate`,
  `Warehouse`, `Stock`).
* `PostOrderWithStatusCode`'s answer: the client reads a status code and a message (client.py); a
  status of 400 and up is a refusal even under HTTP 200. Whether Winstore refuses an ordernr it holds
  already is unknown; the sandbox does (409, "already exists"), and this target then takes the order as
  booked by an earlier attempt.
* `position/product_id`: the default mapping sends the article key (`ArtKey`) Koppel found for the
  line's SKU; the public client's example uses a 12-digit number, which may be a GTIN instead. Change
  the mapping (`product_id = "ean"`…) if Winstore wants that.
* `invoice_add/city`: the public client sets a city but never writes it into the document (a bug, by
  the look of it); Koppel sends it.
* Dates: the `date` parameter is sent as ATOM in UTC; that Winstore honours the offset is assumed.
* Orders and customers *from* Winstore, and order status *into* it: APIcenter sells these, so the API has
  them, but their names and shapes are not public. Built against an assumed surface that follows the
  known API's naming, in one table (`client.ASSUMED_ENDPOINTS`): `GetOrdersByDate?date=` and
  `GetCustomerDataChangesByDate?date=` (changed since, like the article read) and `PostOrderStatus` (XML
  `<order><ordernr/><statuscode/></order>`, answered like an order post). `settings.endpoints` overrides
  a name (keys checked against the table) once Winstore's own documentation says otherwise. Assumed read
  shapes: an order has the posted `<order>` document's elements (ordernr, orderdate, customerid, email,
  branch, channel, total, currency, invoice_add{fname, lname, company, street, streetnr, zip, city,
  country, countryISO, phone}, positions/position{product_id, amount, single_price, type, branch,
  reduction}) plus `statuscode` and `changedate`; a customer: customerid, company, fname, lname, email,
  phone, street, streetnr, zip, city, countryISO, changedate. Readers take other spellings too
  (normalise.py `ORDER`, `POSITION`, `CUSTOMER`).
* A position's article: the read's `product_id` is the article key (as Koppel posts it). Its SKU is the
  article number: the position's own `artnr` when the read gives one (the sandbox does), else the
  connector looks the key up in the catalogue (`GetArticleDataChangesByDate` since 2000, once, cached a
  day per system) and adds `artnr` and the article's VAT percentage (`vat`) to the record before it
  becomes an event. Whether Winstore's read names the VAT rate of a position is unknown; without a rate
  the amounts excl. VAT stay unknown (a target booking excl. VAT then needs one).
* `reduction` is read as the position's discount in money, VAT included, for the whole position
  (amount * single_price - reduction is what was paid).
* Status codes: not public. `normalise.DEFAULT_STATUS_NAMES` (0 pending, 1 processing, 2 completed,
  9 cancelled) names them, `settings.status_names` replaces the table; a code not in it travels as
  itself. An integration's `order_statuses` filter takes names or codes (`["2"]`). An order posted
  through `PostOrderWithStatusCode` starts at 1 in the sandbox.
* Stock into Winstore [U]: `PostStock` (`ASSUMED_ENDPOINTS["stock"]`) takes
  `<stock><artkey/><warehouse/><amount/></stock>`, the article's absolute level in that warehouse (not
  a change), and answers like `PostOrderWithStatusCode` (a status code of 400 and up is a refusal; a 404
  an article Winstore no longer has). That `artkey` is the article key (`ArtKey`, as `GetStock` takes
  it) and that a level may go below zero (sent as computed: a till sells below zero) are assumed too.

Quirks Koppel handles:

* No webhooks: every stream is polled by date. A change date has second resolution and a change may be
  committed after a later one was read, so each poll starts `overlap_seconds` before its cursor (the
  newest change date read); what the overlap reads again keeps its delivery key (article key, change
  date and a digest of the article's fields, or of its stock) and is not processed twice. Winstore answers a whole
  window at once (no paging); the connector hands it to the poller in pages of `PAGE_SIZE`, in change
  order, each page's cursor its newest change.
* Simple products only: no variants, categories or images (normalise.py).
* Stock per warehouse (`GetChangedStockWithWarehouse`, `outOfStock=1` so that a sale to zero is seen);
  with `warehouses` set, an article's stock is the sum over those warehouses: a change in one of them
  reads the others of that article (`GetStock`) when the answer did not bring them — or, for more than
  `FILL_IN_LIMIT` such articles (a stock count), every article's stock in one call. Without
  `warehouses`, the total (`GetChangedStock`).
* No order lookup by number: the orders read is by change date only. `find_order` answers from what
  this connector recorded of its own posts (ordernr → id, written the moment Winstore accepted the order);
  an attempt that died between Winstore's acceptance and that record — or whose answer was lost (a
  timeout) — is found only if Winstore refuses the repeated ordernr. Exactly-once rests on the flow's
  ledger and in-flight marker. `order_status` (the status write-back) answers from the status codes the
  orders poll last saw (or Koppel last wrote), else from one read of the orders changed in the last
  `ORDER_LOOKBACK` (90 days); an order older than that is "not a Winstore order".
* Never in a loop: an order Koppel posted into Winstore (recorded as posted, or in the system's own
  `channel`) is another system's order, left out of the orders stream; the origin recorded with the post
  (the mapping's `koppel_origin`, "<system id>:<order id>", stripped before sending) is also put on the
  order when such an event is read all the same (`Order.origin`), so the orders flow never books it back
  into the system it came from.
* Statuses back: `order_modes` is ("book", "status"). An order Winstore gave an ERP gets the ERP's
  status written back (`PostOrderStatus`) by an integration ERP → Winstore (`order_mode` "status" or
  "both"); Koppel's names (`completed`) become codes through the status table (`status_code`). An order
  Koppel booked into Winstore gets its source's later status the same way (Exact cancelled → 9).
* Winstore keeps no customer accounts Koppel writes: an order carries its customer (`customerid`, default
  999999, with the e-mail and invoice address), so booking needs no customer lookup
  (`customer_accounts = False`). Customers are read (a company when `company` is filled, else a person).
* Stock is set, never changed by a delta: the level is written into one warehouse, `stock_warehouse`
  (default: the only entry of `warehouses`; with several or none it must be set, and `koppel config
  check` says so for an integration writing stock into the system). The article is found by article
  number, else GTIN: the catalogue (`GetArticleDataChangesByDate` since 2000) is read once and every
  number and GTIN in it cached a day, so a burst of levels costs one catalogue read; a cached key is
  checked by its `GetStock` (a 404, or rows naming another article, drop it and the catalogue is read
  again). The current level is the warehouse's row of `GetStock` (none listed: 0); an unchanged level
  is not written. Cost: 2 calls (`GetStock` + `PostStock`) for a cached article, 1 when unchanged.
* No writes of products or customers are known: Winstore takes orders, order statuses and stock levels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from connectors.contract import Canonical, Change, Context, Settings, Source, StockRecord, Target
from connectors.winstore.client import ASSUMED_ENDPOINTS, DUPLICATE_WORDS, WinstoreClient, atom
from connectors.winstore.errors import WinstoreNotFound, WinstoreRequestError
from connectors.winstore.normalise import (
    ARTICLE,
    DEFAULT_STATUS_NAMES,
    ORDER,
    POSITION,
    STOCK,
    article_key,
    change_time,
    customer_id,
    field,
    normalise_customer,
    normalise_order,
    normalise_product,
    normalise_stock,
    order_number,
    positions_of,
    sku_of,
)
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import PermanentError

__all__ = ["PAGE_SIZE", "WinstoreSettings", "WinstoreSource", "WinstoreTarget", "client"]

log = logging.getLogger(__name__)

KIND = "winstore"
PAGE_SIZE = 500
CATALOGUE_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
"""A date before any article changed: `GetArticleDataChangesByDate` from then is the whole catalogue."""
POSTED_TTL = 90 * 24 * 3600
FILL_IN_LIMIT = 20
"""More changed articles than this lacking a chosen warehouse: all stock is read in one call, not one per article."""
STREAMS = {"products": "articles", "stock": "stock", "orders": "orders", "customers": "customers"}
ID_CACHE_TTL = 24 * 3600
"""How long the map of article numbers (and GTINs) to article keys is kept, for orders and stock written."""
_ENDPOINT = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
ORDER_LOOKBACK = timedelta(days=90)
"""How far back `WinstoreTarget.order_status` reads orders it has not seen in a poll (no read by number)."""
ARTICLE_CACHE_TTL = 24 * 3600
ORDERS_REREAD_SECONDS = 300
"""After reading the last `ORDER_LOOKBACK` of orders for a status, an order not among them is not read for again
for this long (the orders poll keeps the statuses it sees meanwhile)."""


class WinstoreSettings(Settings):
    credentials = ("username", "password")
    needs_base_url = True

    branch: int | None = Field(default=None, ge=0)
    """The branch (filiaal) orders are booked on, and their lines; required to book orders."""
    channel: str | None = None
    """The order's sales channel (`<channel>`)."""
    default_customer_id: int = Field(default=999999, ge=0)
    """Winstore's customer number for the orders Koppel books (`<customerid>`)."""
    warehouses: list[int] = []
    """The warehouses whose stock counts, summed; empty: the total over all."""
    timezone: str = "Europe/Amsterdam"
    initial_lookback_seconds: int = Field(default=86400, ge=0)
    overlap_seconds: int = Field(default=300, ge=1)
    status_names: dict[str, str] = {}
    """Winstore's order status codes → Koppel's names (pending, processing, completed, cancelled…); empty:
    normalise.DEFAULT_STATUS_NAMES [U]. Orders travel by these names or their codes (`order_statuses`)."""
    endpoints: dict[str, str] = {}
    """Names of the assumed endpoints [U] (client.ASSUMED_ENDPOINTS) as this Winstore has them: {"stock": "…"}."""
    stock_warehouse: int | None = Field(default=None, ge=0)
    """The warehouse whose stock level Koppel sets (stock into Winstore); default: the one of `warehouses`."""

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: dict[str, str]) -> dict[str, str]:
        for key, name in value.items():
            if key not in ASSUMED_ENDPOINTS:
                raise ValueError(f"unknown key {key!r}; known: {', '.join(ASSUMED_ENDPOINTS)}")
            if not _ENDPOINT.match(name):
                raise ValueError(f"{key}: {name[:60]!r} is not an endpoint name (letters, digits, '_', '-', '/')")
        return value

    def status_table(self) -> dict[str, str]:
        return dict(self.status_names) or dict(DEFAULT_STATUS_NAMES)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Amsterdam)") from None
        return value

    @field_validator("warehouses")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("lists a warehouse twice")
        return value

    def check(self, system: System) -> list[str]:
        base = system.base_url or ""
        if base and not base.startswith("https://") and not _loopback(base):
            return ["base_url: must be https:// (HTTP Basic would send the password in the clear)"]
        return []


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return url.startswith("http://") and (host in ("localhost", "::1") or host.startswith("127."))


def settings_of(system: System) -> WinstoreSettings:
    found = WinstoreSettings.of(system)
    assert isinstance(found, WinstoreSettings)
    return found


def client(system: System, context: Context) -> WinstoreClient:
    """A client for the system, on the process's shared HTTP client."""
    settings = settings_of(system)  # base URL and credentials present, settings valid: else a PermanentError
    assert system.base_url is not None
    username, password = (system.credentials[name].get_secret_value() for name in WinstoreSettings.credentials)
    return WinstoreClient(context.http, base_url=system.base_url, username=username, password=password,
                          endpoints=settings.endpoints)  # fmt: skip


def _client(system: System, context: Context) -> WinstoreClient:
    return context.cached(f"winstore:{system.id}", lambda: client(system, context))  # type: ignore[no-any-return]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _posted(system_id: str) -> str:
    """ordernr → Winstore's id of every order this connector posted (and Winstore accepted)."""
    return keys.cache(system_id, "posted_orders")


def _posted_origins(system_id: str) -> str:
    """ordernr → `Order.origin` ("<system id>:<order id>") of the order Koppel posted it from."""
    return keys.cache(system_id, "posted_origins")


def _posted_numbers(system_id: str) -> str:
    """Winstore's id → ordernr of the orders this connector posted."""
    return keys.cache(system_id, "posted_numbers")


def _statuses(system_id: str) -> str:
    """ordernr → the status code last seen (a poll, or a status Koppel wrote): Winstore reads no order by number."""
    return keys.cache(system_id, "order_statuses")


class WinstoreSource(Source):
    """Articles (`products`), stock (`stock`), orders (`orders`) and customers (`customers`), polled by date."""

    kind = KIND
    title = "Winstore"
    resources: ClassVar[Mapping[str, str]] = {"article": "products", "stock": "stock", "order": "orders",
                                              "customer": "customers"}  # fmt: skip
    streams: ClassVar[Mapping[str, str]] = STREAMS
    booked_statuses: ClassVar[tuple[str, ...]] = ("processing", "completed")

    def _zone(self) -> str:
        return settings_of(self.system).timezone if self.system is not None else "Europe/Amsterdam"

    def version(self, flow: str, record: Any) -> str | None:
        """`<article key>:<change date>:<digest>`: of the article's fields (products) or of its stock, reserved
        stock and warehouses (stock). The digest tells two changes within one second apart; the date tells
        a stock level reached again (5 → 4 → 5) from the first time it was."""
        if not isinstance(record, Mapping) or flow not in STREAMS or _identity(flow, record) is None:
            return None
        return _version(record, self._zone(), flow)

    def read(self, envelope: Envelope, flow: str) -> Any:
        """The polled record; an order Koppel posted into Winstore gets the origin recorded then (`koppel_origin`,
        read into `Order.origin`), so it is never booked back into the system it came from."""
        record = envelope.payload
        if flow != "orders" or not isinstance(record, Mapping) or self.system is None or self.context is None:
            return record
        number = order_number(record)
        origin = self.context.redis.hget(_posted_origins(self.system.id), number) if number else None
        return {**record, "koppel_origin": keys.text(origin)} if origin else record

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "products":
            return normalise_product(record, zone=self._zone())
        if flow == "stock":
            return normalise_stock(record, zone=self._zone())
        if flow == "orders":
            names = settings_of(self.system).status_table() if self.system is not None else None
            return normalise_order(record, zone=self._zone(), status_names=names)
        if flow == "customers":
            return normalise_customer(record, zone=self._zone())
        return super().normalise(flow, record, settings)

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        system = self.require_system("polling Winstore")
        assert self.context is not None
        if stream not in STREAMS.values():
            raise PermanentError(f"cannot poll Winstore stream {stream!r}; known: {', '.join(STREAMS.values())}")
        settings = settings_of(system)
        now = datetime.now(UTC)
        if cursor is None:
            since = now - timedelta(seconds=settings.initial_lookback_seconds)
            floor = atom(since)
        else:
            try:
                parsed = datetime.fromisoformat(cursor)
            except ValueError:
                raise PermanentError(f"Winstore poll cursor {cursor!r} is not a date; delete it to restart") from None
            since, floor = parsed - timedelta(seconds=settings.overlap_seconds), cursor
        api = _client(system, self.context)
        zone = settings.timezone
        if stream == "articles":
            found = [(r, change_time(r, zone)) for r in api.articles_changed(since) if article_key(r)]
            changes = [(self._article_change(r, zone), moment) for r, moment in found]
        elif stream == "orders":
            changes = self._order_changes(api, system, settings, since)
        elif stream == "customers":
            changes = [(Change("customer", customer_id(r), f"customer.sync:{_version(r, zone, 'customers')}", r),
                        change_time(r, zone)) for r in api.customers_changed(since) if customer_id(r)]  # fmt: skip
        else:
            changes = self._stock_changes(api, settings, since)
        return _pages(changes, floor)

    def _order_changes(
        self, api: WinstoreClient, system: System, settings: WinstoreSettings, since: datetime
    ) -> list[tuple[Change, datetime | None]]:
        """Orders changed since `since`, less the ones Koppel posted into Winstore itself (recorded as posted, or
        in the system's own `channel`): those are another system's orders, never booked back as new ones. Each
        position gets its article's number and VAT percentage when the read lacks them (`_articles`)."""
        assert self.context is not None
        zone, redis = settings.timezone, self.context.redis
        found = [r for r in api.orders_changed(since) if order_number(r)]
        posted = redis.hmget(_posted(system.id), [str(order_number(r)) for r in found]) if found else []
        mine = {(settings.channel or "").casefold()} - {""}
        orders = [r for r, was in zip(found, posted, strict=True)
                  if not was and str(field(r, *ORDER["channel"]) or "").casefold() not in mine]  # fmt: skip
        if len(orders) < len(found):
            log.info("%s: %d order(s) Koppel posted into Winstore left out of the orders stream", system.id,
                     len(found) - len(orders))  # fmt: skip
        orders = self._articles(api, system, orders)
        # every order's status (Koppel's own too: their source's status may be written back to them)
        statuses = {order_number(r): str(field(r, *ORDER["status"])) for r in found if field(r, *ORDER["status"])}
        if statuses:
            with redis.pipeline(transaction=False) as pipe:
                pipe.hset(_statuses(system.id), mapping=statuses)  # type: ignore[arg-type]
                pipe.expire(_statuses(system.id), POSTED_TTL)
                pipe.execute()
        return [(Change("order", order_number(r), f"order.sync:{_version(r, zone, 'orders')}", r), change_time(r, zone))
                for r in orders]  # fmt: skip

    def _articles(self, api: WinstoreClient, system: System, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The orders with each position's article number (`artnr`) and VAT percentage (`vat`) where the read
        lacks them, by its article key (`product_id`): from a day's cache, else one read of the catalogue."""
        assert self.context is not None
        wanted = {str(field(p, *POSITION["key"])) for r in orders for p in positions_of(r)
                  if field(p, *POSITION["key"]) is not None and
                  (field(p, *POSITION["number"]) is None or field(p, *POSITION["vat"]) is None)}  # fmt: skip
        if not wanted:
            return orders
        cache, redis = keys.cache(system.id, "order_articles"), self.context.redis
        ordered = sorted(wanted)
        known = {k: json.loads(keys.text(v)) for k, v in zip(ordered, redis.hmget(cache, ordered), strict=True) if v}
        if set(ordered) - set(known):
            catalogue = {key: [sku_of(a), field(a, *ARTICLE["vat"])] for a in api.articles_changed(CATALOGUE_SINCE)
                         if (key := article_key(a)) is not None}  # fmt: skip
            if catalogue:
                with redis.pipeline(transaction=False) as pipe:
                    pipe.hset(cache, mapping={k: json.dumps(v, default=str) for k, v in catalogue.items()})
                    pipe.expire(cache, ARTICLE_CACHE_TTL)
                    pipe.execute()
            known |= {k: v for k, v in catalogue.items() if k in wanted}
        out = []
        for order in orders:
            positions = []
            for position in positions_of(order):
                key = field(position, *POSITION["key"])
                number, vat = known.get(str(key), [None, None]) if key is not None else [None, None]
                extra = {"artnr": number} if field(position, *POSITION["number"]) is None and number else {}
                extra |= {"vat": str(vat)} if field(position, *POSITION["vat"]) is None and vat is not None else {}
                positions.append({**position, **extra})
            name = next((n for n in order if n.casefold() in {p.casefold() for p in ORDER["positions"]}), "positions")
            out.append({**order, name: positions})
        return out

    def _article_change(self, record: dict[str, Any], zone: str) -> Change:
        return Change("article", article_key(record), f"article.sync:{_version(record, zone, 'products')}", record)

    def _stock_changes(
        self, api: WinstoreClient, settings: WinstoreSettings, since: datetime
    ) -> list[tuple[Change, datetime | None]]:
        zone = settings.timezone
        if not settings.warehouses:
            rows = api.stock_changed(since)
            return [_stock_change(row, zone) for row in rows if article_key(row)]
        wanted = {str(w) for w in settings.warehouses}
        by_article: dict[str, list[dict[str, Any]]] = {}
        for row in api.stock_changed_by_warehouse(since):
            key = article_key(row)
            if key is not None and _warehouse(row) in wanted:
                by_article.setdefault(key, []).append(row)
        held = {key: {_warehouse(row): row for row in rows} for key, rows in by_article.items()}
        lacking = [key for key, found in held.items() if wanted - set(found)]
        if len(lacking) > FILL_IN_LIMIT:  # a stock count: every article's stock at once beats a call per article
            for row in api.stock_changed_by_warehouse(CATALOGUE_SINCE):
                key = article_key(row)
                if key in held and _warehouse(row) in wanted:
                    held[key].setdefault(_warehouse(row), row)
        else:
            for key in lacking:  # the article's other warehouses, unchanged since
                for row in api.stock_by_key(key):
                    if _warehouse(row) in wanted:
                        held[key].setdefault(_warehouse(row), row)
        return [_stock_change(_summed(key, rows[0], held[key], sorted(wanted), zone), zone)
                for key, rows in by_article.items()]  # fmt: skip


def _warehouse(row: Mapping[str, Any]) -> str:
    return str(field(row, *STOCK["warehouse"]) or "")


def _newest(rows: Iterable[Mapping[str, Any]], zone: str) -> datetime | None:
    moments = [m for m in (change_time(r, zone) for r in rows) if m is not None]
    return max(moments) if moments else None


def _quantities(record: Mapping[str, Any]) -> Any:
    return [field(record, *STOCK["quantity"]), field(record, *STOCK["reserved"]), field(record, *STOCK["warehouse"])]


def _summed(
    key: str, first: Mapping[str, Any], held: Mapping[str, Mapping[str, Any]], wanted: list[str], zone: str
) -> dict[str, Any]:
    """One stock record of an article over the wanted warehouses (a warehouse Winstore did not list holds 0)."""

    def amount(row: Mapping[str, Any] | None, names: tuple[str, ...]) -> Decimal:
        value = field(row, *names) if row is not None else None
        try:
            return Decimal(str(value).replace(",", ".")) if value is not None else Decimal(0)
        except ArithmeticError:
            raise PermanentError(f"winstore article {key}: stock {str(value)[:30]!r} is not a number") from None

    summed = {n.lower() for n in (*STOCK["quantity"], *STOCK["reserved"], *STOCK["warehouse"])}
    record = {k: v for k, v in first.items() if k.lower() not in summed}
    record["Stock"] = str(sum((amount(held.get(w), STOCK["quantity"]) for w in wanted), Decimal(0)))
    record["Reserved"] = str(sum((amount(held.get(w), STOCK["reserved"]) for w in wanted), Decimal(0)))
    record["Warehouse"] = ",".join(wanted)
    newest = _newest(held.values(), zone)  # of every warehouse counted: the same however the window fell
    summed_date = {n.lower() for n in ARTICLE["changed"]}
    record = {k: v for k, v in record.items() if k.lower() not in summed_date}
    if newest is not None:
        record["ChangeDate"] = atom(newest)
    record["ArtKey"] = key
    if sku_of(record) is None:
        for row in held.values():
            if sku_of(row) is not None:
                record["ArtNr"] = sku_of(row)
                break
    return record


def _stock_change(record: dict[str, Any], zone: str) -> tuple[Change, datetime | None]:
    change = Change("stock", article_key(record), f"stock.sync:{_version(record, zone, 'stock')}", record)
    return change, change_time(record, zone)


def _identity(flow: str, record: Mapping[str, Any]) -> str | None:
    """The record's key in its stream: the article key, the ordernr or the customer id."""
    if flow == "orders":
        return order_number(record)
    if flow == "customers":
        return customer_id(record)
    return article_key(record)


def _version(record: Mapping[str, Any], zone: str, flow: str) -> str:
    moment = change_time(record, zone)
    digest = _digest(_quantities(record) if flow == "stock" else record)
    return f"{_identity(flow, record)}:{atom(moment) if moment is not None else '-'}:{digest}"


def _pages(changes: list[tuple[Change, datetime | None]], floor: str) -> Iterator[tuple[list[Change], str]]:
    """The changes in change order, `PAGE_SIZE` a page, each with its newest change date as the cursor (a
    change without a date sorts first and moves no cursor)."""
    ordered = sorted(changes, key=lambda pair: (pair[1] is not None, pair[1] or datetime.min.replace(tzinfo=UTC)))
    cursor = floor
    if not ordered:
        yield [], cursor
        return
    for start in range(0, len(ordered), PAGE_SIZE):
        page = ordered[start : start + PAGE_SIZE]
        moments = [m for _, m in page if m is not None]
        if moments:
            newest = atom(max(moments))
            cursor = max(cursor, newest, key=lambda c: datetime.fromisoformat(c))
        yield [change for change, _ in page], cursor


class WinstoreTarget(Target):
    """Orders booked in Winstore (`PostOrderWithStatusCode`), the status of Winstore's own orders written
    back (`PostOrderStatus` [U]), and stock levels set in one warehouse (the assumed `PostStock`); see the
    module docstring."""

    kind = KIND
    title = "Winstore"
    writes = frozenset({"orders", "stock"})
    order_modes = ("book", "status")
    documents = ("order",)
    customer_accounts = False

    @property
    def api(self) -> WinstoreClient:
        return _client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.api.calls

    @classmethod
    def discount_lines_of(cls, settings: Mapping[str, Any]) -> str:
        """Default "in_lines": a till's order line is sold at the price paid (no discount articles needed)."""
        value = settings.get("discount_lines")
        problem = cls.discount_lines_problem(value)
        if problem is not None:
            raise PermanentError(f"settings.discount_lines {value!r}: {problem}")
        return str(value) if value is not None else "in_lines"

    # -- orders ------------------------------------------------------------------------------------

    @classmethod
    def booking_problems(cls, system: System) -> list[str]:
        settings, _ = WinstoreSettings.validate_system(system)
        if isinstance(settings, WinstoreSettings) and settings.branch is None:
            return [f"{system.id} books orders on systems.settings.branch (the branch number); it is not set"]
        return []

    def _posted(self) -> str:
        return _posted(self.system.id)

    def references(self, document: str) -> dict[str, Any]:
        """`$context.customer`, `.branch`, `.channel`, `.timezone` for the order document, from the settings."""
        settings = settings_of(self.system)
        if settings.branch is None:
            raise PermanentError(f"systems.{self.system.id}.settings.branch: required to book orders in Winstore "
                                 "(the branch number the orders and their lines are booked on)")  # fmt: skip
        refs: dict[str, Any] = {"customer": settings.default_customer_id, "branch": settings.branch,
                                "timezone": settings.timezone}
        if settings.channel:
            refs["channel"] = settings.channel
        return refs

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        """What this connector recorded when Winstore accepted the order `number`; Winstore itself cannot be
        asked (no order reading in its API)."""
        found = self.context.redis.hget(self._posted(), number)
        return keys.text(found) if found else None

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        number = str(payload.get("ordernr") or "")
        if not number:
            raise PermanentError("a Winstore order needs its ordernr (the mapping gave none)")
        origin = str(payload.get("koppel_origin") or "")  # Koppel's own mark (the mapping's), not sent
        payload = {k: v for k, v in payload.items() if k != "koppel_origin"}
        try:
            answer = self.api.post_order(payload)
        except WinstoreRequestError as exc:
            if exc.status != 409 and not any(word in str(exc).lower() for word in DUPLICATE_WORDS):
                raise
            # Winstore holds this ordernr already: an earlier attempt's post landed (its answer lost, or
            # the worker died before the ledger): the id recorded then, else the ordernr.
            order_id = self.find_order(document, number) or number
            log.info("order %s is in Winstore already (%s); taken as booked", number, exc.message or exc.status)
        else:
            order_id = answer.order_id
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._posted(), number, order_id)
            pipe.hset(_posted_numbers(self.system.id), order_id, number)
            if origin:
                pipe.hset(_posted_origins(self.system.id), number, origin)
            for key in (self._posted(), _posted_numbers(self.system.id), _posted_origins(self.system.id)):
                pipe.expire(key, POSTED_TTL)
            pipe.execute()
        return order_id

    # -- statuses ----------------------------------------------------------------------------------

    def _number_of(self, order_id: str) -> str | None:
        """The ordernr of the order Winstore gave `order_id` when this connector posted it."""
        redis = self.context.redis
        found = redis.hget(_posted_numbers(self.system.id), order_id)
        if found:
            return keys.text(found)
        for number, posted in redis.hscan_iter(self._posted()):  # posted before the reverse record was kept
            if keys.text(posted) == order_id:
                return keys.text(number)
        return None

    def order_status(self, reference: str, *, by_id: bool = False) -> tuple[str, str] | None:
        """(ordernr, status code) of Winstore's order `reference` (`by_id`: the id Winstore gave an order Koppel
        posted). Winstore reads no order by number: the status the last poll of its orders saw (or Koppel
        wrote), else the orders changed in the last `ORDER_LOOKBACK`, read once and remembered (not read again
        within `ORDERS_REREAD_SECONDS` for another unknown one)."""
        number = self._number_of(reference) if by_id else reference
        if not number:
            return None
        redis, statuses = self.context.redis, _statuses(self.system.id)
        known = redis.hget(statuses, number)
        if known is not None:
            return number, keys.text(known)
        read_lately = keys.cache(self.system.id, "order_statuses_read")
        if redis.exists(read_lately):  # every recent order was read a moment ago: this one is not among them
            return None
        lately = self.api.orders_changed(datetime.now(UTC) - ORDER_LOOKBACK)
        seen = {str(order_number(r)): str(field(r, *ORDER["status"]) or "") for r in lately if order_number(r)}
        with redis.pipeline(transaction=False) as pipe:
            if seen:
                pipe.hset(statuses, mapping=seen)  # type: ignore[arg-type]
                pipe.expire(statuses, POSTED_TTL)
            pipe.set(read_lately, "1", ex=ORDERS_REREAD_SECONDS)
            pipe.execute()
        return (number, seen[number]) if number in seen else None

    def order_email(self, target_id: str) -> str | None:
        """The e-mail address of Winstore's order `target_id` (its ordernr), from the orders changed lately."""
        for record in self.api.orders_changed(datetime.now(UTC) - ORDER_LOOKBACK):
            if order_number(record) == target_id:
                email = field(record, *ORDER["email"])
                return str(email) if email else None
        return None

    def status_code(self, status: str) -> str:
        """A status code as it is; one of Koppel's names (`completed`) as the system's status table codes it."""
        if status.isdigit():
            return status
        table = settings_of(self.system).status_table()
        for code, name in table.items():
            if name == status:
                return code
        raise PermanentError(f"{self.system.id}: Winstore has no status code for {status!r}; name it in "
                             f"systems.{self.system.id}.settings.status_names (code = name) or map it to a code in "
                             "the integration's order_statuses table")  # fmt: skip

    def set_order_status(self, target_id: str, status: str) -> None:
        """`PostOrderStatus` [U] for the ordernr `target_id` (as `order_status` gave it)."""
        code = self.status_code(status)
        self.api.post_order_status(target_id, code)
        self.context.redis.hset(_statuses(self.system.id), target_id, code)

    # -- items -------------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        """{sku: article key} by article number (or GTIN): Winstore looks articles up by key or GTIN only, so
        the catalogue is read (`GetArticleDataChangesByDate` since 2000) and every number and GTIN in it kept
        a day (`_articles_by_number`); SKUs all found there cost no call. A booking Winstore refuses drops
        that map (`forget`), so a renumbered or deleted article is looked up afresh."""
        wanted = {sku.casefold(): sku for sku in skus}
        if not wanted:
            return {}
        folded = sorted(wanted)
        held = self.context.redis.hmget(self._article_ids(), folded)
        catalogue = {f: keys.text(v) for f, v in zip(folded, held, strict=True) if v}
        if len(catalogue) < len(folded):
            catalogue = self._articles_by_number()
        return {sku: catalogue[f] for f, sku in wanted.items() if f in catalogue}

    def _articles_by_number(self) -> dict[str, str]:
        """The catalogue read (`_catalogue`) and kept a day: {article number or GTIN, case-folded: key}."""
        catalogue = self._catalogue()
        if catalogue:
            with self.context.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._article_ids())
                pipe.hset(self._article_ids(), mapping=catalogue)  # type: ignore[arg-type]
                pipe.expire(self._article_ids(), ID_CACHE_TTL)
                pipe.execute()
        return catalogue

    def _catalogue(self) -> dict[str, str]:
        """{article number or GTIN, case-folded: article key} of every article; a number before a GTIN."""
        numbers: dict[str, str] = {}
        gtins: dict[str, str] = {}
        for record in self.api.articles_changed(CATALOGUE_SINCE):
            key = article_key(record)
            if key is None:
                continue
            number, gtin = sku_of(record), field(record, *ARTICLE["gtin"])
            if number is not None:
                numbers.setdefault(str(number).casefold(), key)
            if gtin is not None:
                gtins.setdefault(str(gtin).strip().casefold(), key)
        return gtins | numbers

    # -- stock -------------------------------------------------------------------------------------

    @classmethod
    def stock_problems(cls, system: System) -> list[str]:
        settings, _ = WinstoreSettings.validate_system(system)
        if isinstance(settings, WinstoreSettings) and _stock_warehouse(settings) is None:
            return [f"{system.id} takes stock into one warehouse: set systems.settings.stock_warehouse "
                    "(the warehouse number)"]  # fmt: skip
        return []

    def _article_ids(self) -> str:
        return keys.cache(self.system.id, "article_ids")

    def _warehouse(self) -> int:
        chosen = _stock_warehouse(settings_of(self.system))
        if chosen is None:
            raise PermanentError(f"systems.{self.system.id}.settings.stock_warehouse: required to write stock into "
                                 "Winstore (the warehouse whose level Koppel sets; settings.warehouses lists "
                                 "several or none)")  # fmt: skip
        return chosen

    def find_stock(self, sku: str) -> StockRecord | None:
        """The article with this article number (or GTIN) and its stock in the `stock_warehouse`, or None.
        Article key by the cached key first (`GetStock` by key; a 404, or rows naming another article, drop
        it), else from the catalogue, whose every number and GTIN is cached then (a day)."""
        warehouse = self._warehouse()
        redis, cache, folded = self.context.redis, self._article_ids(), sku.casefold()
        cached = redis.hget(cache, folded)
        if cached:
            key = keys.text(cached)
            try:
                rows: list[dict[str, Any]] | None = self.api.stock_by_key(key)
            except WinstoreNotFound:
                rows = None
            if rows is not None and _names(rows, folded):
                return _stock_record(key, sku, rows, warehouse)
            redis.hdel(cache, folded)  # deleted, or the number moved to another article: look it up again
        found = self._articles_by_number().get(folded)
        if found is None:
            return None
        return _stock_record(found, sku, self.api.stock_by_key(found), warehouse)

    def stock_change(self, current: StockRecord, fields: Mapping[str, Any]) -> tuple[Any, Any] | None:
        amount = fields.get("amount")
        if amount is None:
            raise PermanentError("the stock mapping gives no amount (the level Winstore is to hold)")
        if _amount(current.quantity) == _amount(amount):
            return None
        return current.quantity, amount

    def write_stock(self, current: StockRecord, fields: Mapping[str, Any]) -> None:
        """The absolute level through the assumed `stock` endpoint [U]; the mapping's other fields travel as
        elements of their own after `<artkey>`, `<warehouse>` and `<amount>`."""
        extra = {k: v for k, v in fields.items() if k not in ("artkey", "warehouse", "amount")}
        warehouse = current.ref if current.ref is not None else self._warehouse()
        self.api.post_stock(current.target_id, warehouse, fields["amount"], extra)

    def forget(self, flow: str, key: str) -> bool:
        if flow == "stock":
            return bool(self.context.redis.hdel(self._article_ids(), key.casefold()))
        if flow == "orders":  # a booking refused: an article key the map holds may be stale
            return bool(self.context.redis.delete(self._article_ids()))
        return False


def _stock_warehouse(settings: WinstoreSettings) -> int | None:
    """The warehouse stock is written into: `stock_warehouse`, else the only one of `warehouses`."""
    if settings.stock_warehouse is not None:
        return settings.stock_warehouse
    return settings.warehouses[0] if len(settings.warehouses) == 1 else None


def _names(rows: Iterable[Mapping[str, Any]], folded: str) -> bool:
    """Whether stock rows are of the article this number (or GTIN) names; rows naming none are taken as so."""
    named = False
    for row in rows:
        codes = {str(c).strip().casefold() for c in (field(row, *ARTICLE["number"]), field(row, *ARTICLE["gtin"]))
                 if c is not None}  # fmt: skip
        if folded in codes:
            return True
        named = named or bool(codes)
    return not named


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value).strip().replace(",", "."))
    except ArithmeticError:
        raise PermanentError(f"stock amount {str(value)[:30]!r} is not a number") from None


def _stock_record(key: str, sku: str, rows: Iterable[Mapping[str, Any]], warehouse: int) -> StockRecord:
    """The article's level in `warehouse` (0 when Winstore lists no stock there)."""
    row = next((r for r in rows if str(field(r, *STOCK["warehouse"]) or "") == str(warehouse)), None)
    value = field(row, *STOCK["quantity"]) if row is not None else None
    level = _amount(value) if value is not None else Decimal(0)
    assert level is not None
    quantity: int | float = int(level) if level == level.to_integral_value() else float(level)
    return StockRecord(key, sku, quantity, None, warehouse)
