"""Business Central as a `Source` (records read through the API; streams polled by `lastModifiedDateTime`)
and as a `Target` (sales orders or sales invoices, customers, items with their category and picture).

    [[systems]]
    id = "bc"
    kind = "businesscentral"
    # base_url = "https://api.businesscentral.dynamics.com"   # default; a sandbox's URL in tests
    [systems.settings]
    tenant = "contoso.onmicrosoft.com"          # the customer's Entra ID tenant (id or domain)
    client_id = "…"                             # the app registration (or credentials.client_id)
    environment = "production"                  # the BC environment's name
    company = "CRONUS NL"                       # the company's name, or its id
    [systems.credentials]
    client_secret = "env:BC_CLIENT_SECRET"

Quirks (PLATFORMS.md §3 and Microsoft's API v2.0 reference):

* Documents: a salesOrder / salesInvoice is created header first (`POST salesOrders`), then one POST per
  line (`salesOrders({id})/salesOrderLines`): the standard API documents only that; a deep insert is
  documented for custom APIs only. A line refused deletes the header again, so no half document stays;
  `find_order` (asked only after an attempt that may have written) deletes a header without lines.
* Prices on documents [V: Microsoft's API v2.0 pages "APIV2 - Sales Orders" / "APIV2 - Sales Invoices" in
  BCApps declare `pricesIncludeTax` (Rec."Prices Including VAT") `Editable = false`]: BC sets it from the
  customer's "Prices Including VAT" (customer card or template; not in v2.0's customer), so Koppel cannot
  choose it. The header is POSTed without it; BC's answer says which basis the document has, and each line's
  `unitPrice` is the mapping's price excl. VAT (`unitPrice`) or incl. VAT (`unitPriceIncludingTax`, Koppel's
  own key, never sent) accordingly. A line lacking the price its document needs fails the order naming the
  customer setting (the header deleted again); a mapping that still sends `pricesIncludeTax` fails before any
  write. (Items' `priceIncludesTax` is writable and is sent as the products mapping says.)
* Documents are matched on `externalDocumentNumber` (the source's order number, at most 35 characters; a
  Code field, which BC stores upper-case). BC's `$filter` compares text as stored (Code fields upper-case,
  e-mail addresses as typed): numbers are asked for upper-cased, an e-mail as given and in lower case.
* A salesOrder's `status` (Draft, Open, Released…) is read-only through the API; it changes only by BC's
  own actions (release, ship, invoice). So BC takes no status write-back: `order_modes` is book only.
* Item inventory is read-only through the standard API (it is the sum of item ledger entries, written by
  postings): BC gives stock (a Source stream) but takes none. And posting does not move the item's
  `lastModifiedDateTime`, so the stock stream reads every item's `inventory` each poll and reports the
  items whose quantity differs from the previous poll (remembered in Redis).
* API v2.0 gives an item's `inventory` (on hand) and no reserved quantity (reservation entries and
  quantities on sales orders are not in the standard API): a stock level reads on hand = available =
  `inventory`, reserved 0. The stock mappings' default (available, i.e. on hand minus reserved) therefore
  sends the inventory; a target that should keep back what open orders need takes another formula
  (`[integrations.mappings.stock.<target kind>]`, e.g. `$sub(available, 2)`).
* Customers have no posting-group fields in v2.0 (customer, general business posting group): BC takes them
  from its customer template. What v2.0 does take are ids: `taxAreaId` (a tax area in US-style companies, a
  VAT business posting group in VAT countries — BC's taxAreas lists whichever the company uses),
  `paymentTermsId`, `paymentMethodId`, `shipmentMethodId`. The customers mapping gives codes ({code, table});
  the target looks them up by `code` and caches them a day per system.
* An order already in BC that Koppel did not book is an error-level skip (`existing_order_level`).
* Items have no draft state: `blocked` (no sales, no postings) is what the products mapping sets for
  `settings.product_status = "draft"`. Item categories are codes the item takes as `itemCategoryCode`
  (created here when missing); base unit and general product posting group are codes BC validates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from connectors.businesscentral.auth import LOGIN_URL, App
from connectors.businesscentral.client import API_URL, BatchRequest, BusinessCentralClient, Record, any_of, eq, is_guid
from connectors.businesscentral.errors import (
    BusinessCentralConflict,
    BusinessCentralNotFound,
    BusinessCentralRequestError,
)
from connectors.businesscentral.normalise import (
    normalise_customer,
    normalise_item,
    normalise_item_stock,
    normalise_sales_order,
)
from connectors.contract import Canonical, Change, Context, Gone, Settings, Source, Target, attempt
from connectors.pictures import DEFAULT_MAX_BYTES, Pictures
from connectors.readers import iso_time
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import KoppelError, PermanentError

KIND = "businesscentral"
log = logging.getLogger("koppel.businesscentral")
REFERENCE_TTL = 24 * 3600
CATEGORY_CODE_LENGTH = 20


class BusinessCentralSettings(Settings):
    credentials = ("client_secret",)

    tenant: str = Field(min_length=1)
    """The Entra ID tenant the app signs in at: its id (GUID) or a domain of it."""
    client_id: str | None = None
    """The app registration's (client) id; or `credentials.client_id`."""
    environment: str = Field(default="production", min_length=1)
    company: str = Field(min_length=1)
    """The company: its name (as in BC's companies list) or its id."""
    login_url: str = LOGIN_URL
    """Microsoft's sign-in host (a sandbox's URL in tests)."""
    initial_lookback_seconds: int = Field(default=86400, ge=0)
    """How far back the first poll of a stream (no cursor yet) reads."""
    poll_overlap_seconds: int = Field(default=60, ge=0)
    """Each poll reads again this far before its cursor (records committed late with an earlier time);
    what it read before has the same delivery keys and is not processed twice."""
    picture_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    """The largest product image sent as an item's picture."""
    webhook_check_seconds: int = Field(default=3600, ge=0)
    """How often the worker checks (and renews) the subscriptions Koppel holds (0: never)."""
    webhook_renew_margin_seconds: int = Field(default=86400, ge=0, le=3 * 86400)
    """A subscription expiring within this is renewed (BC's subscriptions last three days)."""
    reconcile_interval_seconds: int = Field(default=3600, ge=0)
    """How often an endpoint's system is polled for what notifications missed (0: never)."""

    def reconcile_interval(self) -> int:
        return self.reconcile_interval_seconds

    def webhook_check_interval(self) -> int:
        return self.webhook_check_seconds

    def check(self, system: System) -> list[str]:
        problems = []
        if not (self.client_id or "client_id" in system.credentials):
            problems.append("settings.client_id: required (the app registration's client id; or credentials.client_id)")
        for key, url in (("settings.login_url", self.login_url), ("base_url", system.base_url)):
            if url is not None and not _safe_url(url):
                problems.append(f"{key}: must be an https URL (plain http only to this machine, e.g. a sandbox)")
        return problems


