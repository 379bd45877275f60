"""Squarespace as a `Source` (order notifications read through the Commerce API, and a reconciliation
poll), a `Target` (order fulfilment and stock written back) and its Koppel-owned webhook subscriptions.

    [[systems]]
    id = "sq"
    kind = "squarespace"
    # base_url = "https://api.squarespace.com"  # the default; a sandbox's URL in tests
    [systems.credentials]
    api_key = "env:SQUARESPACE_TOKEN"         # an API key, or an OAuth access token (webhook subscriptions
                                              # need the OAuth token: Squarespace refuses them to API keys)
    [systems.settings]
    reconcile_interval_seconds = 300          # how often orders are polled for what notifications missed
    webhook_check_seconds = 900               # how often the worker checks the site's subscriptions
    secret_grace_seconds = 172800             # how long a rotated-out secret still verifies
    notify_customer = false                   # fulfilment e-mails the customer
    read_payments = true                      # an order's payment provider read from the Transactions API
    [systems.settings.tax_rates]              # the VAT rates the site charges (percent): by SKU, country, default;
    default = "21"                            # without them, the one rate an order's totals imply
    "SQ-BOOK" = "9"

    [[endpoints]]
    id = "sq-hooks"
    kind = "squarespace"
    system = "sq"                             # notifications carry the order id only: read through "sq"
    secret = "env:SQ_HOOK_SECRET"             # hex; the secret of a subscription made by hand, if any

Squarespace quirks (PLATFORMS.md §2; [U] where the public docs are followed unverified):

* Notifications are thin: `{id, websiteId, subscriptionId, topic, createdOn, data: {orderId, update}}`.
  `read` fetches the order (`GET /1.0/commerce/orders/{id}`); an order gone since is `Gone` (skipped).
* Delivery is at least once, unordered, retried for up to 48 h, and a subscription that keeps failing may
  be deleted: the reconciliation poll reads orders by `modifiedOn` (see `changes`); a change reached by a
  notification and by the poll has one version (`version`: id and `modifiedOn`) and is processed once.
* Squarespace issues each subscription's secret itself (on create and on rotation only): Koppel stores it
  for the receiver (connectors/issued.py). A rotation keeps the old secret valid for
  `secret_grace_seconds` [U: whether Squarespace re-signs retried notifications with the new secret].
* `extension.uninstall`: the site removed Koppel's OAuth app; `lifecycle` tells the worker to switch the
  integrations fed by the endpoint off and notify the operator (workers/switches.py).
* Orders exist only once checkout completed (paid) [U]: `fulfillmentStatus` PENDING, FULFILLED or CANCELED
  (normalised to lower case); pending and fulfilled orders are booked elsewhere by default.
* As a target: an order's status is written back by fulfilling it (`POST …/fulfillments`); the API can
  neither cancel nor re-open an order, so those statuses fail naming the fix (do it in the Squarespace
  admin). Stock is set absolutely (`setFiniteOperations`), so a replayed write sets the same level again
  (and the flow reads the level first: one already right is not written); the `Idempotency-Key` the API
  requires is unique per write — a key derived from the change would make Squarespace drop a later, real
  change that happens to look the same within its 48 hours. Items are variants, found by SKU in the inventory.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from connectors import issued
from connectors.contract import (
    Canonical,
    Change,
    Context,
    Gone,
    Settings,
    Source,
    StockRecord,
    Subscription,
    Target,
    Unsupported,
    Webhooks,
)
from connectors.squarespace.client import API_ROOT, SquarespaceClient, iso, parse_time
from connectors.squarespace.errors import SquarespaceAuthError, SquarespaceNotFound
from connectors.squarespace.normalise import normalise_order
from gateway import keys
from gateway.config import System
from gateway.envelope import Envelope
from gateway.errors import PermanentError

log = logging.getLogger("koppel.squarespace")

KIND = "squarespace"
OVERLAP_SECONDS = 300
ORDER_LOOKUP_DAYS = 90
STREAMS = {"orders": "order"}
FULFILLED = frozenset({"fulfilled", "completed", "shipped"})
UNINSTALL = "extension.uninstall"
WEBHOOK_TOPICS: Mapping[str, tuple[str, ...]] = {"orders": ("order.create", "order.update")}


class SquarespaceSettings(Settings):
    credentials = ("api_key",)

    reconcile_interval_seconds: int = Field(default=300, ge=0)
    """How often a site whose notifications feed an integration is polled for what they missed; 0: never."""
    webhook_check_seconds: int = Field(default=900, ge=0)
    """How often the worker checks (and repairs) the site's webhook subscriptions; 0: only `endpoints sync`."""
    initial_lookback_seconds: int = Field(default=86400, ge=0)
    """How far back the first poll (no cursor yet) reads."""
    secret_grace_seconds: int = Field(default=48 * 3600, ge=0)
    """How long a subscription's rotated-out secret still verifies (Squarespace retries for up to 48 h)."""
    notify_customer: bool = False
    """Whether fulfilling an order e-mails the customer (Squarespace's `shouldSendNotification`)."""
    read_payments: bool = True
    """Whether an order's payment (provider, card type: `Order.payment_method`, for the payment tables) is read
    from the Transactions API: one or more calls per order; Squarespace's order holds no payment method."""
    tax_rates: dict[str, Annotated[Decimal, Field(ge=0, le=100)]] = {}
    """VAT rates (percent) the site charges, by SKU, then shipping country, then "default": Squarespace gives
    an order's tax only in total (connectors/squarespace/normalise.py)."""

    def reconcile_interval(self) -> int:
        return self.reconcile_interval_seconds

    def webhook_check_interval(self) -> int:
        return self.webhook_check_seconds

    def check(self, system: System) -> list[str]:
        problem = _base_url_problem(system.base_url)
        return [f"base_url: {problem}"] if problem else []


