"""Asperion (Dutch online bookkeeping with inTrade order handling) as a `Source` (articles, relations, sales
orders and invoices, stock; polled by modification date) and a `Target` (sales orders, sales invoices and
financial mutations; relations; articles), on its REST API.

    [[systems]]
    id = "asperion"
    kind = "asperion"
    base_url = "https://api.asperion.nl"          # sandbox: https://api-sandbox.asperion.nl (the default is production)
    [systems.settings]
    client_id = "…"                               # from Asperion's API support (or credentials.client_id)
    redirect_uri = "https://koppel.example/oauth/asperion/callback"
    tenant_id = "12345"                           # the administration: sent as X-TenantId on every call
    identity_url = "https://identity.asperion.nl" # sandbox: https://identity-sandbox.asperion.nl
    language = "nl-NL"                            # Accept-Language: the language of Asperion's messages
    poll_interval_seconds = 60
    [systems.credentials]
    client_secret = "env:ASPERION_CLIENT_SECRET"

Connect once with `koppel connect asperion` (OAuth2 authorization code; auth.py). Known and unverified parts
of the API: client.py (resources, paging, filters, errors) and normalise.py (field names); every assumption
is marked [U] there and in docs/configuration.md (Asperion). Quirks Koppel handles:

* No webhooks are documented: every stream is polled by modification date (`modifiedSince`, keyset-paged,
  client.py). A modification date may be committed after a later one was read, so each poll starts
  `overlap_seconds` before its cursor (the newest date read); what the overlap reads again keeps its
  delivery key (`<stream>:<id>:<modification date>`, stock adding the level) and is not processed twice.
* Inactive articles are hidden unless `ActiveState` asks for them: the products stream and every lookup by
  code ask for all (`ActiveState=All` [U]), so an article deactivated in Asperion is updated (unpublished
  elsewhere) and never created a second time.
* `currentStock` is read only: Asperion is no stock target. The stock stream reads articles by modification
  date, on the assumption [U] that a stock mutation changes an article's modification date (the sandbox's does).
* An article's attributes are its `properties`, a list of {name, value} [U]: no public page names the field
  (the default mapping sends a product's attributes there, in the update group `attributes`; the sandbox keeps
  what it is sent).
* Relations are customers and suppliers: a relation marked `isCustomer = false` [U] is left out of the
  customers stream.
* Documents are matched on `reference` (the source's order number): `find_order` looks it up per document
  type. A sales order's or invoice's customer is its relation (`relationId`), read by `expand` when the
  document is booked elsewhere.
* No field of a document is known to hold where Koppel made it from: the mapping's `koppel_origin`
  ("<system id>:<order id>") is stripped before sending and kept in Redis per document (`ORIGINS`); a
  polled document Koppel made gets it back (`Order.origin`), so the orders flow never books it back into
  the system it came from (the booking integration's ledger says the same while it is there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import Field, field_validator

from connectors.asperion import auth
from connectors.asperion.client import API_URL, AsperionClient, Record, field_of, id_of, merged
from connectors.asperion.errors import AsperionNotFound
from connectors.asperion.normalise import (
    RELATION_KEY,
    flag,
    normalise_article,
    normalise_document,
    normalise_relation,
    normalise_stock,
    parse_date,
    text,
    value,
)
from connectors.contract import Canonical, Change, Context, Settings, Source, Target
from connectors.oauth import CodeFlow
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import PermanentError

__all__ = ["AsperionCodeFlow", "AsperionSettings", "AsperionSource", "AsperionTarget", "asperion_client"]

log = logging.getLogger("koppel.asperion")
KIND = "asperion"
ALL_ARTICLES = {"ActiveState": "All"}
"""Active and inactive articles [D: ActiveState; the value `All` U]."""
STREAMS: dict[str, str] = {"articles": "articles", "relations": "relations", "salesorders": "salesorders",
                           "salesinvoices": "salesinvoices", "stock": "articles"}  # fmt: skip
"""Stream → the resource it reads."""
FIND_MANY_ONE_BY_ONE = 5
"""Up to this many codes are looked up one filter each; more read the catalogue's pages once."""
DOCUMENTS: dict[str, str] = {"sales_order": "salesorders", "sales_invoice": "salesinvoices",
                             "financial_mutation": "financialmutations"}  # fmt: skip
