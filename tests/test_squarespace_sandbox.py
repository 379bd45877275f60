"""The Squarespace sandbox over real HTTP, driven through Koppel's own client and connector: paging and
its errors, auth, rate limits, idempotent inventory adjustments, and webhook subscriptions whose signed
notifications verify with the handler — also across a secret rotation."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connectors import issued, registry
from connectors.contract import Canonical, Connector, Context, Gone, Source
from connectors.http import Retry
from connectors.squarespace.client import SquarespaceClient
from connectors.squarespace.connector import SquarespaceSource, SquarespaceTarget, SquarespaceWebhooks
from connectors.squarespace.errors import (
    SquarespaceAuthError,
    SquarespaceNotFound,
    SquarespaceRateLimited,
    SquarespaceRequestError,
)
from connectors.squarespace.sandbox import SandboxConfig, create_sandbox
from gateway.config import Endpoint, System, parse_config
from gateway.envelope import Envelope, Event
from gateway.errors import PermanentError, SignatureRejected
from gateway.model import StockLevel
from gateway.stack import LiveServer, serve
from handlers.base import Incoming
from handlers.squarespace import handle
from workers import runtime
from workers.jobs import run_event

pytestmark = pytest.mark.integration

TOKEN, KEY = SandboxConfig.oauth_token, SandboxConfig.api_key


@dataclass
class Site:
    live: LiveServer
    http: httpx.Client
    client: SquarespaceClient
    system: System
    context: Context

    def control(self, path: str, **body: Any) -> Any:
        response = self.http.post(f"{self.live.url}/sandbox/{path}", json=body)
        response.raise_for_status()
        return response.json()


def make_system(url: str, token: str = TOKEN, **settings: Any) -> System:
    return System.model_validate({"id": "sq", "kind": "squarespace", "base_url": url,
                                  "credentials": {"api_key": "env:T"}, "settings": settings},
                                 context={"environ": {"T": token}})  # fmt: skip


@pytest.fixture
def site(rconn: redis.Redis) -> Iterator[Site]:
    live = serve(create_sandbox(retry_delays=(0.2, 0.4)), name="squarespace sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            client = SquarespaceClient(http, token=TOKEN, api_root=live.url, retry=Retry(attempts=2, base=0))
            yield Site(live, http, client, make_system(live.url), Context(http=http, redis=rconn))
    finally:
        live.stop()


class Receiver:
    """A webhook receiver that keeps what it got and answers with `status`."""

    def __init__(self) -> None:
        self.received: list[Incoming] = []
        self.status = 200
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

        async def capture(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.received.append(Incoming("POST", {k.lower(): v for k, v in request.headers.items()}, {}, body))
                self.arrived.notify_all()
            return PlainTextResponse("ok", status_code=self.status)

        self.live = serve(Starlette(routes=[Route("/webhooks/sq-hooks", capture, methods=["POST"])]), name="receiver")
        self.url = f"{self.live.url}/webhooks/sq-hooks"

    def wait(self, count: int) -> list[Incoming]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=15)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.live.stop()


# -- the Commerce APIs -------------------------------------------------------------------------------------


def test_orders_page_fifty_at_a_time_by_cursor_and_filter_on_modified(site):
    site.control("products/seed", skus=["A-1", "A-2"])
    placed = site.control("orders", count=120, seed=1)["orders"]
    pages = list(site.client.orders())
    assert [len(items) for items, _ in pages] == [50, 50, 20]
    assert sorted(o["id"] for items, _ in pages for o in items) == sorted(placed)
    first = pages[0][0][0]
    window = list(site.client.orders(modified_after=_before(first["modifiedOn"]), modified_before=_far()))
    assert sum(len(items) for items, _ in window) == 120


def _before(stamp: str) -> Any:
    from datetime import datetime, timedelta

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(seconds=1)


def _far() -> Any:
    from datetime import UTC, datetime

    return datetime(2100, 1, 1, tzinfo=UTC)


def test_a_cursor_with_another_parameter_and_a_lone_modified_after_are_refused_as_squarespace_does(site):
    site.control("products/seed", skus=["A-1"])
    site.control("orders", count=60, seed=2)
    cursor = next(iter(site.client.orders()))[1]
    params = {"cursor": cursor, "fulfillmentStatus": "PENDING"}
    bad = site.http.get(f"{site.live.url}/1.0/commerce/orders", params=params,
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["type"] == "INVALID_REQUEST_ERROR"
    lone = site.http.get(f"{site.live.url}/1.0/commerce/orders", params={"modifiedAfter": "2026-01-01T00:00:00Z"},
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert lone.status_code == 400 and set(lone.json()) == {"type", "subtype", "message", "details", "contextId"}


def test_a_wrong_token_is_refused_and_an_api_key_cannot_manage_webhooks(site):
    wrong = SquarespaceClient(site.http, token="nope", api_root=site.live.url)
    with pytest.raises(SquarespaceAuthError):
        wrong.get_order("0" * 24)
    keyed = SquarespaceClient(site.http, token=KEY, api_root=site.live.url)
    assert list(keyed.inventory()) == []
    with pytest.raises(SquarespaceAuthError, match="OAuth"):
        keyed.subscriptions()


def test_over_the_rate_limit_is_a_429_with_a_minutes_retry_after(rconn):
    live = serve(create_sandbox(rate_limit=3), name="squarespace sandbox")
    try:
        with httpx.Client(timeout=10) as http:
            client = SquarespaceClient(http, token=TOKEN, api_root=live.url, retry=Retry(attempts=1))
            for _ in range(3):
                list(client.inventory())
            with pytest.raises(SquarespaceRateLimited) as raised:
                list(client.inventory())
    finally:
        live.stop()
    assert raised.value.retry_after == 60 and "RATE_LIMIT_ERROR" in str(raised.value)


def test_an_inventory_adjustment_replayed_with_its_key_applies_once(site):
    site.control("products/seed", skus=["S-1"], quantity=10)
    variant = next(iter(site.client.inventory()))["variantId"]
    site.client.adjust_inventory("k-1", decrement={variant: 3})
    site.client.adjust_inventory("k-1", decrement={variant: 3})
    assert site.client.get_inventory([variant])[0]["quantity"] == 7
    with pytest.raises(SquarespaceRequestError, match="Idempotency-Key"):
        site.client.adjust_inventory("k-1", decrement={variant: 1})


def test_the_target_finds_variants_by_sku_and_sets_stock_and_fulfils_orders(site):
    site.control("products/seed", skus=["T-1", "T-2"], quantity=5)
    target = SquarespaceTarget(site.system, site.context)
    items = target.find_items(["t-1", "T-2", "T-NONE"])
    assert sorted(items) == ["T-2", "t-1"]
    current = target.find_stock("T-1")
    assert current is not None and current.quantity == 5 and current.managed is True
    assert target.stock_change(current, {"quantity": 5}) is None
    assert target.stock_change(current, {"quantity": 8}) == (5, 8)
    target.write_stock(current, {"quantity": 8})
    target.write_stock(current, {"quantity": 8})  # a replay: set to the same level again
    again = target.find_stock("T-1")
    assert again is not None and again.quantity == 8
    order_id = site.control("orders", count=1, seed=4, skus=["T-2"])["orders"][0]
    assert target.order_status(order_id, by_id=True) == (order_id, "pending")
    number = site.client.get_order(order_id)["orderNumber"]
    assert target.order_status(number) == (order_id, "pending")
    target.set_order_status(order_id, "completed")
    assert target.order_status(order_id, by_id=True) == (order_id, "fulfilled")
    with pytest.raises(PermanentError, match="Squarespace admin"):
        target.set_order_status(order_id, "cancelled")


def test_a_thin_notification_is_read_as_the_full_order_and_a_deleted_one_is_gone(site):
    site.control("products/seed", skus=["R-1"])
    order_id = site.control("orders", count=1, seed=5)["orders"][0]
    source = SquarespaceSource(site.system, site.context)
    payload = {"id": "n1", "websiteId": "w", "subscriptionId": "s", "topic": "order.create",
               "createdOn": "2026-04-22T22:18+00:00", "data": {"orderId": order_id}}  # fmt: skip
    envelope = Envelope.wrap(Event("order.create", "order", order_id, "n1", payload), source="squarespace",
                             endpoint="sq-hooks")  # fmt: skip
    order = source.read(envelope, "orders")
    assert order["id"] == order_id and order["lineItems"]
    assert source.normalise("orders", order).number == order["orderNumber"]
    missing = envelope.model_copy(update={"resource_id": "0" * 24})
    with pytest.raises(Gone):
        source.read(missing, "orders")


def test_the_reconciliation_poll_reads_orders_since_its_cursor_with_the_same_keys_again(site):
    site.control("products/seed", skus=["P-1"])
    site.control("orders", count=60, seed=6)
    source = SquarespaceSource(site.system, site.context)
    pages = list(source.changes("orders", None))
    keys = [c.delivery_key for changes, _ in pages for c in changes]
    assert len(pages) == 2 and len(keys) == len(set(keys)) == 60
    assert pages[0][1] != pages[-1][1]  # the cursor moves with the last page only
    cursor = pages[-1][1]
    again = [c.delivery_key for changes, _ in source.changes("orders", cursor) for c in changes]
    assert set(again) <= set(keys)  # the overlap reads orders again under the same keys
    change = pages[0][0][0]
    assert change.delivery_key == f"order.sync:{source.version('orders', change.record)}"
    with pytest.raises(PermanentError, match="not a timestamp"):
        list(source.changes("orders", "yesterday"))


# -- webhook subscriptions -------------------------------------------------------------------------------


def endpoint(secret: str = "00" * 32) -> Endpoint:
    return Endpoint.model_validate({"id": "sq-hooks", "kind": "squarespace", "secret": "env:S", "system": "sq"},
                                   context={"environ": {"S": secret}})  # fmt: skip


def verify(incoming: Incoming, rconn: redis.Redis) -> list[Event]:
    secrets = issued.live(rconn.hgetall(issued.issued_key("sq-hooks")), __import__("time").time())
    with_secrets = Incoming(incoming.method, incoming.headers, incoming.query, incoming.body, secrets)
    return handle(with_secrets, endpoint()).events


def test_koppels_subscriptions_store_the_issued_secret_and_their_notifications_verify(site, receiver, rconn):
    hooks = SquarespaceWebhooks(site.system, site.context)
    assert hooks.topics(["orders"]) == ["order.create", "order.update", "extension.uninstall"]
    made = hooks.create("order.create", receiver.url, "ignored", "Koppel sq-hooks: order.create")
    assert [s.id for s in hooks.current()] == [made.id] and made.topic == "order.create"
    assert issued.subscriptions(rconn, "sq-hooks") == {made.id}
    site.control("products/seed", skus=["W-1"])
    order_id = site.control("orders", count=1, seed=7)["orders"][0]
    got = receiver.wait(1)
    assert got[0].headers["user-agent"] == "Squarespace/1.0"
    events = verify(got[0], rconn)
    assert [(e.topic, e.resource_id) for e in events] == [("order.create", order_id)]
    with pytest.raises(SignatureRejected):
        handle(got[0], endpoint())  # the issued secret is not the configured one: it comes with the request
    assert hooks.send_test(made) == 200
    test = receiver.wait(2)[1]
    assert verify(test, rconn)[0].topic == "order.create"
    hooks.delete(made)
    assert hooks.current() == [] and issued.subscriptions(rconn, "sq-hooks") == set()


def test_a_rotated_secret_signs_from_then_on_and_the_old_one_verifies_during_its_grace(site, receiver, rconn):
    hooks = SquarespaceWebhooks(site.system, site.context)
    made = hooks.create("order.create", receiver.url, "ignored", "")
    old = site.http.get(f"{site.live.url}/sandbox/subscriptions/{made.id}/secret").json()["secret"]
    hooks.rotate_secret(made)
    new = site.http.get(f"{site.live.url}/sandbox/subscriptions/{made.id}/secret").json()["secret"]
    assert new != old
    site.control("products/seed", skus=["W-2"])
    site.control("orders", count=1, seed=8)
    notification = receiver.wait(1)[0]
    expected = hmac.new(bytes.fromhex(new), notification.body, hashlib.sha256).hexdigest()
    assert notification.headers["squarespace-signature"] == expected
    assert verify(notification, rconn)
    signed_before = hmac.new(bytes.fromhex(old), notification.body, hashlib.sha256).hexdigest()
    late = Incoming("POST", {"squarespace-signature": signed_before}, {}, notification.body)
    assert verify(late, rconn)  # a notification signed before the rotation still verifies
    issued.rotated(rconn, "sq-hooks", made.id, new, grace=0)  # the grace is over
    with pytest.raises(SignatureRejected):
        verify(late, rconn)


def test_a_failed_notification_is_retried_by_the_sandbox(site, receiver, rconn):
    hooks = SquarespaceWebhooks(site.system, site.context)
    hooks.create("order.create", receiver.url, "ignored", "")
    receiver.status = 401
    site.control("products/seed", skus=["W-3"])
    site.control("orders", count=1, seed=9)
    receiver.wait(1)
    receiver.status = 200
    got = receiver.wait(2)
    assert got[0].body == got[1].body  # the same notification (its id the delivery key), delivered again


def test_a_subscription_squarespace_deleted_is_known_lost(site, receiver, rconn):
    hooks = SquarespaceWebhooks(site.system, site.context)
    made = hooks.create("order.update", receiver.url, "ignored", "")
    site.client.delete_subscription(made.id)  # as Squarespace does after failed deliveries
    assert hooks.vanished(receiver.url, hooks.current()) == {"order.update"}
    assert made.id not in issued.subscriptions(rconn, "sq-hooks")


# -- stock into Squarespace through the generic stock flow and the connector's own default mapping -----------


class StockSource(Source):
    kind = "stocktest"
    title = "Stock test"
    resources: ClassVar[Mapping[str, str]] = {"stock": "stock"}

    def normalise(self, flow: str, record: Any, settings: Mapping[str, Any] | None = None) -> Canonical:
        return StockLevel.model_validate(record)


def test_the_stock_flow_sets_a_variants_level_once_with_the_shipped_mapping(site, rconn, monkeypatch):
    registry.register(Connector(kind="stocktest", title="Stock test", source=StockSource,
                                handler="tests.contract.test_connectors:no_webhooks"))  # fmt: skip
    try:
        site.control("products/seed", skus=["STK-1"], quantity=3)
        config = parse_config(
            {"endpoints": [{"id": "erp", "kind": "stocktest", "secret": "env:H"}],
             "systems": [{"id": "sq", "kind": "squarespace", "base_url": site.live.url,
                          "credentials": {"api_key": "env:T"}}],
             "integrations": [{"id": "erp-to-sq", "source": "erp", "target": "sq", "flows": ["stock"]}]},
            environ={"H": "x", "T": TOKEN}, kinds=registry.kinds(),
        )  # fmt: skip
        rt = runtime.Runtime(config=config, connection=rconn)
        monkeypatch.setattr(runtime, "_runtime", rt)
        level = {"source": "stocktest", "sku": "stk-1", "on_hand": "12", "available": "11.6"}
        envelope = Envelope.wrap(Event("stock.updated", "stock", "stk-1", "k-1", level), source="stocktest",
                                 endpoint="erp")  # fmt: skip
        try:
            first = run_event(rt, config.integrations[0], envelope)
            again = run_event(rt, config.integrations[0], envelope.model_copy(update={"delivery_key": "k-2"}))
        finally:
            rt.close()
    finally:
        registry.unregister("stocktest")
    assert (first.outcome, first.reason) == ("updated", "stock 3 → 12")
    assert again.outcome == "skipped" and again.calls == 1  # read, found right, not written
    [item] = [i for i in site.client.inventory() if i["sku"] == "STK-1"]
    assert item["quantity"] == 12


def test_products_with_their_variants_and_customer_profiles_are_read_as_squarespace_lists_them(site):
    site.control("products/seed", skus=[f"PR-{n}" for n in range(55)], quantity=4)
    products = list(site.client.products())
    assert len(products) == 55 and all(p["variants"][0]["stock"] == {"quantity": 4, "unlimited": False}
                                       for p in products)  # fmt: skip
    assert list(site.client.products(product_type="SERVICE")) == []
    some = site.client.get_products([p["id"] for p in products[:3]] + ["0" * 24])
    assert [p["id"] for p in some] == [p["id"] for p in products[:3]]
    site.control("orders", count=2, seed=11, email="Klant@Example.com")
    [profile] = list(site.client.profiles(email="klant@example.com"))
    assert profile["isCustomer"] is True and profile["email"] == "Klant@Example.com"
    assert site.client.get_profiles([profile["id"]]) == [profile]
    assert len(list(site.client.profiles())) == 1


def test_a_variants_sku_and_price_are_updated_and_an_unknown_variant_is_not_found(site):
    [product_id] = site.control("products/seed", skus=["VAR-1"])["products"]
    [product] = site.client.get_products([product_id])
    variant_id = product["variants"][0]["id"]
    price = {"basePrice": {"value": "19.95", "currency": "EUR"}, "onSale": False,
             "salePrice": {"value": "0.00", "currency": "EUR"}}  # fmt: skip
    updated = site.client.update_variant(product_id, variant_id, {"sku": "VAR-1B", "pricing": price})
    assert updated["sku"] == "VAR-1B" and updated["pricing"]["basePrice"]["value"] == "19.95"
    assert [i["sku"] for i in site.client.inventory()] == ["VAR-1B"]
    with pytest.raises(SquarespaceNotFound):
        site.client.update_variant(product_id, "0" * 24, {"sku": "X"})


def test_an_orders_payment_is_read_from_its_transaction_document_and_a_refusal_books_without_it(site, caplog):
    site.control("products/seed", skus=["R-1"])
    site.control("orders", count=2, seed=7)  # other orders' documents are passed over
    order_id = site.control("orders", count=1, seed=8, payment={"provider": "PAYPAL"})["orders"][0]
    source = SquarespaceSource(site.system, site.context)
    polled = site.client.get_order(order_id)  # as the reconciliation poll hands it over: the order itself
    envelope = Envelope.wrap(Event("order.sync", "order", order_id, "k1", polled), source="squarespace",
                             endpoint="sq-hooks")  # fmt: skip
    order = source.read(envelope, "orders")
    assert order["koppel_payment"] == {"provider": "PAYPAL", "card": "VISA"}
    assert source.normalise("orders", order).payment_method == "paypal"
    site.control("fail", status=401, times=1)  # a token without the Transactions permission
    with caplog.at_level(logging.WARNING, logger="koppel.squarespace"):
        refused = source.read(envelope, "orders")
    assert "koppel_payment" not in refused and refused["id"] == order_id
    assert "give the token the Transactions permission" in caplog.text
    off = SquarespaceSource(make_system(site.live.url, read_payments=False), site.context)
    calls = site.http.get(f"{site.live.url}/sandbox/counters").json()
    assert "koppel_payment" not in off.read(envelope, "orders")
    assert site.http.get(f"{site.live.url}/sandbox/counters").json() == calls  # not asked