def _base_url_problem(base_url: str | None) -> str | None:
    if base_url is None:
        return None
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return None  # a sandbox
    return "must be an https URL (plain http only to a sandbox on this machine); the token travels with every call"


def settings_of(system: System) -> SquarespaceSettings:
    settings = SquarespaceSettings.of(system)
    assert isinstance(settings, SquarespaceSettings)
    return settings


def client(system: System, context: Context) -> SquarespaceClient:
    """The site's client on the process's shared HTTP client (built once per process)."""

    def build() -> SquarespaceClient:
        if "api_key" not in system.credentials:
            raise PermanentError(f"systems.{system.id}: a Squarespace system needs credentials.api_key")
        problem = _base_url_problem(system.base_url)
        if problem:
            raise PermanentError(f"systems.{system.id}.base_url: {problem}")
        token = system.credentials["api_key"].get_secret_value()
        return SquarespaceClient(context.http, token=token, api_root=system.base_url or API_ROOT)

    return context.cached(f"squarespace:{system.id}", build)  # type: ignore[no-any-return]


# -- source ------------------------------------------------------------------------------------------


def version(record: Any) -> str | None:
    """`<id>:<modifiedOn>` of a full order; None without both."""
    if not isinstance(record, Mapping):
        return None
    ident, modified = record.get("id"), record.get("modifiedOn")
    return f"{ident}:{modified}" if ident and modified else None


def _change(record: dict[str, Any]) -> Change:
    key = version(record) or f"{record.get('id')}:-"
    return Change("order", str(record.get("id") or "") or None, f"order.sync:{key}", record)