def _safe_url(url: str) -> bool:
    """Whether the secret and tokens may be sent to `url`: https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")


def settings_of(system: System) -> BusinessCentralSettings:
    found = BusinessCentralSettings.of(system)
    assert isinstance(found, BusinessCentralSettings)
    return found


def app_of(system: System) -> App:
    settings = settings_of(system)
    client_id = settings.client_id or system.credentials["client_id"].get_secret_value()
    secret = system.credentials["client_secret"].get_secret_value()
    return App(tenant=settings.tenant, client_id=client_id, client_secret=secret, login_url=settings.login_url)


def bc_client(system: System, context: Context) -> BusinessCentralClient:
    """The system's client, built once per process (`context.cached`)."""

    def build() -> BusinessCentralClient:
        settings = settings_of(system)
        return BusinessCentralClient.for_system(
            context.http, context.redis, system.id, app_of(system), base_url=system.base_url or API_URL,
            environment=settings.environment, company=settings.company,
        )  # fmt: skip

    client: BusinessCentralClient = context.cached(f"businesscentral:{system.id}", build)
    return client


# -- the source -------------------------------------------------------------------------------------------

STOCK_STREAM = "itemInventory"
_STREAMS: dict[str, tuple[str, str | None]] = {
    "salesOrders": ("salesOrders", "salesOrderLines,customer"),
    "customers": ("customers", None),
    "items": ("items", None),
}
"""Polled stream → (entity, `$expand`)."""
_STOCK_SELECT = ("id", "number", "type", "inventory", "lastModifiedDateTime")