ORIGIN_FIELD = "koppel_origin"
"""The mapping's field for `$id('origin')`: kept by Koppel, never sent to Asperion."""


def _origins(system_id: str) -> str:
    """Redis hash "<resource>:<document id>" → the origin of the order Koppel made the document from."""
    return keys.cache(system_id, "origins")


class AsperionSettings(Settings):
    credentials = ("client_secret",)

    client_id: str | None = None
    redirect_uri: str | None = None
    tenant_id: str | None = None
    """The administration (tenant) every call is for; required."""
    tenant_header: Literal["X-TenantId", "X-Tenant-Id"] = "X-TenantId"
    identity_url: str = auth.IDENTITY_URL
    scope: str = auth.DEFAULT_SCOPE
    language: str = "nl-NL"
    timezone: str = "Europe/Amsterdam"
    page_size: int = Field(default=100, ge=1, le=100)
    initial_lookback_seconds: int = Field(default=86400, ge=0)
    overlap_seconds: int = Field(default=300, ge=1)
    journal: str | None = None
    """The sales journal financial mutations are booked in (`$context.journal`); else the mapping's default."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, given: str) -> str:
        try:
            ZoneInfo(given)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {given!r} (an IANA name such as Europe/Amsterdam)") from None
        return given

    def check(self, system: System) -> list[str]:
        problems = []
        if not (self.client_id or "client_id" in system.credentials):
            problems.append("settings.client_id: required (the client id Asperion's API support issued)")
        if not self.tenant_id:
            problems.append("settings.tenant_id: required (the administration's id, sent as the tenant header)")
        return problems


def settings_of(system: System) -> AsperionSettings:
    found = AsperionSettings.of(system)
    assert isinstance(found, AsperionSettings)
    return found


def oauth_app(system: System) -> auth.OAuthApp:
    settings = settings_of(system)
    client_id = settings.client_id or system.credentials["client_id"].get_secret_value()
    return auth.OAuthApp(identity_url=settings.identity_url, client_id=client_id,
                         client_secret=system.credentials["client_secret"].get_secret_value(),
                         redirect_uri=settings.redirect_uri or "", scope=settings.scope)  # fmt: skip


def asperion_client(system: System, context: Context) -> AsperionClient:
    """The process's client for an Asperion system: the shared HTTP client, its tokens in Redis."""

    def build() -> AsperionClient:
        settings = settings_of(system)
        bearer = auth.AsperionAuth(auth.TokenStore(context.redis, system.id), oauth_app(system), context.http)
        return AsperionClient(context.http, base_url=system.base_url or API_URL, tenant_id=settings.tenant_id or "",
                              language=settings.language, tenant_header=settings.tenant_header,
                              page_size=settings.page_size, auth=bearer)  # fmt: skip

    return context.cached(f"asperion:{system.id}", build)  # type: ignore[no-any-return]


class AsperionCodeFlow(CodeFlow):
    """Asperion's authorization-code consent through `koppel connect`: tokens stored in Redis per system."""

    def authorize_url(self, system: System, state: str) -> str:
        return auth.authorize_url(oauth_app(system), state)

    def redirect_uri(self, system: System) -> str:
        return settings_of(system).redirect_uri or ""

    def complete(self, system: System, code: str, http: httpx.Client, context: Context) -> None:
        auth.store_authorization(http, oauth_app(system), context.redis, system.id, code)


def _modified(zone: str) -> Any:
    return lambda record: parse_date(field_of(record, "modified"), zone)


def _moment(record: Mapping[str, Any], zone: str) -> str:
    moment = parse_date(field_of(record, "modified"), zone)
    return moment.astimezone(UTC).isoformat() if moment is not None else "-"


