"""WooCommerce as a `Source` (its webhooks, read with the REST API when the endpoint names its system)
and as a `Target` (order statuses written back, stock, products and customers), on one shop's client.

    [[systems]]
    id = "shop"
    kind = "woocommerce"
    base_url = "https://shop.example"           # the WordPress site; the client adds /wp-json/wc/v3
    [systems.credentials]
    consumer_key = "env:WC_CONSUMER_KEY"        # a read/write REST API key
    consumer_secret = "env:WC_CONSUMER_SECRET"
    [systems.settings]
    webhook_check_seconds = 900                 # how often the worker checks the shop's webhooks (0: never)
    reconcile_interval_seconds = 300            # how often the shop is polled for what webhooks missed (0: never)
    initial_lookback_seconds = 86400            # how far back the first poll reads

Webhooks: `koppel endpoints sync` and the worker's check manage the shop's webhooks through
`WooCommerceWebhooks` (workers/subscriptions.py has the plan). The reconciliation poll: reconcile.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field

from connectors.contract import (
    Canonical,
    Change,
    Context,
    Settings,
    Source,
    StockRecord,
    Subscription,
    Target,
    Webhooks,
)
from connectors.woocommerce import reconcile
from connectors.woocommerce.client import BATCH_LIMIT, Stock, WooCommerceClient
from connectors.woocommerce.errors import WooCommerceConfigError, WooCommerceNotFound
from connectors.woocommerce.normalise import (
    SOURCE_ORDER_META,
    normalise_customer,
    normalise_order,
    normalise_product,
    normalise_stock,
)
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import KoppelError, PermanentError

KIND = "woocommerce"
ID_CACHE_TTL = 24 * 3600
FIND_ORDER_MARGIN = timedelta(minutes=10)
FIND_ORDER_WINDOW = timedelta(days=2)


class WooCommerceSettings(Settings):
    credentials = ("consumer_key", "consumer_secret")
    needs_base_url = True

    webhook_check_seconds: int = Field(default=900, ge=0)
    """How often the worker checks (and repairs) the shop's webhooks; 0: only `koppel endpoints sync`."""
    reconcile_interval_seconds: int = Field(default=300, ge=0)
    """How often a shop whose webhooks feed an integration is polled for what they missed; 0: never."""
    initial_lookback_seconds: int = Field(default=86400, ge=0)
    """How far back the first poll (no cursor yet) reads; older changes are never replayed."""

    def reconcile_interval(self) -> int:
        return self.reconcile_interval_seconds

    def webhook_check_interval(self) -> int:
        return self.webhook_check_seconds

    def check(self, system: System) -> list[str]:
        try:
            client(system, None).close()
        except WooCommerceConfigError as exc:
            return [f"base_url: {exc}"]
        except PermanentError:
            return []  # missing keys: reported by the settings model itself
        return []


def client(system: System, context: Context | None) -> WooCommerceClient:
    """A client for the shop, on the process's shared HTTP client (its own one without a context)."""
    missing = [] if system.base_url else ["base_url"]
    missing += [f"credentials.{key}" for key in WooCommerceSettings.credentials if key not in system.credentials]
    if missing:
        raise PermanentError(f"systems.{system.id}: a WooCommerce system needs {', '.join(missing)}")
    assert system.base_url is not None
    key, secret = (system.credentials[name].get_secret_value() for name in WooCommerceSettings.credentials)
    http = context.http if context is not None else None
    return WooCommerceClient(http, base_url=system.base_url, consumer_key=key, consumer_secret=secret)


def _client(system: System, context: Context) -> WooCommerceClient:
    return context.cached(f"woocommerce:{system.id}", lambda: client(system, context))  # type: ignore[no-any-return]


