"""Exact Online as a `Source` (the Sync API polled, webhooks read through the REST API) and as a
`Target` (sales orders, sales invoices, direct invoices and sales entries; accounts; items).

    [[systems]]
    id = "exact"
    kind = "exactonline"
    base_url = "https://start.exactonline.nl"     # the country's site; default NL
    [systems.settings]
    client_id = "…"                               # the app's id (or credentials.client_id)
    redirect_uri = "https://koppel.example/oauth/exact/callback"
    division = 123456                             # default: the division the authorising user last used
    poll_interval_seconds = 60
    warehouse = "1"                               # direct invoices: the warehouse code (default: the main one)
    picture_max_bytes = 5000000                   # products: the largest image sent as an item's picture
    item_attributes = { Class_01 = "Colour", Class_02 = "", FreeTextField_01 = "Material" }
                                                  # products from Exact: attribute names (below)
    rate_limit = { per_minute = 60, per_day = 5000 }
    webhook_check_seconds = 3600                  # how often the worker checks the webhook subscriptions (0: never)
    reconcile_interval_seconds = 0                # poll the Sync API although webhooks feed the integrations (0: never)
    [systems.credentials]
    client_secret = "env:EXACT_CLIENT_SECRET"

Item attributes (products from Exact): every item class (`Class_01`…`Class_10`) that is set travels as a
non-variation attribute named "Class 1"… or as `item_attributes` names it ("" leaves it out); a free field
(`FreeTextField_01`…, `FreeNumberField_…`, `FreeBoolField_…`, `FreeDateField_…`) only when named there.
Both are read with the item (the Sync API's and the REST read's `$select`), at no extra call; the value is
the class property's code, not its description (normalise.py). Exact has no item variants.

Dates: Exact's `/Date(ms)/` are wall-clock milliseconds in Amsterdam time (odata.parse_date). The
client parses them on every response; `normalise` reads records only in that one shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.contract import Canonical, Change, Context, Gone, NotBookable, Settings, Source, Target
from connectors.exactonline import auth
from connectors.exactonline.client import ExactClient
from connectors.exactonline.details import Details
from connectors.exactonline.endpoints import (
    Accounts,
    Addresses,
    Endpoint,
    ItemGroups,
    Items,
    SalesEntries,
    SalesInvoices,
    SalesOrderLines,
    SalesOrders,
)
from connectors.exactonline.errors import ExactNotFound, ExactRequestError
from connectors.exactonline.normalise import (
    ITEM_ATTRIBUTE_FIELDS,
    normalise_account,
    normalise_item,
    normalise_sales_invoice,
    normalise_sales_order,
    normalise_stock_position,
)
from connectors.exactonline.odata import Guid, Record, eq, iso_dates, pad_code
from connectors.exactonline.ratelimit import Limits, RateLimiter
from connectors.exactonline.sync import (
    SyncAccounts,
    SyncItems,
    SyncReader,
    SyncSalesInvoices,
    SyncSalesOrderHeaders,
    SyncStockPositions,
    SyncStream,
)
from connectors.oauth import CodeFlow
from connectors.pictures import DEFAULT_MAX_BYTES, Picture, Pictures
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import PermanentError

KIND = "exactonline"
log = logging.getLogger("koppel.exactonline")
DEFAULT_BASE_URL = "https://start.exactonline.nl"
REFERENCE_TTL = 24 * 3600
ITEM_GROUP_CODE_LENGTH = 20
"""Item group codes are cut to this length (the mapping's default code is the category slug, upper-cased)."""

STREAMS: dict[str, type[SyncStream]] = {
    "SalesOrderHeaders": SyncSalesOrderHeaders,
    "SalesInvoices": SyncSalesInvoices,
    "Accounts": SyncAccounts,
    "Items": SyncItems,
    "StockPositions": SyncStockPositions,
}
"""Sync streams Koppel polls; the names are the events' `resource`."""


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_minute: int = Field(default=60, ge=0)
    per_day: int = Field(default=5000, ge=0)
    max_wait: float = Field(default=120.0, ge=0)
    enabled: bool = True


class ExactSettings(Settings):
    credentials = ("client_secret",)

    client_id: str | None = None
    redirect_uri: str | None = None
    division: int | None = Field(default=None, ge=1)
    warehouse: str | None = None
    rate_limit: RateLimit = RateLimit()
    picture_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    """The largest product image sent to Exact as an item's picture."""
    item_attributes: dict[str, str] = {}
    """Products from Exact: an item field (`Class_01`, `FreeTextField_03`) → the attribute's name; "" leaves
    a class out. Classes not named are "Class 1"…; free fields not named do not travel."""
    webhook_check_seconds: int = Field(default=3600, ge=0)
    """How often the worker checks the division's webhook subscriptions (webhooks.py; 0: never)."""
    reconcile_interval_seconds: int = Field(default=0, ge=0)
    """Seconds between reconciliation polls of the Sync API when only webhooks feed the integrations, to catch
    notifications Exact gave up on (0: never; then a webhook repair does not poll either)."""

    @field_validator("item_attributes")
    @classmethod
    def _known_item_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(k for k in value if k not in ITEM_ATTRIBUTE_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown Exact item field {', '.join(map(repr, unknown))}; known: Class_01…Class_10, "
                "FreeTextField_01…_10, FreeNumberField_01…_08, FreeBoolField_01…_05, FreeDateField_01…_05"
            )
        return value

    def check(self, system: System) -> list[str]:
        if not (self.client_id or "client_id" in system.credentials):
            return ["settings.client_id: required (the app's client id; or credentials.client_id)"]
        return []

    def webhook_check_interval(self) -> int:
        return self.webhook_check_seconds

    def reconcile_interval(self) -> int:
        return self.reconcile_interval_seconds

    def limits(self) -> Limits:
        """The division's API budget; `enabled = false` only for sandbox benchmarks."""
        return Limits(**self.rate_limit.model_dump())


def settings_of(system: System) -> ExactSettings:
    found = ExactSettings.of(system)
    assert isinstance(found, ExactSettings)
    return found


def budget_left(system: System, conn: redis.Redis) -> dict[str, int] | None:
    """The calls left in the division's shared budget this minute and today (`Connector.budget`); a window
    whose reset has passed is whole again. None when the division is not known yet (no consent)."""
    settings = settings_of(system)
    division = settings.division or auth.TokenStore(conn, system.id).load_division()
    if division is None:
        return None
    limits = settings.limits()
    state = RateLimiter(conn, division, limits).snapshot()
    now_ms = time.time() * 1000
    out: dict[str, int] = {}
    for prefix, name, configured in (("m", "minute", limits.per_minute), ("d", "day", limits.per_day)):
        served = state.get(f"{prefix}slimit")
        limit = min(configured, served) if isinstance(served, int) and configured else configured
        remaining, reset = state.get(f"{prefix}rem"), state.get(f"{prefix}reset")
        fresh = isinstance(remaining, int) and isinstance(reset, int) and reset > now_ms
        out[name] = min(int(remaining), limit) if fresh else limit  # type: ignore[arg-type]
        out[f"{name}_limit"] = limit
    return out


def oauth_app(system: System) -> auth.OAuthApp:
    """The Exact app of a system: `base_url`, `client_id` (settings or credentials), `client_secret`."""
    settings = settings_of(system)
    client_id = settings.client_id or system.credentials["client_id"].get_secret_value()
    return auth.OAuthApp(
        base_url=system.base_url or DEFAULT_BASE_URL,
        client_id=client_id,
        client_secret=system.credentials["client_secret"].get_secret_value(),
        redirect_uri=settings.redirect_uri or "",
    )


def exact_client(system: System, context: Context) -> ExactClient:
    """The process's client for an Exact system: the shared HTTP client, tokens and budget in Redis."""

    def build() -> ExactClient:
        settings = settings_of(system)
        return ExactClient.for_system(
            context.http, context.redis, oauth_app(system), system.id,
            division=settings.division, limits=settings.limits(),
        )  # fmt: skip

    return context.cached(f"exactonline:{system.id}", build)  # type: ignore[no-any-return]


class ExactCodeFlow(CodeFlow):
    """Exact's authorization-code consent: tokens (and the division) stored in Redis per system."""

    def authorize_url(self, system: System, state: str) -> str:
        app = oauth_app(system)
        return auth.authorize_url(app.base_url, app.client_id, app.redirect_uri, state)

    def redirect_uri(self, system: System) -> str:
        return settings_of(system).redirect_uri or ""

    def complete(self, system: System, code: str, http: httpx.Client, context: Context) -> None:
        auth.store_authorization(http, oauth_app(system), context.redis, system.id, code)




_READS: dict[str, tuple[str, type[Endpoint], tuple[str, ...]]] = {
    "salesorders": ("orders", SalesOrders, (
        "OrderID", "OrderNumber", "YourRef", "Status", "OrderedBy", "OrderedByName", "OrderDate", "Currency",
        "Description", "AmountFC", "Modified", "PaymentCondition", "PaymentConditionDescription", "ShippingMethod",
        "ShippingMethodCode", "ShippingMethodDescription", "Remarks", "DeliverTo", "DeliveryAddress",
    )),
    "salesinvoices": ("orders", SalesInvoices, (
        "InvoiceID", "InvoiceNumber", "Type", "YourRef", "Status", "OrderedBy", "InvoiceDate", "Currency",
        "AmountFC", "Modified",
    )),
    "accounts": ("customers", Accounts, Accounts.select),
    "items": ("products", Items, (*Items.select, "StandardSalesPrice", "ExtraDescription", "Notes", "ItemGroupCode",
                                  "ItemGroupDescription", "PictureUrl", "Modified", *ITEM_ATTRIBUTE_FIELDS)),
}  # fmt: skip


class ExactSource(Source):
    """Exact tells of changes through the Sync API (`Timestamp` cursor per division and stream, read by
    the pollers) and through webhooks, whose notifications are thin (topic, action, key): the record is
    read through the REST API. Both paths carry `Modified`, the record's version: a change reached
    both ways is processed once. The Sync (and Bulk) API's Items have no sales price: each polled page
    of items gets its `StandardSalesPrice` from logistics/Items (`_with_sales_prices`, one request per
    20 items)."""

    kind = KIND
    title = "Exact Online"
    resources: ClassVar[Mapping[str, str]] = {
        "SalesOrderHeaders": "orders", "SalesOrders": "orders", "SalesInvoices": "orders", "Accounts": "customers",
        "Items": "products", "StockPositions": "stock",
    }  # fmt: skip
    booked_statuses = ("open", "partial", "complete")
    order_documents: ClassVar[Mapping[str, str]] = {
        "sales_order": "SalesOrderHeaders", "sales_invoice": "SalesInvoices", "direct_invoice": "SalesInvoices",
    }  # fmt: skip
    streams: ClassVar[Mapping[str, str]] = {
        "orders": "SalesOrderHeaders", "customers": "Accounts", "products": "Items", "stock": "StockPositions",
    }  # fmt: skip

    def client(self) -> ExactClient:
        system = self.require_system("reading Exact Online")
        assert self.context is not None
        return exact_client(system, self.context)

    def read(self, envelope: Envelope, flow: str) -> Any:
        if envelope.topic.endswith(".sync"):
            return envelope.payload
        spec = _READS.get(envelope.resource.lower())
        if spec is None or envelope.resource_id is None:
            raise PermanentError(f"Exact Online webhook topic {envelope.resource!r} is not read by Koppel")
        _, endpoint, select = spec
        if envelope.topic.lower().endswith(".delete"):
            raise Gone(f"Exact Online {envelope.resource} {envelope.resource_id} was deleted")
        try:
            record = self.client().get(endpoint, envelope.resource_id, select=select)
        except ExactNotFound as exc:
            raise Gone(f"Exact Online {envelope.resource} {envelope.resource_id} no longer exists") from exc
        return iso_dates(record)

    def version(self, flow: str, record: Any) -> str | None:
        if not isinstance(record, dict) or not record.get("Modified"):
            return None
        ident = record.get("InvoiceID") or record.get("OrderID") or record.get("ID")
        return f"{ident}:{record['Modified']}" if ident else None

    def expand(self, flow: str, record: Any) -> Any:
        """A sales order with its lines (`salesorder/SalesOrderLines`, the header's records have none), its
        customer's account (`OrderedBy`) and where it is delivered (`_delivery`): two calls, a third for a
        delivery address of its own, made only when the order is booked elsewhere; what the record already
        carries (lines, the account, the address) is not read again."""
        if flow == "orders" and isinstance(record, dict) and record.get("InvoiceID"):
            raise NotBookable(
                f"Exact Online sales invoice {record.get('InvoiceNumber') or record['InvoiceID']} is not a shop "
                "order: invoices only write their status back"
            )
        if flow != "orders" or not isinstance(record, dict) or not record.get("OrderID"):
            return record
        client = self.client()
        lines = record.get("SalesOrderLines")
        if not isinstance(lines, list):
            lines = client.query(SalesOrderLines, filter=eq("OrderID", Guid(str(record["OrderID"]))),
                                 select=_LINE_SELECT)  # fmt: skip
        lines = sorted(lines, key=lambda line: (line.get("LineNumber") is None, line.get("LineNumber") or 0))
        expanded = {**record, "SalesOrderLines": [iso_dates(line) for line in lines]}  # in Exact's line order
        if record.get("OrderedBy") and ACCOUNT_KEY not in record:
            try:
                account = client.get(Accounts, str(record["OrderedBy"]), select=_ACCOUNT_SELECT)
                expanded[ACCOUNT_KEY] = iso_dates(account)
            except ExactNotFound:
                raise PermanentError(
                    f"Exact Online order {record.get('OrderNumber')}: its customer (account {record['OrderedBy']}) "
                    "no longer exists in Exact"
                ) from None
        if DELIVERY_KEY not in record:
            delivery = self._delivery(client, record)
            if delivery is not None:
                expanded[DELIVERY_KEY] = delivery
        return expanded

    def _delivery(self, client: ExactClient, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Where the order goes: its `DeliveryAddress` (a crm/Addresses record, one call), else the main
        address of the `DeliverTo` account when that is another account than the customer (one call);
        None when it is the customer's own main address, which the account read already carries."""
        address_id, deliver_to = record.get("DeliveryAddress"), record.get("DeliverTo")
        try:
            if address_id:
                return dict(iso_dates(client.get(Addresses, str(address_id), select=Addresses.select)))
            if deliver_to and str(deliver_to).lower() != str(record.get("OrderedBy") or "").lower():
                return dict(iso_dates(client.get(Accounts, str(deliver_to), select=_ACCOUNT_SELECT)))
        except ExactNotFound:
            log.info("Exact Online order %s: its delivery address is gone; shipped to the customer's address",
                     record.get("OrderNumber"))  # fmt: skip
        return None

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "orders":
            if isinstance(record, dict) and record.get("InvoiceID"):
                return normalise_sales_invoice(record)
            account = record.get(ACCOUNT_KEY) if isinstance(record, dict) else None
            shipping = str((settings or {}).get("shipping_item") or "SHIPPING")
            delivery = record.get(DELIVERY_KEY) if isinstance(record, dict) else None
            return normalise_sales_order(record, account=account, shipping_items=[shipping], delivery=delivery)
        if flow == "customers":
            return normalise_account(record)
        if flow == "products":
            names = settings_of(self.system).item_attributes if self.system is not None else {}
            return normalise_item(record, attribute_names=names)
        if flow == "stock":
            return normalise_stock_position(record)
        return super().normalise(flow, record, settings)

    def poll_scope(self) -> str:
        return str(self.client().division)

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        if stream not in STREAMS:
            raise PermanentError(f"cannot poll Exact Online stream {stream!r}; known: {', '.join(STREAMS)}")
        client = self.client()
        division = client.division
        for page, page_cursor in SyncReader(client, STREAMS[stream]).read_since(int(cursor or 0)):
            if stream == "Items":
                _with_sales_prices(client, page)
            changes: dict[str, Change] = {}
            for record in page:
                record_id = record.get("InvoiceID") or record.get("ID") or record.get("OrderID")
                resource_id = str(record_id) if record_id is not None else None
                key = f"sync:{division}:{stream}:{resource_id or '-'}:{record['Timestamp']}"
                # an invoice comes as one row per line: its last row in the page stands for it
                changes.pop(resource_id or key, None)
                changes[resource_id or key] = Change(stream, resource_id, key, iso_dates(record))
            yield list(changes.values()), str(page_cursor)



def _with_sales_prices(client: ExactClient, page: list[Record]) -> None:
    """The page's items with their `StandardSalesPrice` (the Sync API's Items have none): one REST read per
    `item_chunk` items. An item the REST read no longer finds (deleted meanwhile) keeps none."""
    prices = client.item_sales_prices(str(r["ID"]) for r in page if r.get("ID") and "StandardSalesPrice" not in r)
    for record in page:
        key = str(record.get("ID") or "").lower()
        if key in prices and "StandardSalesPrice" not in record:
            record["StandardSalesPrice"] = prices[key]


ACCOUNT_KEY = "OrderedBy@Account"
"""Where `ExactSource.expand` puts the customer's account in a sales order record."""
DELIVERY_KEY = "DeliveryAddress@Address"
"""Where `ExactSource.expand` puts the order's delivery address (a crm/Addresses record, or the `DeliverTo`
account) when it is not the customer's main address."""
_LINE_SELECT = ("ID", "OrderID", "LineNumber", "Item", "ItemCode", "Description", "Quantity", "UnitPrice", "NetPrice",
                "Discount", "VATCode", "VATPercentage", "VATAmountFC", "AmountFC")  # fmt: skip
_ACCOUNT_SELECT = ("ID", "Code", "Name", "Email", "Phone", "Status", "VATNumber", "ChamberOfCommerce", "AddressLine1",
                   "AddressLine2", "Postcode", "City", "Country", "Language", "Modified")  # fmt: skip


_DOCUMENTS: dict[str, tuple[type[Endpoint], str]] = {
    "sales_order": (SalesOrders, "OrderID"),
    "sales_invoice": (SalesInvoices, "InvoiceID"),
    "direct_invoice": (SalesInvoices, "InvoiceID"),
    "sales_entry": (SalesEntries, "EntryID"),
}


class _LazyIds(Mapping[str, str]):
    """Codes → GUIDs of one Exact entity, looked up when the mapping asks (`$id('gl_accounts', code)`),
    cached per system; an unknown code is a PermanentError naming it."""

    def __init__(self, target: ExactTarget, name: str, endpoint: str, what: str) -> None:
        self.target, self.name, self.endpoint, self.what = target, name, endpoint, what

    def __getitem__(self, code: str) -> str:
        found = self.target.reference_id(self.name, self.endpoint, code)
        if found is None:
            raise PermanentError(f"{self.what} {code!r} does not exist in Exact Online")
        return found

    def get(self, code: str, default: Any = None) -> Any:
        return self[code]

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class ExactTarget(Details, Target):
    """Documents are matched on `YourRef` (the source's order number); accounts on e-mail (Exact does
    not enforce unique e-mails: the first is taken) or, for a default debtor, on `Code` (right-aligned
    in 18 characters); items on `Code` (case-insensitive). Accounts, contacts, delivery addresses and
    the codes documents carry: details.py."""

    kind = KIND
    title = "Exact Online"
    writes = frozenset({"orders", "customers", "products"})
    documents = ("sales_order", "sales_invoice", "direct_invoice", "sales_entry")
    needs_items = frozenset({"sales_order", "sales_invoice", "direct_invoice"})

    @property
    def settings(self) -> ExactSettings:
        return settings_of(self.system)

    @property
    def exact(self) -> ExactClient:
        return exact_client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.exact.calls

    # -- orders ------------------------------------------------------------------------------------

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        endpoint, id_field = _DOCUMENTS[document]
        found = self.exact.first(endpoint, filter=eq("YourRef", number))
        return str(found.get(id_field) or found.get("ID")) if found is not None else None

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        endpoint, id_field = _DOCUMENTS[document]
        payload = self.prepare_document(payload)
        if document == "direct_invoice":
            created = self.exact.create_sales_invoice(payload, direct=True)
        else:
            created = self.exact.create(endpoint, payload)
        return str(created.get(id_field) or created.get("ID") or "")

    def references(self, document: str) -> dict[str, Any]:
        if document == "direct_invoice":
            return {"warehouse": self.warehouse_id()}
        if document == "sales_entry":
            return {"gl_accounts": _LazyIds(self, "gl_accounts", "financial/GLAccounts", "G/L account")}
        return {}

    def warehouse_id(self) -> str:
        """The warehouse direct invoices deliver from: `settings.warehouse` (a code), else the main one."""
        code = self.settings.warehouse
        if code:
            found = self.reference_id("warehouses", "inventory/Warehouses", code)
            if found is None:
                raise PermanentError(f"systems.{self.system.id}.settings.warehouse: no warehouse {code!r} in Exact")
            return found
        cache = keys.cache(self.system.id, "warehouses")
        cached = self.context.redis.hget(cache, "(main)")
        if cached:
            return keys.text(cached)
        rows = self.exact.query(_endpoint("inventory/Warehouses"), select=("ID", "Code", "Main"), top=60)
        main = next((r for r in rows if r.get("Main")), rows[0] if len(rows) == 1 else None)
        if main is None:
            raise PermanentError(
                f"systems.{self.system.id}: Exact has {len(rows)} warehouses and none is the main one; "
                "set settings.warehouse to the code direct invoices deliver from"
            )
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, "(main)", str(main["ID"]))
            pipe.expire(cache, REFERENCE_TTL)  # a day, like the codes: Exact's main warehouse can change
            pipe.execute()
        return str(main["ID"])

    def forget(self, flow: str, key: str) -> bool:
        """For orders: the warehouse and G/L account ids a document type resolved (deleted in Exact since)."""
        if flow != "orders":
            return False
        names = {"direct_invoice": ["warehouses"], "sales_entry": ["gl_accounts"]}.get(key, [])
        dropped = bool(names) and bool(self.context.redis.delete(*(keys.cache(self.system.id, n) for n in names)))
        return self.forget_details() or dropped

    def reference_id(self, name: str, path: str, code: str) -> str | None:
        """The GUID of the `path` record with this `Code`, cached a day per system."""
        cache = keys.cache(self.system.id, name)
        cached = self.context.redis.hget(cache, code)
        if cached:
            return keys.text(cached)
        found = self.exact.first(_endpoint(path), filter=eq("Code", code), select=("ID", "Code"))
        if found is None:
            return None
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, code, str(found["ID"]))
            pipe.expire(cache, REFERENCE_TTL)
            pipe.execute()
        return str(found["ID"])

    # -- customers ---------------------------------------------------------------------------------

    def find_customer(self, email: str) -> str | None:
        found = self.exact.find_account_by_email(email)
        return str(found["ID"]) if found is not None else None

    def find_customer_by_code(self, code: str) -> str | None:
        found = self.exact.first(Accounts, filter=eq("Code", pad_code(code)))
        return str(found["ID"]) if found is not None else None

    # create_customer, update_customer and sync_customer: details.py

    # -- products ----------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        return self.exact.find_item_ids_by_codes(skus)

    def create_product(self, payload: Mapping[str, Any]) -> str:
        body, picture = self._item_body(dict(payload), None)
        item_id = str(self.exact.create(Items, body)["ID"])
        if picture is not None:
            self._pictures().remember(item_id, picture)
        return item_id

    def update_product(self, target_id: str, payload: Mapping[str, Any]) -> None:
        body, picture = self._item_body({k: v for k, v in payload.items() if k != "Code"}, target_id)
        if body:
            self.exact.update(Items, target_id, body)
        if picture is not None:
            self._pictures().remember(target_id, picture)

    def _item_body(self, body: dict[str, Any], item_id: str | None) -> tuple[dict[str, Any], Picture | None]:
        """The mapping's references resolved: `ItemGroup` {Code, Description} → the group's GUID (created
        when missing); `Picture` (a URL) → the image's bytes, left out when the item has it already."""
        group = body.get("ItemGroup")
        if isinstance(group, Mapping):
            body["ItemGroup"] = self.item_group_id(str(group.get("Code") or ""), group.get("Description"))
        url = body.pop("Picture", None)
        picture = None
        if isinstance(url, str) and url.strip():
            picture = self._pictures().fetch(url.strip(), item_id)
            if picture is not None:
                body["Picture"] = picture.base64
                body.setdefault("PictureName", picture.name)
            else:
                body.pop("PictureName", None)
        elif url is not None:
            raise PermanentError(f"Exact Online item: Picture must be the image's URL, got {type(url).__name__}")
        return body, picture

    def _pictures(self) -> Pictures:
        return Pictures(
            self.context.http, self.context.redis, keys.cache(self.system.id, "item_pictures"),
            max_bytes=self.settings.picture_max_bytes, setting=f"systems.{self.system.id}.settings.picture_max_bytes",
            title=self.title,
        )  # fmt: skip

    def item_group_id(self, code: str, description: Any = None) -> str:
        """The GUID of the item group with this code, created (with the description) when missing."""
        code = code.strip()[:ITEM_GROUP_CODE_LENGTH]
        if not code:
            raise PermanentError("Exact Online item: ItemGroup.Code is empty (the product's category has no code)")
        found = self.reference_id("item_groups", ItemGroups.path, code)
        if found is not None:
            return found
        text = str(description or code).strip()[:60] or code
        try:
            created = str(self.exact.create(ItemGroups, {"Code": code, "Description": text})["ID"])
        except ExactRequestError:
            found = self.reference_id("item_groups", ItemGroups.path, code)  # created meanwhile by another worker
            if found is None:
                raise
            return found
        cache = keys.cache(self.system.id, "item_groups")
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, code, created)
            pipe.expire(cache, REFERENCE_TTL)
            pipe.execute()
        return created


_ENDPOINTS: dict[str, type[Endpoint]] = {}


def _endpoint(path: str) -> type[Endpoint]:
    """A plain endpoint class for a path (reference lookups that need no declaration of their own)."""
    if path not in _ENDPOINTS:
        _ENDPOINTS[path] = type(path.replace("/", "_"), (Endpoint,), {"path": path})
    return _ENDPOINTS[path]