class AsperionSource(Source):
    """Articles, relations, sales orders (and invoices) and stock, polled by modification date."""

    kind = KIND
    title = "Asperion"
    resources: ClassVar[Mapping[str, str]] = {
        "articles": "products", "relations": "customers", "salesorders": "orders", "salesinvoices": "orders",
        "stock": "stock",
    }  # fmt: skip
    streams: ClassVar[Mapping[str, str]] = {"products": "articles", "customers": "relations",
                                            "orders": "salesorders", "stock": "stock"}  # fmt: skip
    order_documents: ClassVar[Mapping[str, str]] = {"sales_order": "salesorders", "sales_invoice": "salesinvoices"}
    booked_statuses: ClassVar[tuple[str, ...]] = ("open", "confirmed", "approved", "delivered", "invoiced",
                                                  "sent", "paid", "processing", "completed")  # fmt: skip

    def _zone(self) -> str:
        return settings_of(self.system).timezone if self.system is not None else "Europe/Amsterdam"

    def client(self) -> AsperionClient:
        system = self.require_system("reading Asperion")
        assert self.context is not None
        return asperion_client(system, self.context)

    def version(self, flow: str, record: Any) -> str | None:
        if not isinstance(record, Mapping) or id_of(record) is None or field_of(record, "modified") is None:
            return None
        return f"{id_of(record)}:{_moment(record, self._zone())}"

    def read(self, envelope: Envelope, flow: str) -> Any:
        """The polled record; a document Koppel made from another system's order gets that origin back
        (`koppel_origin`, read into `Order.origin`)."""
        record = envelope.payload
        if flow != "orders" or not isinstance(record, Mapping) or self.system is None or self.context is None:
            return record
        resource = STREAMS.get(envelope.resource, envelope.resource).lower()
        ident = id_of(record)
        origin = self.context.redis.hget(_origins(self.system.id), f"{resource}:{ident}") if ident else None
        return {**record, ORIGIN_FIELD: keys.text(origin)} if origin else record

    def expand(self, flow: str, record: Any) -> Any:
        """A sales order or invoice with its relation (one call) under `relation`, when it has none embedded."""
        if flow != "orders" or not isinstance(record, dict) or isinstance(record.get(RELATION_KEY), Mapping):
            return record
        relation_id = text(record, "relation_id")
        if relation_id is None:
            return record
        try:
            return {**record, RELATION_KEY: self.client().get("relations", relation_id)}
        except AsperionNotFound:
            raise PermanentError(f"Asperion document {text(record, 'order_number')}: its relation {relation_id} "
                                 "no longer exists in Asperion") from None  # fmt: skip

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        zone = self._zone()
        if flow == "products":
            return normalise_article(record, zone=zone)
        if flow == "stock":
            return normalise_stock(record, zone=zone)
        if flow == "customers":
            return normalise_relation(record, zone=zone)
        if flow == "orders":
            return normalise_document(record, zone=zone)
        return super().normalise(flow, record, settings)

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        system = self.require_system("polling Asperion")
        if stream not in STREAMS:
            raise PermanentError(f"cannot poll Asperion stream {stream!r}; known: {', '.join(STREAMS)}")
        settings = settings_of(system)
        if cursor is None:
            since = datetime.now(UTC) - timedelta(seconds=settings.initial_lookback_seconds)
            floor = since.isoformat()
        else:
            try:
                parsed = datetime.fromisoformat(cursor)
            except ValueError:
                raise PermanentError(f"Asperion poll cursor {cursor!r} is not a date; delete it to restart") from None
            since, floor = parsed - timedelta(seconds=settings.overlap_seconds), cursor
        zone, resource = settings.timezone, STREAMS[stream]
        params = ALL_ARTICLES if resource == "articles" else None
        seen: set[str] = set()
        newest = datetime.fromisoformat(floor)
        read_any = False
        for rows in self.client().changed(resource, since, _modified(zone), params):
            changes = []
            for row in rows:
                if stream == "relations" and flag(value(row, "isCustomer")) is False:
                    continue  # a supplier
                change = self._change(stream, row, zone)
                if change is not None and change.delivery_key not in seen:
                    seen.add(change.delivery_key)
                    changes.append(change)
                moment = parse_date(field_of(row, "modified"), zone)
                newest = max(newest, moment) if moment is not None else newest
            read_any = True
            yield changes, newest.isoformat()
        if not read_any:
            yield [], floor

    def _change(self, stream: str, row: Record, zone: str) -> Change | None:
        ident = id_of(row)
        if ident is None:
            return None
        key = f"{stream}:{ident}:{_moment(row, zone)}"
        if stream == "stock":
            key += f":{field_of(row, 'currentStock')}"
        return Change(stream, ident, key, row)