class BusinessCentralSource(Source):
    """Records read through the API: a notification names a record (`resource` URL), a poll lists the
    records changed since its cursor. Orders come with their lines and their customer (`$expand`)."""

    kind = KIND
    title = "Business Central"
    resources: ClassVar[Mapping[str, str]] = {
        "salesOrders": "orders", "customers": "customers", "items": "products", STOCK_STREAM: "stock",
    }  # fmt: skip
    streams: ClassVar[Mapping[str, str]] = {
        "orders": "salesOrders", "customers": "customers", "products": "items", "stock": STOCK_STREAM,
    }  # fmt: skip
    booked_statuses = ("open", "released")

    def client(self) -> BusinessCentralClient:
        system = self.require_system("reading Business Central")
        assert self.context is not None
        return bc_client(system, self.context)

    def read(self, envelope: Envelope, flow: str) -> Any:
        if envelope.topic.endswith(".sync"):
            return envelope.payload
        what = f"Business Central {envelope.resource} {envelope.resource_id or '(collection)'}"
        if envelope.topic.lower().endswith(".deleted"):
            raise Gone(f"{what} was deleted")
        entity = next((name for name in _STREAMS if name.lower() == envelope.resource.lower()), None)
        if entity is None:
            raise PermanentError(f"{what}: Koppel reads {', '.join(_STREAMS)} records only")
        if not envelope.resource_id:
            raise PermanentError(f"{what}: a notification naming no record, and no time to read changes since")
        path, expand = _STREAMS[entity]
        try:
            return self.client().get(path, envelope.resource_id, expand=expand)
        except BusinessCentralNotFound as exc:
            raise Gone(f"{what} no longer exists") from exc

    def collection(self, envelope: Envelope) -> Iterator[list[Change]] | None:
        """A `collection` notification: the entity's records modified after the time its `$filter` named
        (handlers/businesscentral.py reads it whatever the field is called), re-read by
        `lastModifiedDateTime`, with the poll's delivery keys."""
        if envelope.resource_id or not envelope.since:
            return None
        entity = next((name for name in _STREAMS if name.lower() == envelope.resource.lower()), None)
        if entity is None:
            raise PermanentError(f"Business Central {envelope.resource} (collection): Koppel reads "
                                 f"{', '.join(_STREAMS)} records only")  # fmt: skip
        since = _parse_time(envelope.since)
        return (changes for changes, _ in self._modified(entity, since, None))

    def version(self, flow: str, record: Any) -> str | None:
        if flow == "stock" or not isinstance(record, dict) or not record.get("lastModifiedDateTime"):
            return None
        return f"{record.get('id')}:{record['lastModifiedDateTime']}" if record.get("id") else None

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "orders":
            customer = record.get("customer") if isinstance(record, dict) else None
            return normalise_sales_order(record, customer=customer if isinstance(customer, dict) else None)
        if flow == "customers":
            return normalise_customer(record)
        if flow == "products":
            return normalise_item(record)
        if flow == "stock":
            return normalise_item_stock(record)
        return super().normalise(flow, record, settings)

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        """Records whose `lastModifiedDateTime` is after the cursor (less the overlap), oldest first,
        page by page; the cursor after a page is the newest time it held. The stock stream: see the
        module docstring."""
        system = self.require_system("polling Business Central")
        settings = settings_of(system)
        if stream == STOCK_STREAM:
            yield from self._stock(system)
            return
        if stream not in _STREAMS:
            raise PermanentError(
                f"cannot poll Business Central stream {stream!r}; known: {', '.join(self.streams.values())}"
            )
        lookback = timedelta(seconds=settings.initial_lookback_seconds)
        start = _parse_time(cursor) if cursor else datetime.now(UTC) - lookback
        since = start - timedelta(seconds=settings.poll_overlap_seconds)
        # never before where this poll started: the overlap is re-read only
        yield from self._modified(stream, since, cursor or _odata_time(start))

    def _modified(self, stream: str, since: datetime, newest: str | None) -> Iterator[tuple[list[Change], str]]:
        """The stream's records modified after `since`, oldest first, page by page, with the newest time read."""
        path, expand = _STREAMS[stream]
        params = {"$filter": f"lastModifiedDateTime gt {_odata_time(since)}", "$orderby": "lastModifiedDateTime"}
        if expand:
            params["$expand"] = expand
        newest = newest or _odata_time(since)
        for page in self.client().pages(path, params):
            changes = []
            for record in page:
                modified = str(record.get("lastModifiedDateTime") or "")
                record_id = str(record.get("id") or "")
                changes.append(Change(stream, record_id or None, f"bc:{stream}:{record_id}:{modified}", record))
                if modified and _parse_time(modified) > _parse_time(newest):
                    newest = modified
            yield changes, newest

    def _stock(self, system: System) -> Iterator[tuple[list[Change], str]]:
        assert self.context is not None
        conn, seen = self.context.redis, keys.cache(system.id, "bc_inventory")
        polled = _odata_time(datetime.now(UTC))
        params = {"$select": ",".join(_STOCK_SELECT), "$filter": "type eq 'Inventory'"}
        for page in self.client().pages("items", params):
            ids = [str(r.get("id")) for r in page]
            before = conn.hmget(seen, ids) if ids else []
            changes: list[Change] = []
            now_seen: dict[str | bytes, str] = {}
            for record, known in zip(page, before, strict=True):
                quantity = json.dumps(record.get("inventory"))
                if known is None or keys.text(known) != quantity:
                    key = f"bc:{STOCK_STREAM}:{record['id']}:{quantity}:{polled}"
                    changes.append(Change(STOCK_STREAM, str(record["id"]), key, record))
                now_seen[str(record["id"])] = quantity
            yield changes, polled
            if now_seen:
                conn.hset(seen, mapping=now_seen)  # type: ignore[arg-type]  # only after the page's changes were taken