class WooCommerceSource(Source):
    """WooCommerce's webhooks carry the whole record (the REST response), built when sent. A variable
    product's variations are ids only: they are read through the API when the endpoint names its system;
    a variation sent on its own gets its parent read the same way (embedded under `parent`)."""

    kind = KIND
    title = "WooCommerce"
    resources: ClassVar[Mapping[str, str]] = {"order": "orders", "customer": "customers", "product": "products"}
    streams: ClassVar[Mapping[str, str]] = {flow: flow for flow in reconcile.STREAMS}

    def version(self, flow: str, record: Any) -> str | None:
        """Id, `date_modified_gmt` and a content digest (reconcile.py): a webhook's and a poll's copy of
        one state are one version."""
        return reconcile.version(record) if flow in reconcile.STREAMS else None

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        system = self.require_system("polling WooCommerce")
        assert self.context is not None
        settings = WooCommerceSettings.of(system)
        assert isinstance(settings, WooCommerceSettings)
        return reconcile.changes(_client(system, self.context), stream, cursor, now=datetime.now(UTC),
                                 lookback=settings.initial_lookback_seconds)  # fmt: skip

    def read(self, envelope: Envelope, flow: str) -> Any:
        record = envelope.payload
        wants_variations = (
            flow == "products" and isinstance(record, dict) and record.get("type") == "variable"
            and any(not isinstance(v, dict) for v in record.get("variations") or [])
        )  # fmt: skip
        if wants_variations and self.system is not None and self.context is not None:
            shop = _client(self.system, self.context)
            return record | {"variations": list(shop.variations(int(record["id"])))}
        if self._wants_parent(flow, record) and self.system is not None and self.context is not None:
            shop = _client(self.system, self.context)
            try:  # the parent's name, categories, features and images: a variation does not carry them
                return record | {"parent": shop.get_product(int(record["parent_id"]))}
            except WooCommerceNotFound:
                return record  # the parent is gone (the variation will be too): its own fields still travel
        return record

    @staticmethod
    def _wants_parent(flow: str, record: Any) -> bool:
        return (
            flow == "products" and isinstance(record, dict) and record.get("type") == "variation"
            and str(record.get("parent_id") or "0").isdigit() and int(record.get("parent_id") or 0) > 0
            and not isinstance(record.get("parent"), dict)
        )  # fmt: skip

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "orders":
            return normalise_order(record)
        if flow == "customers":
            return normalise_customer(record)
        if flow == "products":
            variations = record.get("variations") if isinstance(record, dict) else None
            embedded = variations if variations and all(isinstance(v, dict) for v in variations) else None
            prices_include_tax = bool((settings or {}).get("prices_include_tax"))
            return normalise_product(record, embedded, prices_include_tax=prices_include_tax)
        if flow == "stock":
            return normalise_stock(record)
        return super().normalise(flow, record, settings)