class AsperionTarget(Target):
    """Sales orders, sales invoices and financial mutations (matched on `reference`), relations (matched on
    e-mail, a default debtor on its code) and articles (matched on code, inactive ones included)."""

    kind = KIND
    title = "Asperion"
    writes = frozenset({"orders", "customers", "products"})
    documents = ("sales_order", "sales_invoice", "financial_mutation")
    needs_items = frozenset({"sales_order", "sales_invoice"})

    @property
    def api(self) -> AsperionClient:
        return asperion_client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.api.calls

    # -- orders ------------------------------------------------------------------------------------

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        found = self.api.where_equal(DOCUMENTS[document], "reference", number)
        return id_of(found[0]) if found else None

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        """The document, without `koppel_origin`, which is kept per document id (`read` gives it back)."""
        origin = payload.get(ORIGIN_FIELD)
        body = {k: v for k, v in payload.items() if k != ORIGIN_FIELD}
        created = str(id_of(self.api.create(DOCUMENTS[document], body)))
        if origin:
            self.context.redis.hset(_origins(self.system.id), f"{DOCUMENTS[document]}:{created}", str(origin))
        return created

    def references(self, document: str) -> dict[str, Any]:
        """`$context.journal` for financial mutations (settings.journal), when set."""
        journal = settings_of(self.system).journal
        return {"journal": journal} if journal and document == "financial_mutation" else {}

    # -- customers ---------------------------------------------------------------------------------

    def find_customer(self, email: str) -> str | None:
        found = self.api.where_equal("relations", "email", email)
        return id_of(found[0]) if found else None

    def find_customer_by_code(self, code: str) -> str | None:
        found = self.api.where_equal("relations", "code", code)
        return id_of(found[0]) if found else None

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        return str(id_of(self.api.create("relations", payload)))

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self.api.update("relations", target_id, payload)

    def sync_customer(self, target_id: str, payload: Mapping[str, Any], changed: Iterable[str] | None) -> bool:
        """Only the fields that changed since Koppel last sent them (top-level names of the dotted ones);
        without that history, what differs from the relation Asperion holds."""
        if changed is not None:
            names = {name.split(".", 1)[0] for name in changed}
            update = {k: v for k, v in payload.items() if k in names}
            if not update:
                return False
            self.api.update("relations", target_id, update)
            return True
        current = self.api.get("relations", target_id)
        if merged(current, payload) == current:
            return False
        self.api.update("relations", target_id, payload)
        return True

    # -- products ----------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        """{sku: article id} by article code, case-insensitively, inactive articles included."""
        wanted = {sku.casefold(): sku for sku in skus}
        if not wanted:
            return {}
        found: dict[str, str] = {}
        if len(wanted) <= FIND_MANY_ONE_BY_ONE:
            rows = [row for sku in wanted.values() for row in self.api.where_equal("articles", "code", sku,
                                                                                   **ALL_ARTICLES)]  # fmt: skip
        else:
            rows = [row for page in self.api.pages("articles", ALL_ARTICLES) for row in page]
        for row in rows:
            code, ident = field_of(row, "code"), id_of(row)
            asked = wanted.get(str(code).casefold()) if code is not None else None
            if asked is not None and ident is not None and asked not in found:
                found[asked] = ident
        return found

    def create_product(self, payload: Mapping[str, Any]) -> str:
        return str(id_of(self.api.create("articles", _writable(payload))))

    def update_product(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self.api.update("articles", target_id, _writable(payload))


def _writable(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An article without `currentStock` (read only: stock comes from Asperion's own mutations)."""
    return {k: v for k, v in payload.items() if k.lower() != "currentstock"}