def _parse_time(text: str) -> datetime:
    parsed = iso_time(text)
    if parsed is None:
        raise PermanentError(f"Business Central cursor {text!r} is not a date-time")
    return parsed


def _odata_time(moment: datetime) -> str:
    """A datetime literal as BC's `$filter` takes it (UTC, "Z", no quotes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- the target ---------------------------------------------------------------------------------------------

_DOCUMENTS: dict[str, tuple[str, str]] = {
    "sales_order": ("salesOrders", "salesOrderLines"),
    "sales_invoice": ("salesInvoices", "salesInvoiceLines"),
}


class BusinessCentralTarget(Target):
    """Documents matched on `externalDocumentNumber`; customers on `email` (BC does not enforce unique
    e-mails: the first is taken) or `number`; items on `number` (the SKU, case-insensitive)."""

    kind = KIND
    title = "Business Central"
    writes = frozenset({"orders", "customers", "products"})
    batches = frozenset({"products"})
    order_modes = ("book",)
    documents = tuple(_DOCUMENTS)
    needs_items = frozenset(_DOCUMENTS)
    existing_order_level = logging.ERROR

    def __init__(self, system: System, context: Context) -> None:
        super().__init__(system, context)
        self._numbers: dict[str, str] = {}
        """Document id → number, as `find_order` read them (for `order_label`)."""

    @property
    def bc(self) -> BusinessCentralClient:
        return bc_client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.bc.calls

    # -- orders ------------------------------------------------------------------------------------

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        """The document with this `externalDocumentNumber`. One without lines is what a write cut short
        left (its lines never came): it is deleted and None returned, so the order is booked whole."""
        path, lines = _DOCUMENTS[document]
        found = self.bc.query(path, filter=eq("externalDocumentNumber", number[:35].upper()), select=("id", "number"),
                              expand=f"{lines}($select=id)", top=1)  # fmt: skip
        if not found:
            return None
        record = found[0]
        if record.get(lines):
            self._numbers[str(record["id"])] = str(record.get("number") or "")
            return str(record["id"])
        log.warning("Business Central %s %s (order %s) has no lines: an earlier attempt was cut short; deleted and "
                    "booked again", path, record.get("number"), number)  # fmt: skip
        self.bc.delete(path, str(record["id"]), etag=record.get("@odata.etag"))
        return None

    def order_label(self, document: str, target_id: str) -> str:
        """E.g. "salesOrder S-ORD101001 (id …)": the number `find_order` read, else the id alone."""
        number = self._numbers.get(target_id)
        noun = _DOCUMENTS[document][0][:-1] if document in _DOCUMENTS else document
        return f"{noun} {number} (id {target_id})" if number else f"{noun} {target_id}"

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        """The header, then its lines one by one, each priced on the basis BC gave the header (see
        `priced_line`); a line refused, or lacking the price its document needs, deletes the header and fails
        naming it."""
        path, lines_key = _DOCUMENTS[document]
        if PRICES_INCLUDE_TAX in payload:
            raise PermanentError(f"Business Central {path}: the mapping sends {PRICES_INCLUDE_TAX}, which Business "
                                 "Central sets from the customer's Prices Including VAT (read-only through the API): "
                                 f"leave it out, and give each line {UNIT_PRICE} (excl. VAT) and {UNIT_PRICE_INCL} "
                                 "(incl. VAT)")  # fmt: skip
        header = {k: _plain(v) for k, v in payload.items() if k != lines_key}
        lines = payload.get(lines_key) or []
        if not isinstance(lines, list) or not lines:
            raise PermanentError(f"Business Central {path}: the document has no {lines_key}")
        created = self.bc.create(path, header)
        document_id = str(created["id"])
        try:
            incl = created.get(PRICES_INCLUDE_TAX)
            if not isinstance(incl, bool):  # BC answers a POST with the whole record; read it if not
                incl = bool(self.bc.get(path, document_id, select=("id", PRICES_INCLUDE_TAX)).get(PRICES_INCLUDE_TAX))
            customer = str(created.get("customerNumber") or created.get("customerId") or "")
            priced = [priced_line(line, incl, f"{lines_key}[{n}]", customer) for n, line in enumerate(lines, start=1)]
            for number, line in enumerate(priced, start=1):
                try:
                    self.bc.create(f"{path}({document_id})/{lines_key}", line)
                except BusinessCentralRequestError as exc:
                    sku = line.get("lineObjectNumber")
                    raise BusinessCentralRequestError(
                        f"{lines_key}[{number}]{f' ({sku})' if sku else ''}: {exc}", status=exc.status, code=exc.code,
                        message=exc.message,
                    ) from None  # fmt: skip
        except Exception:
            try:
                self.bc.delete(path, document_id)
            except Exception:  # the header stays; find_order removes it before the retry books again
                log.warning("Business Central %s %s: could not delete the header after a failed line", path,
                            created.get("number"))  # fmt: skip
            raise
        return document_id

    # -- customers ---------------------------------------------------------------------------------

    def find_customer(self, email: str) -> str | None:
        """BC compares text as stored: the address as given and in lower case are both asked for."""
        given = email.strip()
        wanted = any_of("email", dict.fromkeys([given, given.lower()]))
        found = self.bc.first("customers", filter=wanted, select=("id", "email"))
        return str(found["id"]) if found is not None else None

    def find_customer_by_code(self, code: str) -> str | None:
        """A customer number (the default customer), or the customer's id."""
        if is_guid(code):
            try:
                return str(self.bc.get("customers", code, select=("id",))["id"])
            except BusinessCentralNotFound:
                return None
        found = self.bc.find_numbers("customers", [code])
        return str(found[code]["id"]) if code in found else None

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        return str(self.bc.create("customers", self._customer_body(payload))["id"])

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self.bc.patch("customers", target_id, self._customer_body(payload))

    def _customer_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The mapping's setup references resolved: `taxArea`, `paymentTerms`, `paymentMethod`,
        `shipmentMethod` as {code, table} (the code from the mapping table `table`) → the id field API v2.0
        takes (`taxAreaId`…). A reference without a code is left out (BC keeps the template's value)."""
        body = {k: _plain(v) for k, v in payload.items() if k not in _CUSTOMER_REFERENCES}
        for name, (entity, field) in _CUSTOMER_REFERENCES.items():
            ref = payload.get(name)
            if ref is None or ref == "":
                continue
            if not isinstance(ref, Mapping):
                raise PermanentError(f"Business Central customer: {name} must be a table {{code, table}} from the "
                                     f"mapping, got {type(ref).__name__}")  # fmt: skip
            code = str(ref.get("code") or "").strip()
            if code:
                body[field] = self.setup_id(entity, code, str(ref.get("table") or ""))
        return body

    def setup_id(self, entity: str, code: str, table: str = "") -> str:
        """The id of the `entity` record (taxAreas, paymentTerms, paymentMethods, shipmentMethods) with this
        code (BC stores codes upper-case), looked up once and cached a day per system. A code BC lacks fails
        permanently, naming the code and the mapping table it came from."""
        code = code.upper()
        cache = keys.cache(self.system.id, f"bc_{entity}")
        cached = self.context.redis.hget(cache, code)
        if cached is not None:
            return keys.text(cached)
        found = self.bc.first(entity, filter=eq("code", code), select=("id", "code"))
        if found is None:
            source = f" (from mapping table {table!r})" if table else ""
            fix = f"change the entry or default of table {table!r}" if table else "change the mapping"
            raise PermanentError(f"Business Central has no {entity} code {code!r}{source}: create it in Business "
                                 f"Central, or {fix}")  # fmt: skip
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, code, str(found["id"]))
            pipe.expire(cache, REFERENCE_TTL, nx=True)  # a day from the first lookup: renamed codes are read again
            pipe.execute()
        return str(found["id"])

    def sync_customer(self, target_id: str, payload: Mapping[str, Any], changed: Iterable[str] | None) -> bool:
        """Only what differs from the customer as BC holds it, and (when `changed` is known) only the fields
        the source changed since Koppel last sent them (a field gone from the payload is emptied): an edit
        made in BC to another field stays. The read gives the ETag the PATCH needs anyway."""
        body = _plain(payload)
        if changed is not None:
            names = {name.split(".", 1)[0] for name in changed}
            body = {name: body.get(name, "") for name in names}
        body = self._customer_body(body)
        if not body:
            return False
        current = self.bc.get("customers", target_id)
        different = {name: value for name, value in body.items() if current.get(name) != value}
        if not different:
            return False
        self.bc.patch("customers", target_id, different, etag=current.get("@odata.etag"))
        return True

    # -- products ----------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        return {sku: str(record["id"]) for sku, record in self.bc.find_numbers("items", skus).items()}

    def create_product(self, payload: Mapping[str, Any]) -> str:
        body, picture_url = self._item_body(payload)
        item_id = str(self.bc.create("items", body)["id"])
        if picture_url:
            self._picture(item_id, picture_url, new=True)
        return item_id

    def update_product(self, target_id: str, payload: Mapping[str, Any]) -> None:
        body, picture_url = self._item_body({k: v for k, v in payload.items() if k != "number"})
        if body:  # only what differs from the item as BC holds it (the read gives the PATCH its ETag)
            current = self.bc.get("items", target_id)
            different = _different(body, current)
            if different:
                self.bc.patch("items", target_id, different, etag=current.get("@odata.etag"))
        if picture_url:
            self._picture(target_id, picture_url, new=False)

    def update_products(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Exception | None]:
        """`update_product` for many items in two `$batch` calls a hundred items: the items read, then what
        differs PATCHed with their ETags. An item changed in BC between the two (412) is written again alone
        (`patch` reads it again); pictures go one by one, as `update_product` sends them."""
        out: list[Exception | None] = [None] * len(updates)
        bodies: dict[int, tuple[dict[str, Any], str | None]] = {}
        for position, (_, payload) in enumerate(updates):
            try:
                bodies[position] = self._item_body({k: v for k, v in payload.items() if k != "number"})
            except KoppelError as exc:
                out[position] = exc
        read = [p for p, (body, _) in bodies.items() if body]
        currents = self._batch(out, read, [("GET", f"items({updates[p][0]})", None, None) for p in read])
        patches = {p: _different(bodies[p][0], current) for p, current in currents.items()}
        patches = {p: different for p, different in patches.items() if different}
        written = self._batch(out, list(patches), [
            ("PATCH", f"items({updates[p][0]})", patches[p], {"If-Match": str(currents[p].get("@odata.etag") or "*")})
            for p in patches])  # fmt: skip
        for position in patches:
            error = out[position]
            if isinstance(error, BusinessCentralConflict) and error.status == 412 and position not in written:
                out[position] = attempt(self.bc.patch, "items", updates[position][0], patches[position])
        for position, (_, picture_url) in bodies.items():
            if picture_url and out[position] is None:
                out[position] = attempt(self._picture, updates[position][0], picture_url, new=False)
        return out

    def _batch(self, out: list[Exception | None], positions: list[int],
               requests: list[BatchRequest]) -> dict[int, Record]:  # fmt: skip
        """`$batch` the requests made for the updates at `positions`: their answers; an error goes in `out`."""
        if not requests:
            return {}
        try:
            answers: list[Any] = self.bc.batch(requests)
        except KoppelError as exc:  # the whole call failed: so did each of its requests
            answers = [exc] * len(requests)
        found: dict[int, Record] = {}
        for position, answer in zip(positions, answers, strict=True):
            if isinstance(answer, Exception):
                out[position] = answer
            else:
                found[position] = answer
        return found

    def _item_body(self, payload: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The mapping's references resolved: `itemCategory` {code, displayName} → `itemCategoryCode` (the
        category created when missing); `picture` (an image URL) taken out, sent after the item."""
        body = {k: _plain(v) for k, v in payload.items() if k not in ("itemCategory", "picture")}
        category = payload.get("itemCategory")
        if isinstance(category, Mapping) and str(category.get("code") or "").strip():
            body["itemCategoryCode"] = self.item_category(str(category["code"]), category.get("displayName"))
        url = payload.get("picture")
        if url is not None and not isinstance(url, str):
            raise PermanentError(f"Business Central item: picture must be the image's URL, got {type(url).__name__}")
        return body, (url.strip() or None) if isinstance(url, str) else None

    def item_category(self, code: str, name: Any = None) -> str:
        """The category's code, the category created (with its display name) when BC has none with it."""
        code = code.strip().upper()[:CATEGORY_CODE_LENGTH]
        cache = keys.cache(self.system.id, "bc_item_categories")
        if self.context.redis.hexists(cache, code):
            return code
        if self.bc.first("itemCategories", filter=eq("code", code), select=("id", "code")) is None:
            try:
                self.bc.create("itemCategories", {"code": code, "displayName": str(name or code)[:100]})
            except BusinessCentralRequestError:
                if self.bc.first("itemCategories", filter=eq("code", code), select=("id",)) is None:
                    raise  # not a race with another worker: BC refused it
        with self.context.redis.pipeline(transaction=False) as pipe:
            pipe.hset(cache, code, "1")
            pipe.expire(cache, REFERENCE_TTL)
            pipe.execute()
        return code

    def _picture(self, item_id: str, url: str, *, new: bool) -> None:
        pictures = Pictures(self.context.http, self.context.redis, keys.cache(self.system.id, "bc_item_pictures"),
                            max_bytes=settings_of(self.system).picture_max_bytes,
                            setting=f"systems.{self.system.id}.settings.picture_max_bytes",
                            title=self.title)  # fmt: skip
        picture = pictures.fetch(url, None if new else item_id)
        if picture is None:
            return
        kind = _image_type(picture.content)
        self.bc.set_picture(item_id, picture.content, kind)
        pictures.remember(item_id, picture)

    def forget(self, flow: str, key: str) -> bool:
        if flow == "products":
            return bool(self.context.redis.delete(keys.cache(self.system.id, "bc_item_categories")))
        return False