class WooCommerceTarget(Target):
    """Orders: the status of the shop's own orders written back (a shop order is found by its number,
    which is its post id unless a sequential-numbers plugin renumbers orders — such numbers read as
    "not a shop order"), and other systems' orders booked as shop orders (`POST /orders`, lines by
    product and variation id, marked with meta `_koppel_origin` and `_koppel_source_order`). Stock:
    products and variations matched on SKU, ids cached a day. Customers: matched on e-mail."""

    kind = KIND
    title = "WooCommerce"
    writes = frozenset({"orders", "stock", "products", "customers"})
    batches = frozenset({"stock", "products"})
    order_modes = ("status", "book")
    service_items = False

    @property
    def shop(self) -> WooCommerceClient:
        return _client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.shop.calls

    # -- orders ------------------------------------------------------------------------------------

    def order_status(self, reference: str, *, by_id: bool = False) -> tuple[str, str] | None:
        if not reference.isdigit():
            return None
        try:
            record = self.shop.get_order(int(reference))
        except WooCommerceNotFound:
            return None
        if not by_id and str(record.get("number", "")) != reference:
            return None
        return str(record["id"]), str(record.get("status") or "")

    def order_email(self, target_id: str) -> str | None:
        try:
            billing = self.shop.get_order(int(target_id)).get("billing")
        except WooCommerceNotFound:
            return None
        email = billing.get("email") if isinstance(billing, dict) else None
        return str(email) if email else None

    def set_order_status(self, target_id: str, status: str) -> None:
        self.shop.update_order_status(int(target_id), status)

    def find_order(self, document: str, number: str, since: datetime | None = None) -> str | None:
        """The order Koppel made from the source's order `number` (meta `_koppel_source_order` ends in
        ":<number>"). WooCommerce cannot filter orders by meta: the orders created since `since` (less
        `FIND_ORDER_MARGIN` for clocks apart; without it, `FIND_ORDER_WINDOW`) are searched."""
        after = (since or datetime.now(UTC) - FIND_ORDER_WINDOW) - FIND_ORDER_MARGIN
        for record in self.shop.orders(status="any", after=after):
            for meta in record.get("meta_data") or []:
                if not isinstance(meta, dict) or meta.get("key") != SOURCE_ORDER_META:
                    continue
                value = meta.get("value")
                if isinstance(value, str) and value.rpartition(":")[2] == number:
                    return str(record["id"])
        return None

    def create_order(self, document: str, payload: Mapping[str, Any]) -> str:
        """`POST /orders`. A line's `product_id` may be Koppel's item id ("<product>/<variation>", as
        `find_items` gives it): it becomes WooCommerce's `product_id` and `variation_id`."""
        body = dict(payload)
        body["line_items"] = [_line_ids(line) for line in payload.get("line_items") or []]
        return str(self.shop.create_order(body)["id"])

    # -- customers ---------------------------------------------------------------------------------

    def find_customer(self, email: str) -> str | None:
        found = self.shop.find_customer_by_email(email)
        return str(found["id"]) if found is not None else None

    def find_customer_by_code(self, code: str) -> str | None:
        """The default customer (`settings.default_customer`): a customer id, or an e-mail address."""
        if "@" in code:
            return self.find_customer(code)
        if not code.isdigit():
            return None
        try:
            return str(self.shop.get_customer(int(code))["id"])
        except WooCommerceNotFound:
            return None

    def create_customer(self, payload: Mapping[str, Any]) -> str:
        return str(self.shop.upsert_customer(payload).record["id"])

    def update_customer(self, target_id: str, payload: Mapping[str, Any]) -> None:
        self.shop.update_customer(int(target_id), payload)

    # -- products ----------------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        """One `GET /products?sku=a,b,…` a hundred SKUs (variations included)."""
        found = self.shop.find_products_by_skus(list(skus), chunk=BATCH_LIMIT)
        return {sku: _stock_id(Stock.of(record)) for sku, record in found.items()}

    def create_product(self, payload: Mapping[str, Any]) -> str:
        return _stock_id(Stock.of(self.shop.upsert_product(payload).record))

    def create_products(self, payloads: Sequence[Mapping[str, Any]]) -> list[str | Exception]:
        """`POST /products/batch {"create": [...]}`, 100 a request (every item is a product of its own: the
        default mapping makes a variant a simple product; no variation is created); per payload the new item's
        id, or the error WooCommerce gave it alone (`SkuTaken`: a product or variation holds its SKU). A request
        that fails whole fails each of its creations — a timeout or 5xx may have made some: the flow's in-flight
        marks send them to a lookup."""
        out: list[str | Exception] = []
        for start in range(0, len(payloads), BATCH_LIMIT):
            chunk = payloads[start : start + BATCH_LIMIT]
            try:
                answers: list[Any] = self.shop.create_many("products", chunk)
            except KoppelError as exc:
                answers = [exc] * len(chunk)
            out += [a if isinstance(a, Exception) else _stock_id(Stock.of(a)) for a in answers]
        return out

    def update_product(self, target_id: str, payload: Mapping[str, Any]) -> None:
        product_id, variation_id = _ids(target_id)
        if variation_id is not None:
            self.shop.update_variation(product_id, variation_id, payload)
        else:
            self.shop.update_product(product_id, payload)

    def update_products(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Exception | None]:
        """Products through `POST /products/batch`, variations through their parent's
        `/products/{id}/variations/batch`, 100 a request; per update, the error WooCommerce gave it alone."""
        paths: dict[str, list[int]] = {}  # batch path → positions of its updates
        bodies: list[dict[str, Any]] = []
        for position, (target_id, payload) in enumerate(updates):
            product_id, variation_id = _ids(target_id)
            path = f"products/{product_id}/variations" if variation_id is not None else "products"
            paths.setdefault(path, []).append(position)
            bodies.append({**payload, "id": variation_id if variation_id is not None else product_id})
        out: list[Exception | None] = [None] * len(updates)
        for path, positions in paths.items():
            try:
                answers: list[Any] = self.shop.update_many(path, [bodies[p] for p in positions])
            except KoppelError as exc:  # the whole request failed: so did each of its updates
                answers = [exc] * len(positions)
            for position, answer in zip(positions, answers, strict=True):
                out[position] = answer if isinstance(answer, Exception) else None
        return out

    # -- stock -------------------------------------------------------------------------------------

    def _id_cache(self) -> str:
        return keys.cache(self.system.id, "stock_ids")

    def find_stock(self, sku: str) -> StockRecord | None:
        """WooCommerce's stock of the product or variation with this SKU (cached id first), or None."""
        redis, key, folded = self.context.redis, self._id_cache(), sku.casefold()
        cached = redis.hget(key, folded)
        if cached:
            product_id, variation_id = _ids(keys.text(cached))
            try:
                stock = self.shop.get_stock(product_id, variation_id=variation_id)
            except WooCommerceNotFound:
                stock = None
            if stock is not None and stock.sku.casefold() == folded:
                return _record(stock)
            redis.hdel(key, folded)  # deleted, or the SKU moved to another product: look it up again
        record = self.shop.find_product_by_sku(sku)
        if record is None:
            return None
        stock = Stock.of(record)
        redis.hset(key, folded, _stock_id(stock).replace("/", ":"))
        redis.expire(key, ID_CACHE_TTL)
        return _record(stock)

    def stock_change(self, current: StockRecord, fields: Mapping[str, Any]) -> tuple[Any, Any] | None:
        quantity = fields.get("stock_quantity")
        managed = fields.get("manage_stock", current.managed)
        if current.quantity == quantity and current.managed == managed:
            return None
        return current.quantity, quantity

    def write_stock(self, current: StockRecord, fields: Mapping[str, Any]) -> None:
        self.update_product(current.target_id, fields)

    def find_stocks(self, skus: Sequence[str]) -> dict[str, StockRecord]:
        """One `GET /products?sku=a,b,…` a hundred SKUs (variations included), their ids cached as `find_stock`
        caches them."""
        records = self.shop.find_products_by_skus(skus, chunk=BATCH_LIMIT)
        found = {sku: Stock.of(record) for sku, record in records.items()}
        if found:
            with self.context.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._id_cache(), mapping={s.casefold(): _stock_id(stock).replace("/", ":")
                                                     for s, stock in found.items()})  # fmt: skip
                pipe.expire(self._id_cache(), ID_CACHE_TTL)
                pipe.execute()
        return {sku: _record(stock) for sku, stock in found.items()}

    def write_stocks(self, writes: Sequence[tuple[StockRecord, Mapping[str, Any]]]) -> list[Exception | None]:
        return self.update_products([(current.target_id, fields) for current, fields in writes])

    def forget(self, flow: str, key: str) -> bool:
        if flow == "stock":
            return bool(self.context.redis.hdel(self._id_cache(), key.casefold()))
        return False