class SquarespaceSource(Source):
    kind = KIND
    title = "Squarespace"
    resources: ClassVar[Mapping[str, str]] = {"order": "orders"}
    streams: ClassVar[Mapping[str, str]] = {"orders": "orders"}
    booked_statuses = ("pending", "fulfilled")

    def _client(self, why: str) -> SquarespaceClient:
        system = self.require_system(why)
        assert self.context is not None
        return client(system, self.context)

    def read(self, envelope: Envelope, flow: str) -> Any:
        """A polled change carries the order; a notification its id only: the order is read. Its payment is
        read with it (`read_payments`)."""
        payload = envelope.payload if isinstance(envelope.payload, dict) else {}
        if "lineItems" in payload:
            return self._with_payment(payload)
        data = payload.get("data")
        if isinstance(data, dict) and "lineItems" in data:
            return self._with_payment(data)
        order_id = envelope.resource_id or (data.get("orderId") if isinstance(data, dict) else None)
        if not order_id:
            raise PermanentError(f"Squarespace {envelope.topic}: the notification names no order")
        site = self._client(f"reading Squarespace order {order_id}")
        try:
            return self._with_payment(site.get_order(str(order_id)))
        except SquarespaceNotFound:
            raise Gone(f"Squarespace order {order_id} no longer exists") from None

    def _with_payment(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order with `koppel_payment` {provider, card}: the first payment of the transaction document whose
        `salesOrderId` is the order's. Documents have ids of their own and are listed by their modification
        date, from a day before the order was made [U: how far a document's date may precede the order's]; a
        site that refuses the Transactions API (its plan, the token's permissions) books without it, logged."""
        if self.system is None or not settings_of(self.system).read_payments or "koppel_payment" in order:
            return order
        made = parse_time(order.get("createdOn"))
        if made is None or not order.get("id"):
            return order
        site = self._client(f"reading the payment of Squarespace order {order.get('orderNumber')}")
        try:
            for documents, _ in site.transactions(modified_after=made - timedelta(days=1)):
                for document in documents:
                    if document.get("salesOrderId") == order["id"]:
                        payments = [p for p in document.get("payments") or [] if isinstance(p, dict)]
                        first = payments[0] if payments else {}
                        return order | {"koppel_payment": {"provider": first.get("provider"),
                                                           "card": first.get("creditCardType")}}  # fmt: skip
        except SquarespaceAuthError as exc:
            log.warning("Squarespace order %s: its payment is not readable (%s): booked without a payment method; "
                        "give the token the Transactions permission, or set read_payments = false",
                        order.get("orderNumber"), exc)  # fmt: skip
        return order

    def version(self, flow: str, record: Any) -> str | None:
        return version(record) if flow == "orders" else None

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        if flow == "orders":
            rates = settings_of(self.system).tax_rates if self.system is not None else None
            return normalise_order(record, tax_rates=rates)
        return super().normalise(flow, record, settings)

    def lifecycle(self, envelope: Envelope) -> str | None:
        if envelope.topic != UNINSTALL:
            return None
        website = envelope.resource_id or "?"
        return (f"Squarespace site {website} uninstalled Koppel's extension: its notifications and API access "
                "have stopped; reconnect the site (a new OAuth token) and switch the integration on again")  # fmt: skip

    def changes(self, stream: str, cursor: str | None) -> Iterator[tuple[list[Change], str]]:
        """Orders modified since `cursor` (the newest `modifiedOn` read), less `OVERLAP_SECONDS` (an order
        stamped before it committed), up to now; without a cursor `initial_lookback_seconds` back. The
        cursor moves with the last page only, so a poll that dies half way reads from where it started."""
        if stream not in STREAMS:
            raise PermanentError(f"cannot poll Squarespace stream {stream!r}; known: {', '.join(STREAMS)}")
        site = self._client("polling Squarespace")
        assert self.system is not None
        now = datetime.now(UTC)
        if cursor is None:
            start = now - timedelta(seconds=settings_of(self.system).initial_lookback_seconds)
            floor = iso(start)
        else:
            parsed = parse_time(cursor)
            if parsed is None:
                raise PermanentError(f"Squarespace poll cursor {cursor!r} is not a timestamp; delete it to restart")
            start, floor = parsed - timedelta(seconds=OVERLAP_SECONDS), cursor
        return self._pages(site, start, now, floor)

    @staticmethod
    def _pages(
        site: SquarespaceClient, start: datetime, now: datetime, floor: str
    ) -> Iterator[tuple[list[Change], str]]:
        newest, newest_at = floor, parse_time(floor)
        held: list[Change] | None = None
        for items, _ in site.orders(modified_after=start, modified_before=now):
            found = [_change(order) for order in items]
            for change in found:
                at = parse_time(change.record.get("modifiedOn"))
                if at is not None and (newest_at is None or at > newest_at):
                    newest, newest_at = str(change.record["modifiedOn"]), at
            if held is not None:
                yield held, floor
            held = found
        yield held or [], newest


# -- target ------------------------------------------------------------------------------------------


class SquarespaceTarget(Target):
    """Order statuses written back (fulfilment) and stock; items are variants found by SKU."""

    kind = KIND
    title = "Squarespace"
    writes = frozenset({"orders", "stock"})
    order_modes = ("status",)
    service_items = False

    @property
    def site(self) -> SquarespaceClient:
        return client(self.system, self.context)

    @property
    def calls(self) -> int:
        return self.site.calls

    # -- orders ------------------------------------------------------------------------------------

    def _order(self, order_id: str) -> dict[str, Any] | None:
        try:
            return self.site.get_order(order_id)
        except SquarespaceNotFound:
            return None
        except ValueError:
            return None  # not an id's shape

    def order_status(self, reference: str, *, by_id: bool = False) -> tuple[str, str] | None:
        """By id: one read. By order number (what the customer sees): the orders modified in the last
        `ORDER_LOOKUP_DAYS` days are searched (the API cannot filter on the number)."""
        if by_id:
            record = self._order(reference)
        else:
            since = datetime.now(UTC) - timedelta(days=ORDER_LOOKUP_DAYS)
            record = next((o for items, _ in self.site.orders(modified_after=since) for o in items
                           if str(o.get("orderNumber") or "") == reference), None)  # fmt: skip
        if record is None:
            return None
        return str(record["id"]), str(record.get("fulfillmentStatus") or "").lower()

    def order_email(self, target_id: str) -> str | None:
        record = self._order(target_id)
        email = record.get("customerEmail") if record else None
        return str(email) if email else None

    def set_order_status(self, target_id: str, status: str) -> None:
        wanted = status.strip().lower()
        if wanted in FULFILLED:
            self.site.fulfil_order(target_id, notify=settings_of(self.system).notify_customer)
            return
        raise PermanentError(
            f"Squarespace's API can only fulfil an order, not set it {status!r}: change order {target_id} in the "
            "Squarespace admin, or map this status to \"\" (no change) in the order_statuses table"
        )

    # -- items and stock ---------------------------------------------------------------------------

    def find_items(self, skus: Iterable[str]) -> dict[str, str]:
        wanted = {sku.casefold(): sku for sku in skus if sku}
        found: dict[str, str] = {}
        for item in self.site.inventory():
            sku = str(item.get("sku") or "")
            asked = wanted.get(sku.casefold())
            if asked is not None and asked not in found and item.get("variantId"):
                found[asked] = str(item["variantId"])
        return found

    def _ids(self) -> str:
        return keys.cache(self.system.id, "sq_variant_ids")

    def find_stock(self, sku: str) -> StockRecord | None:
        folded = sku.casefold()
        cached = self.context.redis.hget(self._ids(), folded)
        if cached:
            items = self.site.get_inventory([keys.text(cached)])
            if items and str(items[0].get("sku") or "").casefold() == folded:
                return _stock(items[0])
            self.context.redis.hdel(self._ids(), folded)
        item = next((i for i in self.site.inventory() if str(i.get("sku") or "").casefold() == folded), None)
        if item is None:
            return None
        self.context.redis.hset(self._ids(), folded, str(item["variantId"]))
        return _stock(item)

    def stock_change(self, current: StockRecord, fields: Mapping[str, Any]) -> tuple[Any, Any] | None:
        quantity = fields.get("quantity")
        unlimited = bool(fields.get("unlimited", False))
        if unlimited:
            return None if current.managed is False else (current.quantity, "unlimited")
        if current.managed is not False and current.quantity == quantity:
            return None
        return current.quantity, quantity

    def write_stock(self, current: StockRecord, fields: Mapping[str, Any]) -> None:
        if fields.get("unlimited"):
            self.site.adjust_inventory(_idempotency(), set_unlimited=[current.target_id])
            return
        quantity = fields.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int | float):
            raise PermanentError(f"Squarespace stock of {current.sku}: the mapping gave no quantity")
        self.site.adjust_inventory(_idempotency(), set_finite={current.target_id: int(quantity)})

    def forget(self, flow: str, key: str) -> bool:
        if flow == "stock":
            return bool(self.context.redis.hdel(self._ids(), key.casefold()))
        return False


def _stock(item: Mapping[str, Any]) -> StockRecord:
    unlimited = bool(item.get("isUnlimited"))
    quantity = item.get("quantity")
    return StockRecord(str(item["variantId"]), str(item.get("sku") or ""), None if unlimited else quantity,
                       not unlimited, item)  # fmt: skip


def _idempotency() -> str:
    """A key of its own per write (≤ 64 characters): the client's own retry of one request reuses it."""
    return f"koppel-{uuid.uuid4().hex}"


# -- webhook subscriptions ---------------------------------------------------------------------------


def endpoint_of(url: str) -> str:
    """The endpoint a delivery URL belongs to: its last path segment (`{public_url}/webhooks/{endpoint}`)."""
    return urlsplit(url).path.rstrip("/").rpartition("/")[2]


class SquarespaceWebhooks(Webhooks):
    """The site's webhook subscriptions (`/1.0/webhook_subscriptions`, OAuth token only), one per topic.
    Squarespace makes the secret: the one passed in (the endpoint's configured secret) is not used;
    the issued one is stored for the receiver (connectors/issued.py). Subscriptions have no name and no
    paused or disabled state; Squarespace may delete one whose deliveries keep failing, which Koppel
    notices (`vanished`) because it remembers what it created."""

    @property
    def site(self) -> SquarespaceClient:
        return client(self.system, self.context)

    def _known(self) -> str:
        return keys.cache(self.system.id, "sq_subscriptions")

    def topics(self, flows: Iterable[str]) -> list[str]:
        wanted = set(flows)
        found = [topic for flow, topics in WEBHOOK_TOPICS.items() if flow in wanted for topic in topics]
        return [*found, UNINSTALL] if found else []

    def current(self) -> list[Subscription]:
        return [_subscription(record) for record in self.site.subscriptions()]

    def create(self, topic: str, url: str, secret: str, name: str) -> Subscription:
        made = self.site.create_subscription(url, [topic])
        sub = _subscription(made)
        issued.remember(self.context.redis, endpoint_of(url), sub.id, str(made["secret"]))
        self.context.redis.hset(self._known(), f"{url} {topic}", sub.id)
        return sub

    def update(self, subscription: Subscription, *, topic: str, url: str, secret: str, name: str) -> Subscription:
        sub = _subscription(self.site.update_subscription(subscription.id, endpoint_url=url, topics=[topic]))
        if sub.id not in issued.subscriptions(self.context.redis, endpoint_of(url)):
            self.rotate_secret(sub)  # a subscription Koppel holds no secret for: learn one
        self.context.redis.hset(self._known(), f"{url} {topic}", sub.id)
        return sub

    def enable(self, subscription: Subscription, secret: str) -> Subscription:
        return subscription  # never disabled: Squarespace deletes instead

    def delete(self, subscription: Subscription) -> None:
        with contextlib.suppress(SquarespaceNotFound):  # gone already
            self.site.delete_subscription(subscription.id)
        issued.forget(self.context.redis, endpoint_of(subscription.url), subscription.id)
        for field, value in self.context.redis.hgetall(self._known()).items():
            if keys.text(value) == subscription.id:
                self.context.redis.hdel(self._known(), field)

    def vanished(self, url: str, current: Iterable[Subscription]) -> set[str]:
        held = {sub.id for sub in current}
        gone = set()
        for field, value in self.context.redis.hgetall(self._known()).items():
            at, _, topic = keys.text(field).rpartition(" ")
            if at == url and keys.text(value) not in held:
                gone.add(topic)
                issued.forget(self.context.redis, endpoint_of(url), keys.text(value))
        return gone

    # -- what an operator asks for (`koppel endpoints rotate-secret`, `koppel endpoints test`) ------

    def rotate_secret(self, subscription: Subscription) -> Subscription:
        """A new secret for the subscription, stored for the receiver at once; the old one keeps verifying
        for `secret_grace_seconds` (notifications signed before the rotation)."""
        secret = self.site.rotate_secret(subscription.id)
        grace = settings_of(self.system).secret_grace_seconds
        issued.rotated(self.context.redis, endpoint_of(subscription.url), subscription.id, secret, grace=grace)
        log.info("Squarespace webhook %s (%s): secret rotated", subscription.id, subscription.topic)
        return subscription

    def send_test(self, subscription: Subscription) -> int:
        """Squarespace sends one test notification (of the subscription's first topic), never retried; the
        status code Koppel's receiver answered it with. Not for `extension.uninstall`: a test of it would
        switch the integrations off (a test notification looks like a real one [U])."""
        topic = subscription.topic.split(",")[0]
        if topic == UNINSTALL:
            raise Unsupported(f"not tested: a test {UNINSTALL} notification would switch the integrations off")
        return self.site.test_notification(subscription.id, topic)


def _subscription(record: Mapping[str, Any]) -> Subscription:
    topics = [str(t) for t in record.get("topics") or []]
    url = str(record.get("endpointUrl") or "")
    return Subscription(id=str(record.get("id") or ""), topic=",".join(topics), url=url, status="active")


__all__ = [
    "SquarespaceSettings",
    "SquarespaceSource",
    "SquarespaceTarget",
    "SquarespaceWebhooks",
    "client",
    "endpoint_of",
    "version",
]
