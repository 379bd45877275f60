"""The WooCommerce reconciliation poll's reading side (`WooCommerceSource.changes`, `version`) against
the sandbox over real HTTP, and the pollers' choice of what to poll."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from connectors.contract import Context
from connectors.woocommerce import reconcile
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.connector import WooCommerceSource
from connectors.woocommerce.sandbox import create_sandbox
from gateway.config import Config, System, parse_config
from gateway.errors import PermanentError
from gateway.stack import serve
from workers.pollers import poll_interval, polled_streams

KEY, SECRET = "ck_rec", "cs_rec"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shop(rconn: redis.Redis) -> Iterator[tuple[WooCommerceSource, WooCommerceClient, Any, Clock]]:
    clock = Clock()
    app = create_sandbox(consumer_key=KEY, consumer_secret=SECRET, seed_products=True, clock=clock)
    live = serve(app)
    try:
        with httpx.Client(timeout=10) as http:
            system = System.model_validate(
                {"id": "shop", "kind": "woocommerce", "base_url": live.url,
                 "credentials": {"consumer_key": "env:K", "consumer_secret": "env:S"},
                 "settings": {"initial_lookback_seconds": 3600}},
                context={"environ": {"K": KEY, "S": SECRET}},
            )  # fmt: skip
            client = WooCommerceClient(http, base_url=live.url, consumer_key=KEY, consumer_secret=SECRET)
            yield WooCommerceSource(system, Context(http=http, redis=rconn)), client, app, clock
    finally:
        live.stop()


def place(app: Any, client: WooCommerceClient, count: int, seed: int) -> list[int]:
    body = {"count": count, "seed": seed}
    return [int(i) for i in client.http.post(f"{client.base_url}/sandbox/orders", json=body).json()["orders"]]


def read_all(source: WooCommerceSource, stream: str, cursor: str | None) -> tuple[list[Any], list[str]]:
    changes, cursors = [], []
    for page, page_cursor in source.changes(stream, cursor):
        changes += page
        cursors.append(page_cursor)
    return changes, cursors


@pytest.mark.integration
def test_orders_modified_since_the_cursor_are_read_with_an_overlap_and_the_cursor_moves_on_the_last_page(shop):
    source, client, app, clock = shop
    clock.now = datetime.now(UTC).timestamp() - 7200
    old = place(app, client, 2, 1)  # before the first poll's look-back
    clock.now += 5400
    first = place(app, client, 3, 2)
    changes, cursors = read_all(source, "orders", None)  # the first poll: the last hour only
    assert sorted(int(c.resource_id) for c in changes) == first and not set(old) & {int(c.resource_id) for c in changes}
    assert {c.resource for c in changes} == {"order"}
    assert cursors[-1] == datetime.fromtimestamp(clock.now, UTC).strftime("%Y-%m-%dT%H:%M:%S")

    clock.now += 600
    later = place(app, client, 2, 3)
    again, cursors = read_all(source, "orders", cursors[-1])
    assert sorted(int(c.resource_id) for c in again) == sorted([*first, *later])  # `first`: in the overlap
    assert {c.delivery_key for c in changes} <= {c.delivery_key for c in again}  # the same keys: not queued twice
    clock.now += 10
    client.update_order(first[0], {"status": "completed"})
    changed, _ = read_all(source, "orders", cursors[-1])
    assert sorted(int(c.resource_id) for c in changed) == sorted([*later, first[0]])  # 600 s back: out of the overlap
    [completed] = [c for c in changed if int(c.resource_id) == first[0]]
    assert completed.record["status"] == "completed"


@pytest.mark.integration
def test_pages_of_a_hundred_carry_the_old_cursor_until_the_last(shop):
    source, client, app, clock = shop
    clock.now = datetime.now(UTC).timestamp() - 600
    placed = place(app, client, 230, 4)
    pages = list(source.changes("orders", None))
    assert [len(p) for p, _ in pages] == [100, 100, 30]
    floor = pages[0][1]
    assert [c for _, c in pages[:-1]] == [floor, floor] and pages[-1][1] > floor
    assert sorted(int(c.resource_id) for p, _ in pages for c in p) == placed


@pytest.mark.integration
def test_a_read_whose_total_shrinks_keeps_its_cursor(shop):
    """A product trashed while the poll pages shifts the pages behind it: the window is read again next time."""
    source, client, _, clock = shop
    clock.now = datetime.now(UTC).timestamp()
    for start in range(0, 220, 100):  # three pages (the source reads one page ahead)
        client.batch("products", create=[{"name": f"P{n}", "sku": f"P-{n}", "regular_price": "1.00"}
                                         for n in range(start, min(start + 100, 220))])  # fmt: skip
    pages = source.changes("products", "2026-01-01T00:00:00")
    first, cursor = next(pages)
    client.http.delete(f"{client.base_url}/wp-json/wc/v3/products/{first[0].resource_id}", auth=(KEY, SECRET))
    rest = list(pages)
    assert cursor == "2026-01-01T00:00:00" and rest[-1][1] == "2026-01-01T00:00:00"


@pytest.mark.integration
def test_customers_are_paged_in_full_and_kept_when_modified_since_the_cursor(shop):
    """WooCommerce has no date filter on /customers: the sandbox ignores `modified_after` there, as WooCommerce does."""
    source, client, app, clock = shop
    clock.now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()
    old = client.create_customer({"email": "old@example.com", "first_name": "Old"})
    manager = app.state.sandbox.store.create_customer({"email": "manager@example.com"})
    manager["role"] = "shop_manager"
    clock.now += 3600
    new = client.create_customer({"email": "new@example.com", "first_name": "New"})
    listed = list(client.customers(modified_after="2026-03-14T12:30:00", dates_are_gmt=True, role="all"))
    assert len(listed) == 3  # ignored by the API...
    changes, cursors = read_all(source, "customers", "2026-03-14T12:30:00")
    assert [int(c.resource_id) for c in changes] == [new["id"]]  # ...so the source filters
    clock.now += 60
    client.update_customer(old["id"], {"first_name": "Older"})
    client.update_customer(manager["id"], {"first_name": "Boss"})
    changes, _ = read_all(source, "customers", cursors[-1])
    assert sorted(int(c.resource_id) for c in changes) == sorted([old["id"], manager["id"], new["id"]])


@pytest.mark.integration
def test_a_record_reached_by_webhook_and_by_poll_is_one_version(shop):
    source, client, app, clock = shop
    clock.now = datetime.now(UTC).timestamp()
    [order_id] = place(app, client, 1, 5)
    [change] = [c for c in read_all(source, "orders", None)[0] if int(c.resource_id) == order_id]
    delivered = app.state.sandbox.store.payload("order", order_id)  # what a webhook delivery carries
    assert source.version("orders", delivered) == source.version("orders", change.record) is not None
    # The same second, a different state (an order paid at checkout): another version.
    client.update_order(order_id, {"status": "completed"})
    paid = client.get_order(order_id)
    assert paid["date_modified_gmt"] == change.record["date_modified_gmt"]
    assert source.version("orders", paid) != source.version("orders", change.record)
    assert source.version("orders", {"id": order_id}) is None  # a deletion's payload is not versioned


@given(st.text(max_size=30))
def test_a_cursor_that_is_not_a_gmt_date_is_refused_naming_it(text):
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None:
        return
    with pytest.raises(PermanentError, match="poll cursor"):
        list(reconcile.changes(None, "orders", text, now=datetime.now(UTC), lookback=0))  # type: ignore[arg-type]


def test_an_unknown_stream_is_refused():
    with pytest.raises(PermanentError, match="known: orders, products, customers"):
        list(reconcile.changes(None, "coupons", None, now=datetime.now(UTC), lookback=0))  # type: ignore[arg-type]


# -- which systems are polled --------------------------------------------------------------------------


def make_config(*, reconcile: int = 300, direct: bool = False) -> Config:
    env = {"K": "ck", "S": "cs", "H": "hook"}
    shop = {"id": "shop", "kind": "woocommerce", "base_url": "https://shop.example",
            "credentials": {"consumer_key": "env:K", "consumer_secret": "env:S"},
            "settings": {"reconcile_interval_seconds": reconcile, "poll_interval_seconds": 30}}  # fmt: skip
    other = {**shop, "id": "other", "settings": {}}
    integrations = [{"id": "hooks", "source": "shop-hooks", "target": "other", "flows": ["orders", "customers"]}]
    if direct:
        integrations.append({"id": "direct", "source": "shop", "target": "other", "flows": ["products"]})
    return parse_config(
        {"endpoints": [{"id": "shop-hooks", "kind": "woocommerce", "secret": "env:H", "system": "shop"}],
         "systems": [shop, other], "integrations": integrations},
        environ=env,
    )  # fmt: skip


def test_a_shop_fed_by_webhooks_is_polled_at_its_reconcile_interval_and_feeds_the_endpoints_integrations():
    config = make_config()
    assert polled_streams(config) == {"shop": ["orders", "customers"]}
    system = config.system("shop")
    assert system is not None and poll_interval(config, system) == 300
    assert [i.id for i in config.integrations_from("shop")] == ["hooks"]  # a poll's events reach them
    assert polled_streams(make_config(reconcile=0)) == {}


def test_a_shop_an_integration_polls_directly_uses_its_poll_interval():
    config = make_config(direct=True)
    assert polled_streams(config) == {"shop": ["orders", "customers", "products"]}
    system = config.system("shop")
    assert system is not None and poll_interval(config, system) == 30