def _line_ids(line: Any) -> Any:
    """A line item whose `product_id` is Koppel's item id "<product>/<variation>" → WooCommerce's ids."""
    if not isinstance(line, Mapping) or not isinstance(line.get("product_id"), str):
        return line
    product_id, variation_id = _ids(line["product_id"])
    out = {**line, "product_id": product_id}
    if variation_id is not None:
        out["variation_id"] = variation_id
    return out


def _stock_id(stock: Stock) -> str:
    return f"{stock.product_id}/{stock.variation_id}" if stock.variation_id else str(stock.product_id)


def _ids(target_id: str) -> tuple[int, int | None]:
    product, _, variation = target_id.replace(":", "/").partition("/")
    return int(product), int(variation) if variation else None


def _record(stock: Stock) -> StockRecord:
    return StockRecord(_stock_id(stock), stock.sku, stock.stock_quantity, stock.manage_stock, stock)


WEBHOOK_TOPICS: Mapping[str, tuple[str, ...]] = {
    "orders": ("order.created", "order.updated"),
    "products": ("product.created", "product.updated"),
    "customers": ("customer.created", "customer.updated"),
}
"""The topics each flow fed by WooCommerce needs (no flow acts on deletions)."""


class WooCommerceWebhooks(Webhooks):
    """The shop's webhooks through `/webhooks`. WooCommerce never returns a secret, so a repaired or
    re-activated webhook gets the configured secret again; one left alone keeps its own."""

    @property
    def shop(self) -> WooCommerceClient:
        return _client(self.system, self.context)

    def topics(self, flows: Iterable[str]) -> list[str]:
        wanted = set(flows)
        return [topic for flow, topics in WEBHOOK_TOPICS.items() if flow in wanted for topic in topics]

    def current(self) -> list[Subscription]:
        return [_subscription(hook) for hook in self.shop.webhooks()]

    def create(self, topic: str, url: str, secret: str, name: str) -> Subscription:
        return _subscription(self.shop.create_webhook(topic=topic, delivery_url=url, secret=secret, name=name))

    def update(self, subscription: Subscription, *, topic: str, url: str, secret: str, name: str) -> Subscription:
        fields = {"name": name, "topic": topic, "delivery_url": url, "secret": secret, "status": "active"}
        return _subscription(self.shop.update_webhook(int(subscription.id), fields))

    def enable(self, subscription: Subscription, secret: str) -> Subscription:
        return _subscription(self.shop.update_webhook(int(subscription.id), {"status": "active", "secret": secret}))

    def delete(self, subscription: Subscription) -> None:
        self.shop.delete_webhook(int(subscription.id))


def _subscription(hook: Mapping[str, Any]) -> Subscription:
    return Subscription(id=str(hook["id"]), topic=str(hook.get("topic") or ""), url=str(hook.get("delivery_url") or ""),
                        status=str(hook.get("status") or ""), name=str(hook.get("name") or ""))  # fmt: skip