PRICES_INCLUDE_TAX = "pricesIncludeTax"
UNIT_PRICE = "unitPrice"
UNIT_PRICE_INCL = "unitPriceIncludingTax"
"""A document line's unit price incl. VAT, given by the mapping beside `unitPrice` (excl. VAT); Koppel's own
key, never sent: `priced_line` sends the one the document's `pricesIncludeTax` asks for as `unitPrice`."""


def priced_line(line: Any, prices_include_tax: bool, label: str = "line", customer: str = "") -> dict[str, Any]:
    """A mapped document line as BC takes it on a document whose `pricesIncludeTax` is `prices_include_tax`:
    `unitPrice` the mapping's price incl. VAT (`unitPriceIncludingTax`) or excl. VAT (`unitPrice`) accordingly,
    the Koppel-only key removed. A line giving neither is sent without a price (BC takes the item's). A line
    giving only the other price fails permanently, naming the customer setting that decided."""
    if not isinstance(line, Mapping):
        raise PermanentError(f"Business Central {label}: a line must be an object, got {type(line).__name__}")
    body = {k: _plain(v) for k, v in line.items() if k not in (UNIT_PRICE, UNIT_PRICE_INCL)}
    net, gross = line.get(UNIT_PRICE), line.get(UNIT_PRICE_INCL)
    if net is None and gross is None:
        return body
    wanted, given = (gross, "incl.") if prices_include_tax else (net, "excl.")
    if wanted is None:
        name = line.get("lineObjectNumber") or line.get("description")
        whose = f"customer {customer}" if customer else "the customer"
        other, switch = ("excl.", "off") if prices_include_tax else ("incl.", "on")
        key = UNIT_PRICE_INCL if prices_include_tax else UNIT_PRICE
        raise PermanentError(
            f"Business Central {label}{f' ({name})' if name else ''}: {whose} has Prices Including VAT "
            f"{'on' if prices_include_tax else 'off'}, so the line needs its unit price {given} VAT, and the order "
            f"gives it only {other} VAT: switch {switch} Prices Including VAT on the customer card in Business Central "
            f"(or in its customer template), or give the lines a price {given} VAT ({key} in the mapping)"
        )  # fmt: skip
    body[UNIT_PRICE] = _plain(wanted)
    return body


_CUSTOMER_REFERENCES: dict[str, tuple[str, str]] = {
    "taxArea": ("taxAreas", "taxAreaId"),
    "paymentTerms": ("paymentTerms", "paymentTermsId"),
    "paymentMethod": ("paymentMethods", "paymentMethodId"),
    "shipmentMethod": ("shipmentMethods", "shipmentMethodId"),
}
"""The customers mapping's setup references → (the entity looked up by code, the customer's id field)."""


def _image_type(content: bytes) -> str:
    signatures = {b"\x89PNG": "image/png", b"\xff\xd8": "image/jpeg", b"GIF8": "image/gif", b"BM": "image/bmp",
                  b"RIFF": "image/webp"}  # fmt: skip
    return next((kind for head, kind in signatures.items() if content.startswith(head)), "application/octet-stream")


def _different(body: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """What of `body` differs from the record as BC holds it."""
    return {name: value for name, value in body.items() if current.get(name) != value}


def _plain(value: Any) -> Any:
    """A mapping's output as BC's JSON takes it: Decimals as numbers (their exact digits), nested as is."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
